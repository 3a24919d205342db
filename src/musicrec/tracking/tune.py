"""Hyperparameter search over model kinds: Optuna TPE on a validation split.

A dataset prepared with a validation part (``musicrec data prepare --protocol ratio``) is
searched on that part; otherwise a validation split is carved from train as described below.

``kinds`` (default ALS alone) share the trial budget (and the time budget) equally; each kind
has its own TPE study over its parameters (:data:`SPACES`), started from its defaults, so no
kind is starved because another looked good early. After the search, the best configs of the
two best kinds are blended (weights :data:`BLEND_WEIGHTS`, scored on the same validation split)
and the blend is kept when it beats both. The test split is never looked at while searching.
Each user's training rows are split again (``valid_fraction`` held out, at least one row
kept); every trial fits on the rest and is scored
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
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import yaml

from musicrec.config import TrainConfig, config_name
from musicrec.data.dataset import Dataset
from musicrec.errors import ConfigError, MusicrecError
from musicrec.fsutil import write_text_atomic
from musicrec.models.base import Model
from musicrec.models.registry import build
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

    from musicrec.ranking import Ranker

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
L2 = (20.0, 1e4)  # EASE, log scale
NEIGHBOURS = (10, 1000)  # itemknn / rp3beta, integer, log scale
RP3_ALPHA = (0.2, 1.5)
RP3_BETA = (0.0, 1.0)
TUNABLE_KINDS = ("als", "ease", "itemknn", "rp3beta", "dlae")
BLEND_WEIGHTS = (0.3, 0.5, 0.7)
# Every parameter a trial may set, per kind (the columns of trials.csv).
SPACES: dict[str, tuple[str, ...]] = {
    "als": SEARCH_SPACE,
    "ease": ("l2", "weighting"),
    "itemknn": ("similarity", "neighbours", "weighting"),
    "rp3beta": ("rp3_alpha", "rp3_beta", "neighbours", "weighting"),
    "dlae": ("l2", "dropout", "weighting"),
}


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
    """NDCG@k of ALS factors on the held-out rows, ranking with the fitting rows excluded."""
    from musicrec.ranking import FactorRanker

    return _ndcg(FactorRanker(user_factors, item_factors), split, k)


def model_ndcg(model: Model, split: ValidationSplit, k: int = 10) -> float:
    """NDCG@k of a fitted model of any kind on the held-out rows."""
    from musicrec.ranking import ModelRanker

    return _ndcg(ModelRanker(model, split.train), split, k)


def _ndcg(ranker: Ranker, split: ValidationSplit, k: int) -> float:
    from musicrec.pipeline.evaluate import evaluate_ranker

    metrics, _ = evaluate_ranker(ranker, split.train, split.valid, ks=(k,))
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
    """Fit ``config`` on ``split.train``; validation NDCG@10 of the fitted model.

    ALS fits in stages of ``every`` sweeps and is scored after each (the same model as one
    uninterrupted fit); other kinds fit once and are scored once. ``on_checkpoint(step, ndcg)``
    may raise to stop early (Optuna's ``TrialPruned``).
    """
    if config.kind != "als":
        started = time.perf_counter()
        model = build(config).fit(split.train)
        seconds = time.perf_counter() - started
        ndcg = model_ndcg(model, split)
        if on_checkpoint is not None:
            on_checkpoint(1, ndcg)
        return Score(ndcg, seconds)
    from threadpoolctl import threadpool_limits

    from musicrec.models.als import build_als
    from musicrec.models.confidence import confidence

    weighted = confidence(split.train, config)
    als = build_als(config)
    done, seconds, ndcg = 0, 0.0, float("nan")
    for step in checkpoints(config.iterations, every):
        als.iterations = step - done
        started = time.perf_counter()
        with threadpool_limits(limits=1, user_api="blas"):
            als.fit(weighted, show_progress=False)
        seconds += time.perf_counter() - started
        done = step
        cpu = als.to_cpu() if hasattr(als, "to_cpu") else als
        ndcg = validation_ndcg(np.asarray(cpu.user_factors), np.asarray(cpu.item_factors), split)
        if on_checkpoint is not None:
            on_checkpoint(step, ndcg)
    return Score(ndcg, seconds)


def suggest_config(
    trial: optuna.Trial, base: TrainConfig, kinds: tuple[str, ...] = ("als",)
) -> TrainConfig:
    """One point of the search space; unsearched settings (seed, BM25 shape) come from ``base``."""
    kind = kinds[0] if len(kinds) == 1 else trial.suggest_categorical("kind", list(kinds))
    start = base if base.kind == kind else TrainConfig.for_kind(kind)
    weighting = trial.suggest_categorical(f"{kind}.weighting", list(WEIGHTINGS))
    if kind == "als":
        return start.override(
            factors=trial.suggest_int("factors", *FACTORS, log=True),
            regularization=trial.suggest_float("regularization", *REGULARIZATION, log=True),
            alpha=trial.suggest_float("alpha", *ALPHA, log=True),
            iterations=trial.suggest_int("iterations", *ITERATIONS),
            weighting=weighting,
        )
    if kind == "ease":
        return start.override(l2=trial.suggest_float("l2", *L2, log=True), weighting=weighting)
    if kind == "dlae":
        from musicrec.models.dlae import DLAEModel

        return DLAEModel.suggest(trial, start.override(weighting=weighting))
    if kind == "itemknn":
        return start.override(
            similarity=trial.suggest_categorical("similarity", ["cosine", "bm25", "tfidf"]),
            neighbours=trial.suggest_int("itemknn.neighbours", *NEIGHBOURS, log=True),
            weighting=weighting,
        )
    return start.override(
        rp3_alpha=trial.suggest_float("rp3_alpha", *RP3_ALPHA),
        rp3_beta=trial.suggest_float("rp3_beta", *RP3_BETA),
        neighbours=trial.suggest_int("rp3beta.neighbours", *NEIGHBOURS, log=True),
        weighting=weighting,
    )


def trial_params(config: TrainConfig, kinds: tuple[str, ...]) -> dict[str, Any]:
    """The Optuna parameters that reproduce ``config`` (to enqueue a starting trial)."""
    names = {"neighbours": f"{config.kind}.neighbours", "weighting": f"{config.kind}.weighting"}
    params = {names.get(n, n): getattr(config, n) for n in SPACES[config.kind]}
    if len(kinds) > 1:
        params["kind"] = config.kind
    return params


def parse_kinds(kinds: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"als,ease"`` -> ``("als", "ease")``; unknown or untunable kinds are an error."""
    names = kinds.split(",") if isinstance(kinds, str) else list(kinds)
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in TUNABLE_KINDS]
    if not names or unknown:
        raise ConfigError(
            f"kinds to tune must be among {', '.join(TUNABLE_KINDS)}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
        )
    return tuple(dict.fromkeys(names))


def blend_best(
    configs: list[tuple[float, TrainConfig]],
    split: ValidationSplit,
    weights: tuple[float, ...] = BLEND_WEIGHTS,
    top_kinds: int = len(TUNABLE_KINDS),
) -> list[tuple[float, TrainConfig]]:
    """Validation NDCG of blends of every pair among the best configs of the kinds searched.

    The best config of each of the ``top_kinds`` best kinds is fitted once; each pair is
    blended at each weight. Pairs of different families often beat the best single pair.
    """
    from itertools import combinations

    from musicrec.models.blend import BlendModel

    best_per_kind: dict[str, tuple[float, TrainConfig]] = {}
    for value, config in sorted(configs, key=lambda vc: -vc[0]):
        best_per_kind.setdefault(config.kind, (value, config))
    chosen = [config for _, config in list(best_per_kind.values())[:top_kinds]]
    if len(chosen) < 2:
        return []
    fitted = {config.kind: build(config).fit(split.train) for config in chosen}
    out = []
    for first, second in combinations(chosen, 2):
        for weight in weights:
            config = TrainConfig.for_kind(
                "blend", first=first.to_dict(), second=second.to_dict(), blend_weight=weight
            )
            blend = BlendModel(config)
            blend.first, blend.second = fitted[first.kind], fitted[second.kind]
            blend._remember(split.train)
            out.append((model_ndcg(blend, split), config))
    return out


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
    kinds: tuple[str, ...] | str | None = None,
    blend: bool = True,
    seed: int = 0,
    valid_fraction: float = VALID_FRACTION,
    prune: bool = True,
    final: bool = True,
    experiment: str = TUNE_EXPERIMENT,
    client: MlflowClient | None = None,
    on_trial: Callable[[optuna.trial.FrozenTrial, float | None], None] | None = None,
) -> TuneResult:
    """Search ``kinds`` (default: ``base``'s kind; ``base`` is tried first); write ``best.yaml``.

    With several kinds and ``blend``, the two best kinds are also blended. With ``final``, the
    best config is trained on the full training split into ``out_dir/model`` and evaluated on
    the test split, tracked as the ``best`` child run.
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
    kinds = parse_kinds(kinds if kinds is not None else (base.kind,))
    if base.kind not in kinds:
        base = TrainConfig.for_kind(kinds[0])
    if base.kind == "als" and base.engine != "implicit":
        raise ConfigError("tuning supports the implicit engine only")
    client = client or get_client()
    dataset = Dataset.load(data_dir)
    given = dataset.validation_parts()  # a protocol's own validation part, else carve one
    split = (
        ValidationSplit(*given) if given else validation_split(dataset.train, valid_fraction, seed)
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tags = run_tags(dataset.fingerprint, dataset.meta.get("source"), base.engine, base.kind)

    def new_study() -> optuna.Study:
        return optuna.create_study(
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=5)
            if prune
            else optuna.pruners.NopPruner(),
        )

    studies: list[optuna.Study] = []
    started = time.monotonic()
    with (
        mlflow_errors(f"tracking to {display_uri(client.tracking_uri)}"),
        start_run(client, experiment, "tune", tags=tags | {"stage": "tune"}) as parent,
    ):
        parent.log_params(
            {"n_trials": n_trials, "timeout": timeout, "seed": seed, "prune": prune}
            | {"valid_fraction": valid_fraction, "checkpoint_every": CHECKPOINT_EVERY}
            | {"validation": "dataset" if dataset.has_valid else "carved from train"}
            | {"kinds": ",".join(kinds), "blend": blend}
            | {f"base.{k}": v for k, v in base.to_dict().items()}
            | dataset_params(dataset)
        )
        counter = iter(range(1 << 30))

        def objective(trial: optuna.Trial, *, kind: str) -> float:
            start = base if base.kind == kind else TrainConfig.for_kind(kind)
            config = suggest_config(trial, start, (kind,))
            number = next(counter)
            trial.set_user_attr("config", config.to_dict())
            trial.set_user_attr("number", number)
            with start_run(
                client,
                experiment,
                f"trial-{number}",
                parent.run_id,
                tags | {"stage": "trial", "kind": config.kind},
            ) as run:
                run.log_params(config.to_dict())

                def report(step: int, ndcg: float) -> None:
                    run.log_metrics({VALID_METRIC: ndcg}, step=step)
                    trial.report(ndcg, step)
                    if config.kind == "als" and trial.should_prune():
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

        for position, kind in enumerate(kinds):
            study = new_study()
            studies.append(study)
            start = base if base.kind == kind else TrainConfig.for_kind(kind)
            study.enqueue_trial(trial_params(start, (kind,)))
            share_trials = None
            if n_trials is not None:
                share_trials = n_trials // len(kinds) + (position < n_trials % len(kinds))
                if share_trials == 0:
                    continue
            share_time = None
            if timeout is not None:
                left = timeout - (time.monotonic() - started)
                share_time = max(1.0, left / (len(kinds) - position))
            callbacks = (
                [lambda study, trial: on_trial(trial, _best_of(studies))] if on_trial else []
            )
            # A config a kind cannot fit (e.g. EASE's Gram matrix losing definiteness) fails
            # its trial, not the search.
            study.optimize(
                partial(objective, kind=kind),
                n_trials=share_trials,
                timeout=share_time,
                callbacks=callbacks,
                catch=(MusicrecError,),
            )
        trials = [t for study in studies for t in study.trials]
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            raise ConfigError("no trial completed; allow more trials or a longer timeout")
        scored = [(float(t.value), TrainConfig.from_dict(t.user_attrs["config"])) for t in complete]  # type: ignore[arg-type]
        best_value, best = max(scored, key=lambda vc: vc[0])
        blends: list[tuple[float, TrainConfig]] = []
        out_of_time = timeout is not None and time.monotonic() - started > timeout
        if blend and len(kinds) > 1 and not out_of_time:
            blends = blend_best(scored, split)
            for value, config in blends:
                with start_run(
                    client,
                    experiment,
                    config_name(config),
                    parent.run_id,
                    tags | {"stage": "trial", "kind": "blend"},
                ) as run:
                    run.log_params(config.to_dict())
                    run.log_metrics({VALID_METRIC: value})
                    run.set_tags({"trial_state": "complete"})
                if value > best_value:
                    best_value, best = value, config
        first = next((t for t in trials if t.user_attrs.get("number") == 0), None)
        done = first is not None and first.state == optuna.trial.TrialState.COMPLETE
        baseline = first.value if done and first is not None else None
        parent.log_metrics({f"best_{VALID_METRIC}": best_value})
        if baseline is not None:
            parent.log_metrics({f"baseline_{VALID_METRIC}": baseline})
        baseline_text = f"{baseline:.4f}" if baseline is not None else "pruned"
        header = (
            f"Best of {len(trials)} `musicrec tune` trials ({', '.join(kinds)}) on "
            f"dataset {dataset.fingerprint}\n"
            f"validation NDCG@10 {best_value:.4f} (starting config: {baseline_text})\n"
            f"tracking run {parent.run_id}"
        )
        best_path = write_config_yaml(out_dir / "best.yaml", best, header)
        _write_trials_csv(out_dir / "trials.csv", trials, kinds, blends)
        parent.log_artifact(best_path)
        parent.log_artifact(out_dir / "trials.csv")
        parent.set_tags({"best_kind": best.kind})
        test = _final(dataset, out_dir, best, experiment, parent.run_id, client) if final else None
        if test is not None:
            parent.log_metrics({"best_test_ndcg_at_10": float(test["ndcg@10"])})
    return TuneResult(
        best,
        best_value,
        baseline,
        len(complete),
        sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
        parent.run_id,
        best_path,
        test,
    )


def _best_of(studies: list[optuna.Study]) -> float | None:
    values = [t.value for s in studies for t in s.trials if t.value is not None]
    return max(values) if values else None


def _final(
    dataset: Dataset,
    out_dir: Path,
    config: TrainConfig,
    experiment: str,
    parent_run_id: str,
    client: MlflowClient,
) -> dict[str, Any]:
    """Train ``config`` on the full training split, evaluate on test, track as ``best``."""
    from musicrec.pipeline.sequence import train_and_evaluate
    from musicrec.tracking import MlflowObserver

    observer = MlflowObserver(
        client, experiment, run_name="best", parent_run_id=parent_run_id, dataset=dataset
    )
    _, report = train_and_evaluate(dataset, out_dir / "model", config, observer)
    return report.to_dict()


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
    names = list(dict.fromkeys(name for kind in kinds for name in SPACES[kind]))
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
