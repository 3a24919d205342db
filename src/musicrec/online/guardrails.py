"""Guardrails: stop an arm that hurts listeners, by itself, and record when and why.

Thresholds are given when an experiment starts (``--guardrail p99_ms=50`` ...; see
:data:`musicrec.online.experiments.GUARDRAILS`). Whoever observes the arms (the API workers,
from their request timings and counters; ``musicrec online report`` from the store) hands
per-arm :class:`ArmObservation` s to :func:`enforce_guardrails`, the one entry point: it
decides with :func:`check_guardrails` (pure) and stops each breaching arm in the experiment
store, in a transaction that only touches an arm not stopped yet, so when several workers
see a breach at once exactly one records it. When every arm is stopped the experiment stops.

When an arm is in breach:

- ``p99_ms``: its 99th-percentile latency exceeds the limit over at least
  :data:`MIN_REQUESTS` lists (fewer make the p99 the slowest one or two requests);
- ``error_rate`` (errors per list), ``ban_rate`` and ``skip_rate`` (per impression): the
  whole 95 % Wilson interval of the rate lies above the limit, over at least
  :data:`MIN_TRIALS` lists or impressions. An arm is not stopped on a rate that is above the
  limit by chance. The interval treats the pooled counts as independent trials: serving
  observes counters, not listeners; the per-listener intervals are the report's.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from musicrec.errors import ExperimentError
from musicrec.events.store import EventStore
from musicrec.online.experiments import Experiment, ExperimentStore
from musicrec.stats import proportion_interval

MIN_REQUESTS = 100  # a p99 over fewer lists is the slowest one or two of them
MIN_TRIALS = 100  # lists (error rate) or impressions (ban and skip rates)


@dataclass(frozen=True)
class ArmObservation:
    """What has been seen of one arm since the experiment started (cumulative counts)."""

    requests: int = 0  # lists asked of the arm
    errors: int = 0  # of those, how many failed
    p99_ms: float | None = None  # 99th-percentile latency of those lists
    impressions: int = 0  # artists shown
    bans: int = 0  # bans attributed to those impressions
    skips: int = 0  # skips attributed to those impressions


@dataclass(frozen=True)
class Breach:
    """One guardrail an arm broke, with the evidence."""

    arm: str
    guardrail: str
    value: float
    limit: float
    low: float  # the interval of a rate (NaN for the p99)
    high: float
    trials: int  # lists or impressions behind the value

    @property
    def reason(self) -> str:
        unit = "impressions" if self.guardrail in ("ban_rate", "skip_rate") else "lists"
        evidence = f"over {self.trials:,} {unit}"
        if not math.isnan(self.low):
            evidence = f"95 % interval {self.low:.4g}-{self.high:.4g} {evidence}"
        return f"guardrail {self.guardrail}: {self.value:.4g} > {self.limit:g} ({evidence})"

    def to_dict(self) -> dict[str, object]:
        return {
            "arm": self.arm,
            "guardrail": self.guardrail,
            "value": self.value,
            "limit": self.limit,
            "low": None if math.isnan(self.low) else self.low,
            "high": None if math.isnan(self.high) else self.high,
            "trials": self.trials,
            "reason": self.reason,
        }


def _rate(arm: str, name: str, limit: float, hits: int, trials: int) -> Breach | None:
    if trials < MIN_TRIALS:
        return None
    hits = min(max(hits, 0), trials)
    low, high = proportion_interval(hits, trials)
    if low <= limit:
        return None
    return Breach(arm, name, hits / trials, limit, low, high, trials)


def arm_breaches(arm: str, seen: ArmObservation, limits: Mapping[str, float]) -> list[Breach]:
    """The guardrails ``seen`` breaks under ``limits`` (pure)."""
    found: list[Breach | None] = []
    p99, limit = seen.p99_ms, limits.get("p99_ms")
    if limit is not None and p99 is not None and seen.requests >= MIN_REQUESTS and p99 > limit:
        nan = float("nan")
        found.append(Breach(arm, "p99_ms", p99, limit, nan, nan, seen.requests))
    counts = {
        "error_rate": (seen.errors, seen.requests),
        "ban_rate": (seen.bans, seen.impressions),
        "skip_rate": (seen.skips, seen.impressions),
    }
    for name, (hits, trials) in counts.items():
        if name in limits:
            found.append(_rate(arm, name, limits[name], hits, trials))
    return [breach for breach in found if breach is not None]


def check_guardrails(
    experiment: Experiment, observations: Mapping[str, ArmObservation]
) -> list[Breach]:
    """Breaches of the experiment's running arms (pure: nothing is stored).

    Arms already stopped, and arms without an observation, are not checked.
    """
    if not experiment.running or not experiment.guardrails:
        return []
    found = []
    for arm in experiment.arms:
        if arm.stopped_at is None and arm.name in observations:
            found += arm_breaches(arm.name, observations[arm.name], experiment.guardrails)
    return found


def enforce_guardrails(
    store: EventStore,
    name: str,
    observations: Mapping[str, ArmObservation],
    now: float | None = None,
) -> list[Breach]:
    """Stop every arm of experiment ``name`` that breaches a guardrail; the breaches this
    call recorded (an arm stopped by another worker meanwhile is not repeated).

    An arm's first breach is its recorded reason. When no arm is left running the
    experiment stops too, with the reason ``every arm stopped by guardrails``.
    """
    experiments = ExperimentStore(store)
    experiment = experiments.get(name)
    now = time.time() if now is None else now
    recorded: list[Breach] = []
    for breach in check_guardrails(experiment, observations):
        if any(done.arm == breach.arm for done in recorded):
            continue
        if experiments.stop_arm_once(name, breach.arm, breach.reason, now):
            recorded.append(breach)
    if recorded:
        after = experiments.get(name)
        if after.running and all(arm.stopped_at is not None for arm in after.arms):
            with contextlib.suppress(ExperimentError):  # another worker stopped it first
                experiments.stop(name, "every arm stopped by guardrails", now)
    return recorded


def observations_from_totals(totals: Mapping[str, int]) -> ArmObservation:
    """An arm's ban and skip counts as the store sees them (readout totals)."""
    return ArmObservation(
        impressions=int(totals.get("impressions", 0)),
        bans=int(totals.get("bans", 0)),
        skips=int(totals.get("skips", 0)),
    )
