"""Which arm a listener is in: a salted hash, the same on every worker, replica and day.

A listener's bucket is the first 8 bytes of ``blake2b(salt, listener)`` modulo
:data:`BUCKETS`; arms own consecutive bucket ranges in proportion to their shares. Nothing is
stored per listener and nothing depends on the process (Python's own ``hash`` is salted per
process, so it is not used). A new salt draws an independent assignment: with two arms about
half of the listeners change arm.

Populations use the same hash with a fixed salt of their own, so an experiment that covers
``0-50`` % of listeners and one that covers ``50-100`` % never share a listener, and the arm
split inside an experiment is independent of which population a listener falls in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from musicrec.errors import ExperimentError

BUCKETS = 10_000  # shares resolve to 0.01 percentage points
POPULATION_SALT = "musicrec-population"
SHARE_TOLERANCE = 1e-6


def bucket(listener: str, salt: str) -> int:
    """The listener's bucket in ``[0, BUCKETS)`` under ``salt``."""
    salted = salt.encode("utf-8", "surrogatepass")
    message = len(salted).to_bytes(4, "big") + salted + listener.encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(message, digest_size=8, person=b"musicrec-arm").digest()
    return int.from_bytes(digest, "big") % BUCKETS


def share_buckets(shares: Sequence[float]) -> tuple[int, ...]:
    """Percent shares as bucket counts; each share must be positive, in steps of 0.01."""
    if not shares:
        raise ExperimentError("an experiment needs at least one arm")
    counts = []
    for share in shares:
        scaled = float(share) * BUCKETS / 100.0
        if not share > 0 or abs(scaled - round(scaled)) > SHARE_TOLERANCE:
            raise ExperimentError(f"share {share:g} must be a positive percentage in steps of 0.01")
        counts.append(round(scaled))
    if sum(counts) != BUCKETS:
        total = sum(float(s) for s in shares)
        raise ExperimentError(f"shares must sum to 100, not {total:g}")
    return tuple(counts)


@dataclass(frozen=True)
class Split:
    """Arms and the cumulative upper bucket bound of each."""

    arms: tuple[str, ...]
    bounds: tuple[int, ...]
    salt: str

    @classmethod
    def from_shares(cls, arms: Sequence[str], shares: Sequence[float], salt: str) -> Split:
        if len(arms) != len(shares):
            raise ExperimentError(f"{len(arms)} arms but {len(shares)} shares")
        bounds: list[int] = []
        total = 0
        for count in share_buckets(shares):
            total += count
            bounds.append(total)
        return cls(tuple(arms), tuple(bounds), salt)

    def arm(self, listener: str) -> str:
        """The listener's arm (the same answer in every process)."""
        b = bucket(listener, self.salt)
        for name, bound in zip(self.arms, self.bounds, strict=True):
            if b < bound:
                return name
        raise AssertionError("bounds end at BUCKETS")  # pragma: no cover


def parse_range(text: str) -> tuple[float, float]:
    """``"0-50"`` -> (0.0, 50.0): a percentage range of listeners, low inclusive."""
    low, sep, high = text.partition("-")
    try:
        lo, hi = float(low), float(high)
    except ValueError:
        raise ExperimentError(f"population {text!r} must look like 0-100 (percent)") from None
    if not sep or not 0 <= lo < hi <= 100:
        raise ExperimentError(f"population {text!r} must be LOW-HIGH with 0 <= LOW < HIGH <= 100")
    if any(abs(x * BUCKETS / 100 - round(x * BUCKETS / 100)) > SHARE_TOLERANCE for x in (lo, hi)):
        raise ExperimentError(f"population {text!r}: percentages go in steps of 0.01")
    return lo, hi


def in_population(listener: str, low: float, high: float) -> bool:
    """Whether the listener falls in the ``[low, high)`` percent range of listeners."""
    b = bucket(listener, POPULATION_SALT)
    return round(low * BUCKETS / 100) <= b < round(high * BUCKETS / 100)


def overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two population ranges share any listener."""
    return a[0] < b[1] and b[0] < a[1]
