"""Evaluate a model on a split: metrics with intervals, segments and baselines.

Every test user is ranked once (:func:`musicrec.pipeline.userscores.score_users`, where the
metrics are defined); means, bootstrap intervals over users and the segment table come from
those per-user values (:mod:`musicrec.pipeline.summary`). ``coverage@K`` is the share of the
catalogue in anyone's top K; the beyond-accuracy metrics are in :mod:`musicrec.pipeline.beyond`.

implicit's ``ranking_metrics_at_k`` reports as "precision" hits / min(K, |rel|), which is
not precision@K; we do not reuse that number.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import scipy.sparse as sp

from musicrec import layout
from musicrec.config import BASELINES, TrainConfig
from musicrec.data.dataset import Dataset
from musicrec.errors import ArtifactError, ConfigError
from musicrec.fsutil import read_json, write_json_atomic
from musicrec.models.artifact import ModelArtifact
from musicrec.models.base import Model
from musicrec.models.kinds import build
from musicrec.pipeline.beyond import ItemSpace
from musicrec.pipeline.dials import dial_ranking, item_meta
from musicrec.pipeline.observer import NullObserver, StageObserver, dataset_tags, observing
from musicrec.pipeline.summary import DEFAULT_RESAMPLES, summarize
from musicrec.pipeline.userscores import (
    Ranking,
    UserScores,
    ranking_metrics,
    ranking_of,
    score_users,
)
from musicrec.rules import Dials

log = logging.getLogger(__name__)

DEFAULT_KS: tuple[int, ...] = (10, 20)
SCORES_FILE = layout.USER_SCORES  # per-user values beside the manifest, paired comparisons
__all__ = [
    "DEFAULT_KS",
    "Ranking",
    "Report",
    "evaluate",
    "evaluate_model",
    "evaluate_ranker",
    "ranking_metrics",
    "ranking_of",
]


@dataclass
class Report:
    """Evaluation result: metrics with intervals, segments and baselines."""

    model: dict[str, float]
    segments: dict[str, Any] = field(default_factory=dict)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    n_users: int = 0
    intervals: dict[str, dict[str, float]] = field(default_factory=dict)
    bootstrap: dict[str, Any] = field(default_factory=dict)
    scores: UserScores | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.model)
        out["users_evaluated"] = self.n_users
        out["intervals"] = self.intervals
        out["segments"] = self.segments
        out["bootstrap"] = self.bootstrap
        out.update(self.baselines)
        return out


def evaluate_ranker(
    ranker: Model | Ranking,
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 4096,
    show_progress: bool = False,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Accuracy and coverage at each K for every user with test items, and the segments
    (no intervals, no beyond-accuracy metrics: what tuning needs).

    ``ranker`` is a model of the users of ``train`` or any :data:`Ranking`.
    """
    scores = score_users(ranker, train, test, ks, None, batch_size, show_progress)
    summary = summarize(scores, n_resamples=0)
    return summary.metrics, summary.segments


def evaluate(
    model: Model | Ranking,
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    ks: Sequence[int] = DEFAULT_KS,
    baselines: Sequence[Model] = (),
    show_progress: bool = False,
    *,
    items: ItemSpace | None = None,
    bootstrap: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    exclude: sp.csr_matrix | None = None,
) -> Report:
    """Evaluate ``model`` (trained on ``train``'s users; with intervals from ``bootstrap``
    resamples) and each baseline on the same split; ``exclude`` is kept out of every ranking
    (default ``train``)."""
    options: dict[str, Any] = {"show_progress": show_progress, "exclude": exclude}
    scores = score_users(model, train, test, ks, items, **options)
    summary = summarize(scores, bootstrap, seed)
    report = Report(
        model=summary.metrics,
        segments=summary.segments,
        n_users=len(scores.users),
        intervals=summary.intervals,
        bootstrap={"resamples": bootstrap, "seed": seed, "confidence": 0.95, "unit": "user"},
        scores=scores,
    )
    for baseline in baselines:  # as they rank: the dials shape the model's lists only
        base = score_users(baseline, train, test, ks, items, **options)
        report.baselines[baseline.kind] = summarize(base, n_resamples=0).metrics
    return report


def baseline_models(names: Sequence[str], train: sp.csr_matrix) -> list[Model]:
    """The named baselines fitted on ``train`` (popularity, random)."""
    unknown = set(names) - set(BASELINES)
    if unknown:
        raise ConfigError(f"unknown baseline(s) {sorted(unknown)}; choose from {BASELINES}")
    return [build(TrainConfig.for_kind(name)).fit(train) for name in names]


def evaluate_dataset(
    dataset: Dataset,
    model: Model,
    ks: Sequence[int] = DEFAULT_KS,
    baselines: Sequence[str] = ("popularity",),
    show_progress: bool = False,
    *,
    bootstrap: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    dials: Dials | None = None,
) -> Report:
    """Evaluate a fitted model on an in-memory dataset's test split, next to the baselines;
    with ``dials``, its lists as the rule chain shapes them (:mod:`musicrec.pipeline.dials`).

    On a dataset with a validation part, test rankings exclude validation items too.
    """
    train, test = dataset.train, dataset.test
    ranker: Model | Ranking = model
    if dials is not None and not dials.neutral:
        ranker = dial_ranking(model, train, item_meta(dataset.items, dataset.tags), dials)
    report = evaluate(
        ranker,
        train,
        test,
        ks,
        baselines=baseline_models(baselines, train),
        show_progress=show_progress,
        items=ItemSpace.build(train, dataset.tags, model.similar_items),
        bootstrap=bootstrap,
        seed=seed,
        exclude=dataset.seen,  # train and validation items are out of the test rankings
    )
    if report.scores is not None:
        report.scores.fingerprint = dataset.fingerprint
    return report


def record_metrics(model_dir: str | Path, report: Report) -> None:
    """Store the report in the artifact's manifest.json (atomic rewrite) and the per-user
    values beside it: the ``metrics`` of a model evaluated after it was written
    (``musicrec evaluate --record``)."""
    path = Path(model_dir) / layout.MANIFEST
    if report.scores is not None:
        report.scores.save(Path(model_dir) / SCORES_FILE)
    manifest = read_json(path)
    manifest["metrics"] = report.to_dict()
    write_json_atomic(path, manifest)


def check_trained_on(dataset: Dataset, artifact: ModelArtifact, model_dir: str | Path) -> None:
    """One-line error unless the artifact was trained on ``dataset`` (same fingerprint)."""
    trained_on = artifact.manifest.get("dataset", {}).get("fingerprint")
    if trained_on != dataset.fingerprint:
        raise ArtifactError(
            f"{model_dir} was trained on dataset {trained_on}, but {dataset.path} is "
            f"{dataset.fingerprint}; evaluate on the dataset the model was trained on"
        )


def evaluate_model(
    data_dir: str | Path | Dataset,
    model_dir: str | Path,
    ks: Sequence[int] = DEFAULT_KS,
    baselines: Sequence[str] = ("popularity",),
    show_progress: bool = False,
    record: bool = True,
    observer: StageObserver | None = None,
    *,
    bootstrap: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    dials: Dials | None = None,
) -> Report:
    """Evaluate an artifact on its dataset's test split; store the metrics in its manifest.
    With ``dials`` the lists go through the rule chain first.

    ``observer`` sees the evaluation (MLflow logs it into the model's own train run).
    """
    dataset = data_dir if isinstance(data_dir, Dataset) else Dataset.load(data_dir)
    artifact = ModelArtifact.load(model_dir)
    check_trained_on(dataset, artifact, model_dir)
    observer = observer or NullObserver()
    tags = {"stage": "evaluate", "kind": artifact.kind, "engine": artifact.model.engine}
    params = artifact.manifest.get("params", {})
    with observing(observer, "evaluate", params, tags | dataset_tags(dataset)):
        report = evaluate_dataset(
            dataset,
            artifact.model,
            ks,
            baselines,
            show_progress,
            bootstrap=bootstrap,
            seed=seed,
            dials=dials,
        )
        if record:
            record_metrics(model_dir, report)
        observer.on_evaluation(Path(model_dir), report.to_dict())
    return report
