"""Starting an experiment: parse the arms and guardrails, check every arm's model loads, store.

Nothing is written until every arm's model has loaded: an experiment either starts whole or
not at all. A ``models:/`` reference is resolved through the registry (downloaded into the
model cache once); any other reference is an artifact directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from musicrec.errors import ExperimentError, MusicrecError
from musicrec.events.store import EventStore
from musicrec.models.artifact import ModelArtifact
from musicrec.online.experiments import Arm, Experiment, ExperimentSpec, ExperimentStore

REGISTRY_SCHEME = "models:/"


def load_arm(arm: Arm) -> Arm:
    """The arm with the version of its model, or :class:`ExperimentError` if it does not load."""
    try:
        if arm.model.startswith(REGISTRY_SCHEME):
            from musicrec.tracking.registry import resolve_model

            path = Path(resolve_model(arm.model))
        else:
            path = Path(arm.model)
        artifact = ModelArtifact.load(path)
    except (MusicrecError, OSError, ValueError) as exc:
        raise ExperimentError(f"arm {arm.name!r}: model {arm.model} does not load: {exc}") from exc
    return replace(arm, version=artifact.version)


def start_experiment(store: EventStore, spec: ExperimentSpec) -> Experiment:
    """Validate ``spec``, load every arm's model, then store the running experiment."""
    spec.validate()
    arms = tuple(load_arm(arm) for arm in spec.arms)
    return ExperimentStore(store).create(replace(spec, arms=arms))


def parse_arms(values: Sequence[str], shares: str | None) -> tuple[Arm, ...]:
    """``["control=models:/m@champion", "new=./model"]`` and ``"50,50"`` -> arms.

    Without shares, the arms split the listeners equally (the last takes the rounding).
    """
    pairs = []
    for value in values:
        name, sep, model = value.partition("=")
        if not sep or not name.strip() or not model.strip():
            raise ExperimentError(f"--arm {value!r} must be NAME=MODEL")
        pairs.append((name.strip(), model.strip()))
    if shares is None:
        if not pairs:
            return ()
        each = int(100 * 100 / len(pairs)) / 100  # in steps of 0.01
        parsed = [each] * (len(pairs) - 1) + [round(100 - each * (len(pairs) - 1), 2)]
    else:
        try:
            parsed = [float(part) for part in shares.split(",")]
        except ValueError:
            raise ExperimentError(f"--share {shares!r} must be numbers like 50,50") from None
        if len(parsed) != len(pairs):
            raise ExperimentError(f"{len(pairs)} arms but {len(parsed)} shares in {shares!r}")
    return tuple(
        Arm(name, model, share) for (name, model), share in zip(pairs, parsed, strict=True)
    )


def parse_guardrails(values: Sequence[str]) -> dict[str, float]:
    """``["p99_ms=50", "ban_rate=0.05"]`` -> thresholds (validated with the spec)."""
    out: dict[str, float] = {}
    for value in values:
        key, sep, number = value.partition("=")
        try:
            out[key.strip()] = float(number)
        except ValueError:
            raise ExperimentError(f"--guardrail {value!r} must be NAME=NUMBER") from None
        if not sep:
            raise ExperimentError(f"--guardrail {value!r} must be NAME=NUMBER")
    return out
