"""Segments: listeners by history size, test artists by popularity.

- **Listeners** by the number of artists in their training history: ``cold`` (at most
  :data:`COLD_MAX` artists), ``light`` (up to the median history of the non-cold test
  listeners) and ``heavy`` (above it). Every per-listener metric is reported per segment.
- **Artists** by training listeners, in three tiers of equal listening mass: ``head`` (the most
  listened artists that together hold the first third of all training listener-artist pairs),
  ``mid`` (the next third), ``tail`` (the rest). The accuracy metrics per tier count only the
  test artists of that tier as relevant (the ranking is unchanged, other test artists are not
  hits); a listener with no test artist in the tier does not count for it.

Thresholds are measured on the training split and printed with the report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

COLD_MAX = 5
LISTENER_SEGMENTS = ("cold", "light", "heavy")
ARTIST_TIERS = ("head", "mid", "tail")


@dataclass(frozen=True)
class Segments:
    """Listener segment per test user and artist tier per artist, with their thresholds."""

    listener: np.ndarray  # int8 index into LISTENER_SEGMENTS, per test user
    tier: np.ndarray  # int8 index into ARTIST_TIERS, per artist
    light_max: int
    head_min: int
    tail_max: int

    def thresholds(self) -> dict[str, str]:
        """Human-readable boundaries, as printed and stored with the report."""
        return {
            "cold": f"<= {COLD_MAX} artists",
            "light": f"{COLD_MAX + 1}-{self.light_max} artists",
            "heavy": f">= {self.light_max + 1} artists",
            "head": f">= {self.head_min} listeners",
            "mid": f"{self.tail_max + 1}-{self.head_min - 1} listeners",
            "tail": f"<= {self.tail_max} listeners",
        }

    @classmethod
    def build(cls, train: sp.csr_matrix, users: np.ndarray) -> Segments:
        """Segments of the test ``users`` and tiers of every artist of ``train``."""
        train = sp.csr_matrix(train)
        history = np.diff(train.indptr)[users]
        warm = history[history > COLD_MAX]
        light_max = int(np.median(warm)) if len(warm) else COLD_MAX + 1
        listener = np.where(history <= COLD_MAX, 0, np.where(history <= light_max, 1, 2))
        listeners = np.bincount(train.indices, minlength=train.shape[1])
        order = np.argsort(-listeners, kind="stable")
        mass = np.cumsum(listeners[order]) / max(1, listeners.sum())
        before = np.concatenate([[0.0], mass[:-1]])  # share held by more popular artists
        ranked_tier = np.where(before < 1 / 3, 0, np.where(before < 2 / 3, 1, 2))
        tier = np.empty(len(order), dtype=np.int8)
        tier[order] = ranked_tier
        head = listeners[tier == 0]
        tail = listeners[tier == 2]
        return cls(
            listener.astype(np.int8),
            tier,
            light_max,
            int(head.min()) if len(head) else 0,
            int(tail.max()) if len(tail) else 0,
        )


def tier_relevance(test_rows: sp.csr_matrix, tier: np.ndarray) -> np.ndarray:
    """Per user and tier, how many of the user's test artists are in the tier ``(users, 3)``."""
    rows = sp.csr_matrix(test_rows)
    codes = tier[rows.indices]
    user = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
    counts = np.zeros((rows.shape[0], len(ARTIST_TIERS)), dtype=np.int64)
    np.add.at(counts, (user, codes), 1)
    return counts
