"""Metrics of the live loop: events ingested and refused, fold-in latency, the served model.

They sit beside :class:`~musicrec.api.metrics.ApiMetrics` on the same registry (or the same
multiprocess directory). Per-worker gauges use ``liveall`` so ``/metrics`` keeps a ``pid``
label per worker: ``served_model_info{version, pid}`` shows which version each worker serves
and ``model_age_seconds`` how old it is (alert: ``ModelStale``).
"""

from __future__ import annotations

import calendar
import time
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

from musicrec.api.metrics import LATENCY_BUCKETS, ApiMetrics

if TYPE_CHECKING:
    from musicrec.serving.recommender import Recommender


def created_epoch(recommender: Recommender) -> float | None:
    """The model's ``created_at`` (manifest, UTC) as epoch seconds."""
    created = recommender.manifest.get("created_at")
    if not isinstance(created, str):
        return None
    try:
        return float(calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


class LiveMetrics:
    """Counters and gauges of ingestion, fold-in and model swaps."""

    def __init__(self, api: ApiMetrics):
        reg = api.registry
        self.multiprocess = api.multiprocess
        self.ingested = Counter(
            "events_ingested_total", "Events stored (acknowledged), by kind.", ["kind"],
            registry=reg,
        )  # fmt: skip
        self.duplicates = Counter(
            "events_duplicate_total", "Events not stored again: their event_id was known.",
            registry=reg,
        )  # fmt: skip
        self.rejected = Counter(
            "events_rejected_total", "Event batches refused, by reason.", ["reason"],
            registry=reg,
        )  # fmt: skip
        self.fold_in = Histogram(
            "fold_in_seconds",
            "Reading a listener's events and re-solving their vector (fold-in).",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.fold_in_cache = Counter(
            "fold_in_cache_total",
            "Recommendations of listeners with events: kept answer (hit) or folded in (miss).",
            ["result"],
            registry=reg,
        )
        self.swaps = Counter(
            "model_swaps_total", "Models swapped in by this worker, by trigger.", ["trigger"],
            registry=reg,
        )  # fmt: skip
        per_worker = {"registry": reg, "multiprocess_mode": "liveall"}
        self.served = Gauge(
            "served_model_info", "1 for the version this worker serves.", ["version"],
            **per_worker,  # type: ignore[arg-type]
        )  # fmt: skip
        self.created = Gauge(
            "model_created_timestamp_seconds", "When the served model was trained (epoch).",
            **per_worker,  # type: ignore[arg-type]
        )  # fmt: skip
        self.age = Gauge(
            "model_age_seconds", "Age of the served model, refreshed at every watch check.",
            **per_worker,  # type: ignore[arg-type]
        )  # fmt: skip
        self._version: str | None = None
        self._created: float | None = None

    def set_model(self, recommender: Recommender | None) -> None:
        if self._version is not None:
            self.served.labels(version=self._version).set(0)
            if not self.multiprocess:
                self.served.remove(self._version)
        self._version = recommender.version if recommender is not None else None
        self._created = created_epoch(recommender) if recommender is not None else None
        if self._version is not None:
            self.served.labels(version=self._version).set(1)
        self.created.set(self._created or 0)
        self.refresh_age()

    def refresh_age(self) -> None:
        self.age.set(time.time() - self._created if self._created else 0)
