"""The trials of a search: a config scored on a validation split, one TPE study per kind.

A model fitted in sweeps is scored at checkpoints through ``Model.fit_partial``; each kind's
search space is its own (``Model.suggest``); every trial is observed as a child of the search.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import scipy.sparse as sp

from musicrec.config import TrainConfig
from musicrec.errors import ConfigError, MusicrecError
from musicrec.models.base import Model
from musicrec.models.blend import blend_of
from musicrec.models.kinds import build, config_name, model_class, tunable_kinds
from musicrec.pipeline.observer import StageObserver, observing

if TYPE_CHECKING:
    import optuna

VALID_METRIC = "val_ndcg_at_10"
CHECKPOINT_EVERY = 10  # each checkpoint is a full validation pass, so not every sweep
BLEND_WEIGHTS = (0.3, 0.5, 0.7)


@dataclass(frozen=True)
class ValidationSplit:
    """Training rows split per user into a fitting part and a held-out validation part."""

    train: sp.csr_matrix
    valid: sp.csr_matrix


def model_ndcg(model: Model, split: ValidationSplit, k: int = 10) -> float:
    """NDCG@k of a model fitted on ``split.train`` on the held-out rows (fitting rows excluded)."""
    from musicrec.pipeline.evaluate import evaluate_ranker

    metrics, _ = evaluate_ranker(model, split.train, split.valid, ks=(k,))
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

    A model fitted in sweeps fits in stages of ``every`` sweeps (``fit_partial``) and is scored
    after each (the same model as one uninterrupted fit); other kinds fit once and are scored
    once. ``on_checkpoint(step, ndcg)`` may raise to stop early (Optuna's ``TrialPruned``).
    """
    model = build(config)
    done, seconds, ndcg = 0, 0.0, math.nan
    for step in checkpoints(model.sweeps, every):
        started = time.perf_counter()
        model.fit_partial(split.train, step - done)
        seconds += time.perf_counter() - started
        done = step
        ndcg = model_ndcg(model, split)
        if on_checkpoint is not None:
            on_checkpoint(step, ndcg)
    return Score(ndcg, seconds)


def suggest_config(
    trial: optuna.Trial, base: TrainConfig, kinds: tuple[str, ...] = ("als",)
) -> TrainConfig:
    """One point of the search space; unsearched settings (seed, BM25 shape) come from ``base``."""
    kind = kinds[0] if len(kinds) == 1 else trial.suggest_categorical("kind", list(kinds))
    start = base if base.kind == kind else TrainConfig.for_kind(kind)
    return model_class(kind).suggest(trial, start)


def trial_params(config: TrainConfig, kinds: tuple[str, ...]) -> dict[str, Any]:
    """The Optuna parameters that reproduce ``config`` (to enqueue a starting trial)."""
    params = model_class(config.kind).trial_params(config)
    if len(kinds) > 1:
        params["kind"] = config.kind
    return params


def parse_kinds(kinds: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"als,ease"`` -> ``("als", "ease")``; unknown or untunable kinds are an error."""
    names = kinds.split(",") if isinstance(kinds, str) else list(kinds)
    names = [n.strip() for n in names if n.strip()]
    tunable = tunable_kinds()
    unknown = [n for n in names if n not in tunable]
    if not names or unknown:
        raise ConfigError(
            f"kinds to tune must be among {', '.join(tunable)}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
        )
    return tuple(dict.fromkeys(names))


def blend_best(
    configs: list[tuple[float, TrainConfig]],
    split: ValidationSplit,
    weights: tuple[float, ...] = BLEND_WEIGHTS,
    top_kinds: int | None = None,
) -> list[tuple[float, TrainConfig]]:
    """Validation NDCG of blends of every pair among the best configs of the kinds searched.

    The best config of each of the ``top_kinds`` best kinds is fitted once; each pair is
    blended at each weight. Pairs of different families often beat the best single pair.
    """
    from itertools import combinations

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
            blend = blend_of(config, fitted[first.kind], fitted[second.kind])
            out.append((model_ndcg(blend, split), config))
    return out


class Search:
    """One TPE study per kind over a shared budget; every trial observed as a child."""

    def __init__(
        self,
        split: ValidationSplit,
        base: TrainConfig,
        kinds: tuple[str, ...],
        observer: StageObserver,
        tags: dict[str, str],
        *,
        seed: int = 0,
        prune: bool = True,
    ):
        self.split, self.base, self.kinds = split, base, kinds
        self.observer, self.tags = observer, tags
        self.seed, self.prune = seed, prune
        self.studies: list[optuna.Study] = []
        self.blends: list[tuple[float, TrainConfig]] = []
        self._counter = iter(range(1 << 30))

    def start(self, kind: str) -> TrainConfig:
        return self.base if self.base.kind == kind else TrainConfig.for_kind(kind)

    def objective(self, trial: optuna.Trial, *, kind: str) -> float:
        import optuna

        config = suggest_config(trial, self.start(kind), (kind,))
        number = next(self._counter)
        trial.set_user_attr("config", config.to_dict())
        trial.set_user_attr("number", number)
        shape = build(config)  # how it fits: in sweeps (pruned at checkpoints) or at once
        child = self.observer.child(f"trial-{number}")
        with observing(
            child, "trial", config.to_dict(), self.tags | {"stage": "trial", "kind": kind}
        ):

            def report(step: int, ndcg: float) -> None:
                child.on_metrics({VALID_METRIC: ndcg}, step=step)
                trial.report(ndcg, step)
                if shape.iterative and trial.should_prune():
                    child.on_tags({"trial_state": "pruned"})
                    raise optuna.TrialPruned(f"{VALID_METRIC}={ndcg:.4f} after {step} sweeps")

            every = CHECKPOINT_EVERY if self.prune else shape.sweeps
            try:
                score = score_config(config, self.split, report, every)
            except optuna.TrialPruned:
                pruned = True
            else:
                pruned = False
                child.on_metrics({"train_seconds": score.fit_seconds})
                child.on_tags({"trial_state": "complete"})
        if pruned:
            raise optuna.TrialPruned()
        return score.ndcg

    def run(
        self,
        n_trials: int | None,
        timeout: float | None,
        on_trial: Callable[[optuna.trial.FrozenTrial, float | None], None] | None,
    ) -> None:
        """Each kind's share of the trials (and of the time left), one study after another."""
        import optuna

        started = time.monotonic()
        for position, kind in enumerate(self.kinds):
            study = optuna.create_study(
                direction="maximize",
                sampler=optuna.samplers.TPESampler(seed=self.seed),
                pruner=optuna.pruners.MedianPruner(n_startup_trials=5)
                if self.prune
                else optuna.pruners.NopPruner(),
            )
            self.studies.append(study)
            study.enqueue_trial(trial_params(self.start(kind), (kind,)))
            share_trials = None
            if n_trials is not None:
                share_trials = n_trials // len(self.kinds) + (position < n_trials % len(self.kinds))
                if share_trials == 0:
                    continue
            share_time = None
            if timeout is not None:
                left = timeout - (time.monotonic() - started)
                share_time = max(1.0, left / (len(self.kinds) - position))
            callbacks = (
                [lambda study, trial: on_trial(trial, _best_of(self.studies))] if on_trial else []
            )
            # A config a kind cannot fit (e.g. EASE's Gram matrix losing definiteness) fails
            # its trial, not the search.
            study.optimize(
                partial(self.objective, kind=kind),
                n_trials=share_trials,
                timeout=share_time,
                callbacks=callbacks,
                catch=(MusicrecError,),
            )

    @property
    def trials(self) -> list[optuna.trial.FrozenTrial]:
        return [t for study in self.studies for t in study.trials]

    def complete(self) -> list[optuna.trial.FrozenTrial]:
        import optuna

        return [t for t in self.trials if t.state == optuna.trial.TrialState.COMPLETE]

    def best(self, blend: bool) -> tuple[float, TrainConfig]:
        """The best config tried; with ``blend``, blends of the best kinds join the contest."""
        scored = [
            (float(t.value), TrainConfig.from_dict(t.user_attrs["config"]))  # type: ignore[arg-type]
            for t in self.complete()
        ]
        if not scored:
            raise ConfigError("no trial completed; allow more trials or a longer timeout")
        best_value, best = max(scored, key=lambda vc: vc[0])
        if blend:
            self.blends = blend_best(scored, self.split)
            for value, config in self.blends:
                child = self.observer.child(config_name(config))
                tags = self.tags | {"stage": "trial", "kind": "blend"}
                with observing(child, "trial", config.to_dict(), tags):
                    child.on_metrics({VALID_METRIC: value})
                    child.on_tags({"trial_state": "complete"})
                if value > best_value:
                    best_value, best = value, config
        return best_value, best

    def baseline(self) -> float | None:
        """The starting config's value (trial 0), unless it was pruned."""
        import optuna

        first = next((t for t in self.trials if t.user_attrs.get("number") == 0), None)
        done = first is not None and first.state == optuna.trial.TrialState.COMPLETE
        return first.value if done and first is not None else None


def _best_of(studies: list[optuna.Study]) -> float | None:
    values = [t.value for s in studies for t in s.trials if t.value is not None]
    return max(values) if values else None
