"""Prometheus metrics per experiment and arm, for the API workers to increment.

Names are a contract with the Grafana row "Online experiments" and the alert
``MusicrecExperimentArmStopped`` in ``deploy/``. Bind :class:`ExperimentMetrics` to the API's
registry (``None`` in multiprocess mode, where samples go to ``PROMETHEUS_MULTIPROC_DIR``).
Labels: ``experiment`` and ``arm`` (bounded: experiments are few and named by operators).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LISTS = "experiment_lists_total"  # lists served per arm, by outcome (ok | error)
LIST_SECONDS = "experiment_list_seconds"  # latency of the arm's lists (p99 guardrail)
IMPRESSIONS = "experiment_impressions_total"  # artists shown per arm
OUTCOMES = "experiment_outcomes_total"  # play / skip / love / ban attributed per arm
ARM_STOPPED = "experiment_arm_stopped"  # 1 once a guardrail (or an operator) stopped the arm
NAMES = (LISTS, LIST_SECONDS, IMPRESSIONS, OUTCOMES, ARM_STOPPED)
LABELS = ("experiment", "arm")
LATENCY_BUCKETS = (
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    1.0,
    2.5,
)  # the API's request buckets


class ExperimentMetrics:
    """Counters, the latency histogram and the stopped gauge of every experiment arm."""

    def __init__(self, registry: CollectorRegistry | None):
        self.lists = Counter(
            LISTS,
            "Lists served by an experiment arm, by outcome.",
            [*LABELS, "outcome"],
            registry=registry,
        )
        self.seconds = Histogram(
            LIST_SECONDS, "Latency of an experiment arm's lists.", LABELS,
            buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.impressions = Counter(
            IMPRESSIONS, "Artists shown by an experiment arm.", LABELS, registry=registry
        )
        self.outcomes = Counter(
            OUTCOMES, "Outcome events attributed to an arm's impressions, by kind.",
            [*LABELS, "kind"], registry=registry,
        )  # fmt: skip
        self.stopped = Gauge(
            ARM_STOPPED, "1 when the experiment arm is stopped (guardrail or operator).",
            LABELS, multiprocess_mode="max", registry=registry,
        )  # fmt: skip

    def observe_list(
        self, experiment: str, arm: str, seconds: float, shown: int, error: bool = False
    ) -> None:
        """One list asked of ``arm``: its latency, how many artists it showed, whether it failed."""
        self.lists.labels(experiment, arm, "error" if error else "ok").inc()
        self.seconds.labels(experiment, arm).observe(seconds)
        if shown:
            self.impressions.labels(experiment, arm).inc(shown)

    def observe_outcome(self, experiment: str, arm: str, kind: str) -> None:
        """A play, skip, love or ban attributed to one of the arm's impressions."""
        self.outcomes.labels(experiment, arm, kind).inc()

    def set_stopped(self, experiment: str, arm: str, stopped: bool = True) -> None:
        """Mirror the arm's state in the store (the alert fires on 1)."""
        self.stopped.labels(experiment, arm).set(1 if stopped else 0)
