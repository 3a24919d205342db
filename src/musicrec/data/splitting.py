"""Split protocols: which part (train, validation, test) each interaction of a user goes to.

Every protocol splits each user's rows on their own, after ordering them at random (or by time):
the first rows go to train, the next to validation, the last to test. Protocols differ only in
how many rows each part gets:

- ``holdout`` (the default): ``floor(n * test_fraction)`` rows to test, never a user's last
  train row; no validation part (``musicrec tune`` carves one from train).
- ``ratio``: RecBole's ``RS`` split grouped by user (``Dataset.split_by_ratio`` with
  ``_calcu_split_ids``, RecBole 1.1 and 1.2): every part but the first gets
  ``int(ratio * n)`` rows, train the rest; then, from the last part backwards and while train
  still has more than one row, a part whose exact share ``ratio * n`` is below one row gets one
  row from train. With 8:1:1 a user with 1 row keeps it in train; 2 rows: 1 train, 1 test;
  3 to 9 rows: n - 2 train, 1 validation, 1 test; 10 to 19: n - 2, 1, 1; 20: 16, 2, 2.
- ``stratified``: Microsoft Recommenders' ``python_stratified_split``: ``round((1 - f) * n)``
  rows to train (NumPy rounding, halves to even), the rest to test; at least one train row.

The random order is a NumPy permutation of our own seed, not RecBole's or Microsoft's: the part
sizes are theirs exactly, which rows land in each part is a draw like theirs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

ProtocolKind = Literal["holdout", "ratio", "stratified"]
PROTOCOLS: tuple[str, ...] = ("holdout", "ratio", "stratified")
TRAIN, VALID, TEST = 0, 1, 2


def ratio_counts(sizes: np.ndarray, ratios: Sequence[float]) -> np.ndarray:
    """Rows per part for users with ``sizes`` rows: RecBole's ``_calcu_split_ids``, vectorized.

    Returns an int64 array ``(len(sizes), len(ratios))``. The arithmetic is RecBole's in the
    same float64 operations (ratios normalized by their sum, ``int()`` truncation), so the
    counts are identical for every size.
    """
    total = sum(ratios)
    shares = [r / total for r in ratios]
    sizes = np.asarray(sizes, dtype=np.int64)
    exact = [share * sizes.astype(np.float64) for share in shares]
    counts = np.stack([np.trunc(e).astype(np.int64) for e in exact], axis=1)
    counts[:, 0] = sizes - counts[:, 1:].sum(axis=1)
    for back in range(1, len(shares)):
        # RecBole stops at the first part it reaches with train down to one row; train only
        # shrinks, so testing it at every part is the same as stopping.
        bump = (counts[:, 0] > 1) & (exact[-back] > 0) & (exact[-back] < 1)
        counts[bump, len(shares) - back] += 1
        counts[bump, 0] -= 1
    return counts


def stratified_counts(sizes: np.ndarray, test_fraction: float) -> np.ndarray:
    """Rows per (train, validation, test) part: ``round((1 - f) * n)`` train, the rest test."""
    sizes = np.asarray(sizes, dtype=np.int64)
    n_train = np.round((1.0 - test_fraction) * sizes.astype(np.float64)).astype(np.int64)
    n_train = np.clip(n_train, np.minimum(sizes, 1), sizes)
    return np.stack([n_train, np.zeros_like(sizes), sizes - n_train], axis=1)


def holdout_counts(sizes: np.ndarray, test_fraction: float) -> np.ndarray:
    """Rows per part of the default holdout: ``floor(n * f)`` to test, at least one train row."""
    sizes = np.asarray(sizes, dtype=np.int64)
    n_test = np.minimum(np.floor(sizes * test_fraction).astype(np.int64), sizes - 1)
    return np.stack([sizes - n_test, np.zeros_like(sizes), n_test], axis=1)


def assign_parts(
    users: np.ndarray,
    counts: np.ndarray,
    rng: np.random.Generator,
    order_key: np.ndarray | None = None,
) -> np.ndarray:
    """Part of every row (:data:`TRAIN`, :data:`VALID`, :data:`TEST`), as int8.

    ``counts[u]`` gives user ``u``'s rows per part. Each user's rows are ranked by ``order_key``
    (random when ``None``); the first ``counts[u, 0]`` go to train, and so on.
    """
    users = np.asarray(users)
    key = rng.random(len(users)) if order_key is None else order_key
    order = np.lexsort((key, users))
    sorted_users = users[order]
    starts = np.r_[0, np.flatnonzero(sorted_users[1:] != sorted_users[:-1]) + 1]
    sizes = np.diff(np.r_[starts, len(users)])
    position = np.arange(len(users)) - np.repeat(starts, sizes)
    bounds = np.cumsum(counts[sorted_users[starts]], axis=1)
    per_row = np.repeat(bounds, sizes, axis=0)
    part_sorted = (position[:, None] >= per_row[:, :-1]).sum(axis=1).astype(np.int8)
    parts = np.empty(len(users), dtype=np.int8)
    parts[order] = part_sorted
    return parts


def split_holdout(
    users: np.ndarray,
    test_fraction: float,
    rng: np.random.Generator,
    order_key: np.ndarray | None = None,
) -> np.ndarray:
    """Per-user holdout: returns a test mask; the last ``floor(n * fraction)`` rows by key.

    With ``order_key=None`` rows are ranked randomly (random split); with timestamps the
    most recent listens go to test (temporal split). Every user keeps at least one train row.
    """
    sizes = np.bincount(users)
    parts = assign_parts(users, holdout_counts(sizes, test_fraction), rng, order_key)
    return parts == TEST


def split_parts(
    users: np.ndarray,
    protocol: str,
    rng: np.random.Generator,
    *,
    test_fraction: float = 0.2,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    order_key: np.ndarray | None = None,
) -> np.ndarray:
    """Part of every row under ``protocol`` (one of :data:`PROTOCOLS`)."""
    sizes = np.bincount(users)
    if protocol == "ratio":
        counts = ratio_counts(sizes, ratios)
        if counts.shape[1] == 2:  # train:test, no validation part
            counts = np.insert(counts, 1, 0, axis=1)
    elif protocol == "stratified":
        counts = stratified_counts(sizes, test_fraction)
    else:
        counts = holdout_counts(sizes, test_fraction)
    return assign_parts(users, counts, rng, order_key)


def describe(protocol: str, test_fraction: float, ratios: Sequence[float]) -> str:
    """One line naming the protocol, as stats.json records it."""
    if protocol == "ratio":
        return f"ratio {':'.join(f'{r:g}' for r in ratios)} per user (RecBole RS, user groups)"
    if protocol == "stratified":
        train = 1.0 - test_fraction
        return f"stratified {train:g}/{test_fraction:g} per user (round-half-even train share)"
    return f"holdout: floor({test_fraction:g} * n) per user to test"
