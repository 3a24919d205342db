"""Hyperparameter search: Optuna TPE on a validation split carved from the training data.

The test split is never looked at while searching. Each user's training rows are split again
(``valid_fraction`` held out, at least one row kept); every trial fits on the rest and is scored
by NDCG@10 on the held-out rows. Only the best configuration is then trained on the full training
split and evaluated once on the test split.

Pruning: implicit's ALS continues from its current factors when ``fit`` is called again, so a
trial fits in stages of :data:`CHECKPOINT_EVERY` sweeps (bit-identical to one uninterrupted fit) and
reports validation NDCG after each; a median pruner stops trials that trail the median of earlier
trials at the same sweep. Every trial is a nested MLflow run under one ``tune`` run.
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
from musicrec.tracking import (
    dataset_params,
    display_uri,
    get_client,
    mlflow_errors,
    run_tags,
    start_run,
)

if TYPE_CHECKING:
    import optuna
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

TUNE_EXPERIMENT = "musicrec-tune"
VALID_METRIC = "val_ndcg_at_10"
VALID_FRACTION = 0.2
CHECKPOINT_EVERY = 10  # each checkpoint is a full validation pass, so not every sweep
FACTORS = (16, 256)  # integer, log scale
REGULARIZATION = (1e-3, 100.0)  # log scale
ALPHA = (0.1, 50.0)  # log scale
ITERATIONS = (5, 30)  # integer
WEIGHTINGS = ("none", "log1p", "bm25")
SEARCH_SPACE = ("factors", "regularization", "alpha", "iterations", "weighting")


@dataclass(frozen=True)
class ValidationSplit:
    """Training rows split per user into a fitting part and a held-out validation part."""

    train: sp.csr_matrix
    valid: sp.csr_matrix


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


def validation_ndcg(
    user_factors: np.ndarray, item_factors: np.ndarray, split: ValidationSplit, k: int = 10
) -> float:
    """NDCG@k on the held-out rows, ranking with the fitting rows excluded."""
    from musicrec.evaluate import evaluate_ranker
    from musicrec.models.rankers import FactorRanker

    metrics, _ = evaluate_ranker(
        FactorRanker(user_factors, item_factors), split.train, split.valid, ks=(k,)
    )
    return metrics[f"ndcg@{k}"]


def checkpoints(iterations: int, every: int = CHECKPOINT_EVERY) -> list[int]:
    """Sweeps after which a trial is scored: every ``every`` and the last one."""
    return sorted({*range(every, iterations, every), iterations})


@dataclass(frozen=True)
class Score:
    ndcg: float
    fit_seconds: float


def score_config(
    config: TrainConfig,
    split: ValidationSplit,
    on_checkpoint: Callable[[int, float], None] | None = None,
    every: int = CHECKPOINT_EVERY,
) -> Score:
    """Fit ``config`` on ``split.train`` in stages; validation NDCG@10 after the last sweep.

    Same confidence weighting and model factory as training (:mod:`musicrec.models.als`).
    ``on_checkpoint(sweeps, ndcg)`` may raise to stop early (Optuna's ``TrialPruned``).
    """
    from threadpoolctl import threadpool_limits

    from musicrec.confidence import confidence
    from musicrec.models.als import build_als

    weighted = confidence(split.train, config)
    model = build_als(config)
    done, seconds, ndcg = 0, 0.0, float("nan")
    for step in checkpoints(config.iterations, every):
        model.iterations = step - done
        started = time.perf_counter()
        with threadpool_limits(limits=1, user_api="blas"):
            model.fit(weighted, show_progress=False)
        seconds += time.perf_counter() - started
        done = step
        cpu = model.to_cpu() if hasattr(model, "to_cpu") else model
        ndcg = validation_ndcg(np.asarray(cpu.user_factors), np.asarray(cpu.item_factors), split)
        if on_checkpoint is not None:
            on_checkpoint(step, ndcg)
    return Score(ndcg, seconds)


def suggest_config(trial: optuna.Trial, base: TrainConfig) -> TrainConfig:
    """One point of :data:`SEARCH_SPACE`; other settings (seed, BM25 shape) come from ``base``."""
    return base.override(
        factors=trial.suggest_int("factors", *FACTORS, log=True),
        regularization=trial.suggest_float("regularization", *REGULARIZATION, log=True),
        alpha=trial.suggest_float("alpha", *ALPHA, log=True),
        iterations=trial.suggest_int("iterations", *ITERATIONS),
        weighting=trial.suggest_categorical("weighting", list(WEIGHTINGS)),
    )


def _space_params(config: TrainConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in SEARCH_SPACE}


@dataclass(frozen=True)
class TuneResult:
    """The search outcome; ``test`` holds the best config's test metrics when it was trained."""

    best: TrainConfig
    best_value: float
    baseline_value: float | None  # the starting config (trial 0), same validation split
    n_complete: int
    n_pruned: int
    run_id: str
    best_config_path: Path
    test: dict[str, Any] | None


def tune(
    data_dir: str | Path,
    out_dir: str | Path,
    n_trials: int | None = 30,
    timeout: float | None = None,
    *,
    base: TrainConfig | None = None,
    seed: int = 0,
    valid_fraction: float = VALID_FRACTION,
    prune: bool = True,
    final: bool = True,
    experiment: str = TUNE_EXPERIMENT,
    client: MlflowClient | None = None,
    on_trial: Callable[[optuna.trial.FrozenTrial, float | None], None] | None = None,
) -> TuneResult:
    """Search :data:`SEARCH_SPACE` (``base`` is tried first); write ``best.yaml`` to ``out_dir``.

    With ``final``, the best config is trained on the full training split into ``out_dir/model``
    and evaluated on the test split, tracked as the ``best`` child run.
    """
    import optuna

    if n_trials is None and timeout is None:
        raise ConfigError("give a number of trials, a timeout, or both")
    if n_trials is not None and n_trials < 1:
        raise ConfigError(f"the number of trials must be at least 1, got {n_trials}")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"the timeout must be positive, got {timeout}")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ConfigError(f"{out_dir}: exists and is not a directory")
    base = base or TrainConfig()
    if base.engine != "implicit":
        raise ConfigError("tuning supports the implicit engine only")
    client = client or get_client()
    dataset = Dataset.load(data_dir)
    split = validation_split(dataset.train, valid_fraction, seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tags = run_tags(dataset.fingerprint, dataset.meta.get("source"), base.engine)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5)
        if prune
        else optuna.pruners.NopPruner(),
    )
    study.enqueue_trial(_space_params(base))
    with (
        mlflow_errors(f"tracking to {display_uri(client.tracking_uri)}"),
        start_run(client, experiment, "tune", tags=tags | {"stage": "tune"}) as parent,
    ):
        parent.log_params(
            {"n_trials": n_trials, "timeout": timeout, "seed": seed, "prune": prune}
            | {"valid_fraction": valid_fraction, "checkpoint_every": CHECKPOINT_EVERY}
            | {f"base.{k}": v for k, v in base.to_dict().items()}
            | dataset_params(dataset)
        )

        def objective(trial: optuna.Trial) -> float:
            config = suggest_config(trial, base)
            name = f"trial-{trial.number}"
            with start_run(
                client, experiment, name, parent.run_id, tags | {"stage": "trial"}
            ) as run:
                run.log_params(config.to_dict())

                def report(step: int, ndcg: float) -> None:
                    run.log_metrics({VALID_METRIC: ndcg}, step=step)
                    trial.report(ndcg, step)
                    if trial.should_prune():
                        run.set_tags({"trial_state": "pruned"})
                        raise optuna.TrialPruned(f"{VALID_METRIC}={ndcg:.4f} after {step} sweeps")

                every = CHECKPOINT_EVERY if prune else config.iterations
                try:
                    score = score_config(config, split, report, every)
                except optuna.TrialPruned:
                    pruned = True
                else:
                    pruned = False
                    run.log_metrics({"train_seconds": score.fit_seconds})
                    run.set_tags({"trial_state": "complete"})
            if pruned:
                raise optuna.TrialPruned()
            return score.ndcg

        callbacks = [lambda study, trial: on_trial(trial, _best(study))] if on_trial else []
        study.optimize(objective, n_trials=n_trials, timeout=timeout, callbacks=callbacks)
        states = [t.state for t in study.trials]
        n_complete = states.count(optuna.trial.TrialState.COMPLETE)
        if n_complete == 0:
            raise ConfigError("no trial completed; allow more trials or a longer timeout")
        best = base.override(**study.best_params)
        first = study.trials[0]
        baseline = first.value if first.state == optuna.trial.TrialState.COMPLETE else None
        parent.log_metrics({f"best_{VALID_METRIC}": study.best_value})
        if baseline is not None:
            parent.log_metrics({f"baseline_{VALID_METRIC}": baseline})
        baseline_text = f"{baseline:.4f}" if baseline is not None else "pruned"
        header = (
            f"Best of {len(study.trials)} `musicrec tune` trials on dataset {dataset.fingerprint}\n"
            f"validation NDCG@10 {study.best_value:.4f} (starting config: {baseline_text})\n"
            f"tracking run {parent.run_id}"
        )
        best_path = write_config_yaml(out_dir / "best.yaml", best, header)
        _write_trials_csv(out_dir / "trials.csv", study)
        parent.log_artifact(best_path)
        parent.log_artifact(out_dir / "trials.csv")
        test = _final(data_dir, out_dir, best, experiment, parent.run_id, client) if final else None
        if test is not None:
            parent.log_metrics({"best_test_ndcg_at_10": float(test["ndcg@10"])})
    return TuneResult(
        best,
        float(study.best_value),
        baseline,
        n_complete,
        states.count(optuna.trial.TrialState.PRUNED),
        parent.run_id,
        best_path,
        test,
    )


def _best(study: optuna.Study) -> float | None:
    try:
        return float(study.best_value)
    except ValueError:  # no completed trial yet
        return None


def _final(
    data_dir: str | Path,
    out_dir: Path,
    config: TrainConfig,
    experiment: str,
    parent_run_id: str,
    client: MlflowClient,
) -> dict[str, Any]:
    """Train ``config`` on the full training split, evaluate on test, track as ``best``."""
    from musicrec.evaluate import evaluate_model
    from musicrec.tracking import track_evaluation, tracked_train

    model_dir = out_dir / "model"
    tracked_train(
        data_dir,
        model_dir,
        config,
        experiment=experiment,
        model_name=None,
        run_name="best",
        parent_run_id=parent_run_id,
        client=client,
    )
    report = evaluate_model(data_dir, model_dir).to_dict()
    track_evaluation(model_dir, report, experiment=experiment, client=client)
    return report


def write_config_yaml(path: Path, config: TrainConfig, comment: str = "") -> Path:
    """Write ``config`` as a ``train:`` section that ``musicrec train --config`` reads."""
    lines = "".join(f"# {line}\n" for line in comment.splitlines())
    return write_text_atomic(
        path, lines + yaml.safe_dump({"train": config.to_dict()}, sort_keys=False)
    )


def _write_trials_csv(path: Path, study: optuna.Study) -> None:
    names = list(SEARCH_SPACE)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["trial", "state", VALID_METRIC, "seconds", *names])
    for trial in study.trials:
        seconds = trial.duration.total_seconds() if trial.duration else ""
        params = [trial.params.get(name, "") for name in names]
        writer.writerow([trial.number, trial.state.name, trial.value, seconds, *params])
    write_text_atomic(path, buffer.getvalue())
