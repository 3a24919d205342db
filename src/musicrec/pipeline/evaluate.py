"""Ranking metrics, defined once, computed for every test user in vectorized batches.

Definitions (K = cut-off, rel = test items of the user, training items never ranked):

- precision@K = hits in top-K / K
- recall@K    = hits in top-K / |rel|
- ndcg@K      = DCG@K / IDCG@K, gain 1/log2(rank + 1), IDCG over min(K, |rel|) hits
- map@K       = mean over users of AP@K = sum_k P@k * rel_k / min(K, |rel|)
- coverage@K  = distinct items recommended in anyone's top-K / catalogue size

implicit's ``ranking_metrics_at_k`` reports as "precision" hits / min(K, |rel|), which is
not precision@K; we do not reuse that number.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from rich.progress import Progress

from musicrec import layout
from musicrec.data.dataset import Dataset
from musicrec.errors import ArtifactError
from musicrec.fsutil import read_json, write_json_atomic
from musicrec.models.artifact import ModelArtifact
from musicrec.models.base import Model
from musicrec.ranking import ModelRanker, RandomRanker, Ranker, StaticRanker

log = logging.getLogger(__name__)

DEFAULT_KS: tuple[int, ...] = (10, 20)
COLD_USER_MAX_TRAIN = 10
HEAD_SHARE = 0.2  # top 20% artists by training listeners are the head; the rest is the tail


def ranking_metrics(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per-user metrics from a boolean ``hits`` matrix (users x >=k, ranked best first)."""
    hits = hits[:, :k].astype(np.float64)
    n_hits = hits.sum(axis=1)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hits @ discounts
    ideal = np.cumsum(discounts)[np.minimum(n_relevant, k) - 1]
    precision_at = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    ap = (precision_at * hits).sum(axis=1) / np.minimum(n_relevant, k)
    return {
        "precision": n_hits / k,
        "recall": n_hits / n_relevant,
        "ndcg": dcg / ideal,
        "map": ap,
    }


@dataclass
class Report:
    """Evaluation result: overall metrics, per-slice metrics and baselines."""

    model: dict[str, float]
    slices: dict[str, dict[str, float]] = field(default_factory=dict)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    n_users: int = 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.model)
        out["users_evaluated"] = self.n_users
        out["slices"] = self.slices
        out.update(self.baselines)
        return out


def _batches(users: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(users), batch_size):
        yield users[start : start + batch_size]


def evaluate_ranker(
    ranker: Ranker,
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 4096,
    show_progress: bool = False,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Metrics at each K for every user with test items, plus cold-user and long-tail slices."""
    ks = sorted(set(ks))
    k_max = ks[-1]
    n_items = train.shape[1]
    if k_max >= n_items:
        raise ValueError(f"k={k_max} must be smaller than the catalogue ({n_items} items)")
    test = sp.csr_matrix(test)
    n_rel = np.diff(test.indptr)
    users = np.flatnonzero(n_rel > 0)
    n_train = np.diff(train.indptr)

    listeners = np.bincount(train.indices, minlength=n_items)
    head_cut = max(1, round(HEAD_SHARE * n_items))
    is_tail = np.ones(n_items, dtype=bool)
    is_tail[np.argsort(-listeners, kind="stable")[:head_cut]] = False

    per_user: dict[str, list[np.ndarray]] = {}
    tail_hits, tail_rel, tail_recs = 0, 0, 0
    recommended = {k: np.zeros(n_items, dtype=bool) for k in ks}
    with Progress(disable=not show_progress, transient=True) as progress:
        task = progress.add_task(f"evaluating {ranker.name}", total=len(users))
        for batch in _batches(users, batch_size):
            top = ranker.rank(batch, k_max, train[batch])
            filled = top >= 0  # -1 pads users with fewer unplayed items than k
            top = np.where(filled, top, 0)
            rows = np.arange(len(batch))[:, None]
            hits = (np.asarray(test[batch][rows, top].todense()) != 0) & filled
            for k in ks:
                for name, values in ranking_metrics(hits, n_rel[batch], k).items():
                    per_user.setdefault(f"{name}@{k}", []).append(values)
                recommended[k][top[:, :k][filled[:, :k]]] = True
            k10 = top[:, : ks[0]]
            tail_recs += int((is_tail[k10] & filled[:, : ks[0]]).sum())
            tail_hits += int((hits[:, : ks[0]] & is_tail[k10]).sum())
            tail_rel += int(is_tail[test[batch].indices].sum())
            progress.advance(task, len(batch))

    metrics = {name: float(np.concatenate(parts).mean()) for name, parts in per_user.items()}
    for k in ks:
        metrics[f"coverage@{k}"] = float(recommended[k].mean())
    cold = n_train[users] <= COLD_USER_MAX_TRAIN
    k0 = ks[0]
    slices = {
        "cold_users": {
            "users": int(cold.sum()),
            f"ndcg@{k0}": _masked_mean(per_user[f"ndcg@{k0}"], cold),
            f"recall@{k0}": _masked_mean(per_user[f"recall@{k0}"], cold),
        },
        "long_tail": {
            "items": int(is_tail.sum()),
            f"recall@{k0}": tail_hits / tail_rel if tail_rel else float("nan"),
            f"share_of_recommendations@{k0}": tail_recs / max(1, len(users) * k0),
        },
    }
    return metrics, slices


def _masked_mean(parts: list[np.ndarray], mask: np.ndarray) -> float:
    values = np.concatenate(parts)[mask]
    return float(values.mean()) if len(values) else float("nan")


def evaluate(
    ranker: Ranker,
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    ks: Sequence[int] = DEFAULT_KS,
    baselines: Sequence[Ranker] = (),
    show_progress: bool = False,
) -> Report:
    """Evaluate ``ranker`` and each baseline on the same split."""
    metrics, slices = evaluate_ranker(ranker, train, test, ks, show_progress=show_progress)
    report = Report(model=metrics, slices=slices, n_users=int((np.diff(test.indptr) > 0).sum()))
    for baseline in baselines:
        base_metrics, _ = evaluate_ranker(baseline, train, test, ks, show_progress=show_progress)
        report.baselines[baseline.name] = base_metrics
    return report


BASELINES = ("popularity", "random")


def evaluate_dataset(
    dataset: Dataset,
    model: Model,
    ks: Sequence[int] = DEFAULT_KS,
    baselines: Sequence[str] = ("popularity",),
    show_progress: bool = False,
) -> Report:
    """Evaluate a fitted model on an in-memory dataset's test split, next to the baselines.

    On a dataset with a validation part, test rankings exclude validation items too.
    """
    unknown = set(baselines) - set(BASELINES)
    if unknown:
        raise ValueError(f"unknown baseline(s) {sorted(unknown)}; choose from {BASELINES}")
    train, test = dataset.train, dataset.test
    rankers: dict[str, Ranker] = {
        "popularity": StaticRanker.popularity(train),
        "random": RandomRanker(train.shape[1]),
    }
    # Histories come from train; the ranking excludes train and validation items (``seen``).
    return evaluate(
        ModelRanker(model, train),
        dataset.seen,
        test,
        ks,
        baselines=[rankers[name] for name in baselines],
        show_progress=show_progress,
    )


def record_metrics(model_dir: str | Path, report: Report) -> None:
    """Store the report in the artifact's manifest.json (atomic rewrite)."""
    path = Path(model_dir) / layout.MANIFEST
    manifest = read_json(path)
    manifest["metrics"] = report.to_dict()
    write_json_atomic(path, manifest)


def evaluate_model(
    data_dir: str | Path,
    model_dir: str | Path,
    ks: Sequence[int] = DEFAULT_KS,
    baselines: Sequence[str] = ("popularity",),
    show_progress: bool = False,
    record: bool = True,
) -> Report:
    """Evaluate an artifact on its dataset's test split; store the metrics in its manifest."""
    dataset = Dataset.load(data_dir)
    artifact = ModelArtifact.load(model_dir)
    trained_on = artifact.manifest.get("dataset", {}).get("fingerprint")
    if trained_on != dataset.fingerprint:
        raise ArtifactError(
            f"{model_dir} was trained on dataset {trained_on}, but {data_dir} is "
            f"{dataset.fingerprint}; evaluate on the dataset the model was trained on"
        )
    report = evaluate_dataset(dataset, artifact.model, ks, baselines, show_progress)
    if record:
        record_metrics(model_dir, report)
    return report
