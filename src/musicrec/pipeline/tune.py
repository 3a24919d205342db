"""Hyperparameter search over model kinds: Optuna TPE on a validation split.

A dataset prepared with a validation part (``musicrec data prepare --protocol ratio``) is
searched on that part, and the winner is trained on the train part only, as the protocol does;
otherwise a validation split is carved from train as described below.

``kinds`` (default ALS alone) share the trial budget (and the time budget) equally; each kind
has its own TPE study over its search space (the kind's ``suggest``), started from its
defaults, so no kind is starved because another looked good early. After the search, the best
configs of the two best kinds are blended (weights ``BLEND_WEIGHTS``, scored on the same
validation split) and the blend is kept when it beats both. The test split is never looked at
while searching. Each user's training rows are split again (``valid_fraction`` held out, at
least one row kept); every trial fits on the rest and is scored by NDCG@10 on the held-out
rows. Only the best configuration is then trained on the full training split and evaluated
once on the test split.

Pruning: a model fitted in sweeps (ALS) fits in stages of ``CHECKPOINT_EVERY`` sweeps
(``Model.fit_partial``, bit-identical to one uninterrupted fit) and reports validation NDCG after
each; a median pruner stops trials that trail the median of earlier trials at the same sweep.
The observer sees the search and, as children, every trial (MLflow: nested runs under one
``tune`` run). The trials themselves are :mod:`musicrec.pipeline.search`.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import yaml

from musicrec.config import TrainConfig
from musicrec.data.dataset import Dataset
from musicrec.errors import ConfigError
from musicrec.fsutil import write_text_atomic
from musicrec.models.kinds import build, config_name, model_class
from musicrec.pipeline.observer import (
    NullObserver,
    StageObserver,
    dataset_params,
    dataset_tags,
    observing,
)
from musicrec.pipeline.search import (
    CHECKPOINT_EVERY,
    VALID_METRIC,
    Search,
    ValidationSplit,
    parse_kinds,
)

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

TUNE_EXPERIMENT = "musicrec-tune"
VALID_FRACTION = 0.2


def validation_split(
    train: sp.csr_matrix, fraction: float = VALID_FRACTION, seed: int = 0
) -> ValidationSplit:
    """Hold out ``round(fraction * n)`` random rows of each user (never the user's last one)."""
    if not 0 < fraction < 1:
        raise ConfigError(f"validation fraction must be in (0, 1), got {fraction}")
    train = sp.csr_matrix(train)
    train.sort_indices()
    counts = np.diff(train.indptr)
    rows = np.repeat(np.arange(train.shape[0]), counts)
    keys = np.random.default_rng(seed).random(train.nnz)
    order = np.lexsort((keys, rows))  # random order within each row
    position = np.empty(train.nnz, dtype=np.int64)
    position[order] = np.arange(train.nnz) - train.indptr[rows[order]]
    n_hold = np.minimum(np.round(fraction * counts).astype(np.int64), np.maximum(counts - 1, 0))
    held = position < n_hold[rows]
    coo = train.tocoo()
    parts = []
    for mask in (~held, held):
        part = sp.csr_matrix(
            (coo.data[mask], (coo.row[mask], coo.col[mask])), shape=train.shape, dtype=np.float32
        )
        parts.append(part)
    return ValidationSplit(parts[0], parts[1])


@dataclass(frozen=True)
class TuneResult:
    """The search outcome; ``test`` holds the best config's test metrics when it was trained."""

    best: TrainConfig
    best_value: float
    baseline_value: float | None  # the starting config (trial 0), same validation split
    n_complete: int
    n_pruned: int
    run_id: str | None  # the observer's record of the search, if it keeps one
    best_config_path: Path
    test: dict[str, Any] | None


def _check_budget(n_trials: int | None, timeout: float | None, out_dir: Path) -> None:
    if n_trials is None and timeout is None:
        raise ConfigError("give a number of trials, a timeout, or both")
    if n_trials is not None and n_trials < 1:
        raise ConfigError(f"the number of trials must be at least 1, got {n_trials}")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"the timeout must be positive, got {timeout}")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: exists and is not a directory")


def tune(
    data_dir: str | Path,
    out_dir: str | Path,
    n_trials: int | None = 30,
    timeout: float | None = None,
    *,
    base: TrainConfig | None = None,
    kinds: tuple[str, ...] | str | None = None,
    blend: bool = True,
    seed: int = 0,
    valid_fraction: float = VALID_FRACTION,
    prune: bool = True,
    final: bool = True,
    observer: StageObserver | None = None,
    on_trial: Callable[[optuna.trial.FrozenTrial, float | None], None] | None = None,
) -> TuneResult:
    """Search ``kinds`` (default: ``base``'s kind; ``base`` is tried first); write ``best.yaml``.

    With several kinds and ``blend``, the two best kinds are also blended. With ``final``, the
    best config is trained on the full training split into ``out_dir/model`` and evaluated on
    the test split, observed as the ``best`` child.
    """
    out_dir = Path(out_dir)
    _check_budget(n_trials, timeout, out_dir)
    base = base or TrainConfig()
    kinds = parse_kinds(kinds if kinds is not None else (base.kind,))
    if base.kind not in kinds:
        base = TrainConfig.for_kind(kinds[0])
    if not build(base).in_process:
        raise ConfigError(f"tuning fits in this process; engine {build(base).engine!r} cannot")
    dataset = Dataset.load(data_dir)
    given = dataset.validation_parts()  # a protocol's own validation part, else carve one
    split = (
        ValidationSplit(*given) if given else validation_split(dataset.train, valid_fraction, seed)
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    observer = observer or NullObserver()
    tags = {"kind": base.kind, "engine": build(base).engine} | dataset_tags(dataset)
    params = (
        {"n_trials": n_trials, "timeout": timeout, "seed": seed, "prune": prune}
        | {"valid_fraction": valid_fraction, "checkpoint_every": CHECKPOINT_EVERY}
        | {"validation": "dataset" if dataset.has_valid else "carved from train"}
        | {"kinds": ",".join(kinds), "blend": blend}
        | {f"base.{k}": v for k, v in base.to_dict().items()}
        | dataset_params(dataset)
    )
    started = time.monotonic()
    with observing(observer, "tune", params, tags | {"stage": "tune"}):
        search = Search(split, base, kinds, observer, tags, seed=seed, prune=prune)
        search.run(n_trials, timeout, on_trial)
        in_time = timeout is None or time.monotonic() - started <= timeout
        best_value, best = search.best(blend and len(kinds) > 1 and in_time)
        baseline = search.baseline()
        best_path = _report(search, out_dir, dataset, best, best_value, baseline)
        test = _final(dataset, out_dir, best, observer) if final else None
    return TuneResult(
        best,
        best_value,
        baseline,
        len(search.complete()),
        sum(t.state.name == "PRUNED" for t in search.trials),
        observer.run_id,
        best_path,
        test,
    )


def _report(
    search: Search,
    out_dir: Path,
    dataset: Dataset,
    best: TrainConfig,
    best_value: float,
    baseline: float | None,
) -> Path:
    """best.yaml and trials.csv, both also handed to the observer with the search's numbers."""
    observer = search.observer
    observer.on_metrics({f"best_{VALID_METRIC}": best_value})
    if baseline is not None:
        observer.on_metrics({f"baseline_{VALID_METRIC}": baseline})
    baseline_text = f"{baseline:.4f}" if baseline is not None else "pruned"
    where = "".join(f"\n{key} {value}" for key, value in observer.labels().items())
    header = (
        f"Best of {len(search.trials)} `musicrec tune` trials ({', '.join(search.kinds)}) on "
        f"dataset {dataset.fingerprint}\n"
        f"validation NDCG@10 {best_value:.4f} (starting config: {baseline_text}){where}"
    )
    best_path = write_config_yaml(out_dir / "best.yaml", best, header)
    _write_trials_csv(out_dir / "trials.csv", search.trials, search.kinds, search.blends)
    observer.on_artifact(best_path)
    observer.on_artifact(out_dir / "trials.csv")
    observer.on_tags({"best_kind": best.kind})
    return best_path


def _final(
    dataset: Dataset, out_dir: Path, config: TrainConfig, observer: StageObserver
) -> dict[str, Any]:
    """Train ``config`` on the training split (never the validation part), evaluate on test,
    observed as ``best``."""
    from musicrec.pipeline.sequence import train_and_evaluate

    _, report = train_and_evaluate(dataset, out_dir / "model", config, observer.child("best"))
    test = report.to_dict()
    observer.on_metrics({"best_test_ndcg_at_10": float(test["ndcg@10"])})
    return test


def write_config_yaml(path: Path, config: TrainConfig, comment: str = "") -> Path:
    """Write ``config`` as a ``train:`` section that ``musicrec train --config`` reads."""
    lines = "".join(f"# {line}\n" for line in comment.splitlines())
    return write_text_atomic(
        path, lines + yaml.safe_dump({"train": config.to_dict()}, sort_keys=False)
    )


def _write_trials_csv(
    path: Path,
    trials: list[optuna.trial.FrozenTrial],
    kinds: tuple[str, ...],
    blends: list[tuple[float, TrainConfig]] = [],  # noqa: B006
) -> None:
    names = list(dict.fromkeys(name for kind in kinds for name in model_class(kind).searched))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["trial", "kind", "state", VALID_METRIC, "seconds", *names])
    for trial in sorted(trials, key=lambda t: int(t.user_attrs.get("number", 0))):
        seconds = trial.duration.total_seconds() if trial.duration else ""
        config = trial.user_attrs.get("config", {})
        params = [config.get(name, "") for name in names]
        writer.writerow(
            [
                trial.user_attrs.get("number", ""),
                config.get("kind", ""),
                trial.state.name,
                trial.value,
                seconds,
                *params,
            ]
        )
    for value, config in blends:
        writer.writerow([config_name(config), "blend", "COMPLETE", value, "", *["" for _ in names]])
    write_text_atomic(path, buffer.getvalue())
