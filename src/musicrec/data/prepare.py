"""Prepare: raw interactions -> deduplicated, k-core filtered, split dataset directory.

Vectorized end to end: duplicates are merged on an int64 pair key, the k-core filter
iterates over whole arrays (a handful of passes), and the per-user split ranks rows with
one lexsort.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from musicrec import layout
from musicrec.data.sources import RawInteractions, load
from musicrec.data.validate import validate_frames
from musicrec.errors import DataError
from musicrec.fsutil import atomic_dir, check_replaceable, write_json_atomic

log = logging.getLogger(__name__)

SplitKind = Literal["auto", "random", "temporal"]


@dataclass(frozen=True)
class PrepareConfig:
    """Filtering and split parameters; defaults match the documented dataset contract."""

    min_user_items: int = 5
    min_item_users: int = 3
    test_fraction: float = 0.2
    split: SplitKind = "auto"
    seed: int = 42

    def __post_init__(self) -> None:
        if not 0.0 < self.test_fraction < 1.0:
            raise DataError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.min_user_items < 2:
            raise DataError("min_user_items must be >= 2 so every user keeps a train item")
        if self.min_item_users < 1:
            raise DataError("min_item_users must be >= 1")
        if self.split not in ("auto", "random", "temporal"):
            raise DataError(f"unknown split {self.split!r}; use auto, random or temporal")


@dataclass(frozen=True)
class PreparedSummary:
    """What prepare wrote. The directory itself holds no timings or timestamps, so the same
    input and parameters give byte-identical files (DVC sees no change)."""

    out_dir: Path
    fingerprint: str
    stats: dict[str, Any]
    seconds: float = 0.0


def prepare(
    source: str, input_path: str | Path, out_dir: str | Path, config: PrepareConfig | None = None
) -> PreparedSummary:
    """Load ``input_path`` as ``source`` and write the dataset directory ``out_dir`` atomically."""
    config = config or PrepareConfig()
    check_replaceable(out_dir, layout.DATASET_META)  # before the (possibly long) load
    started = time.perf_counter()
    raw = load(source, input_path)
    summary = build_dataset(raw, out_dir, config, source=source)
    return replace(summary, seconds=time.perf_counter() - started)


def merge_duplicates(raw: RawInteractions) -> pd.DataFrame:
    """Sum plays per (user, item); keep the latest timestamp."""
    n_items = len(raw.items)
    key = raw.user_codes.astype(np.int64) * n_items + raw.item_codes
    frame = pd.DataFrame({"key": key, "plays": raw.plays})
    agg: dict[str, str] = {"plays": "sum"}
    if raw.timestamps is not None:
        frame["timestamp"] = raw.timestamps
        agg["timestamp"] = "max"
    merged = frame.groupby("key", sort=False).agg(agg).reset_index()
    keys = merged.pop("key").to_numpy()
    merged.insert(0, "user", (keys // n_items).astype(np.int32))
    merged.insert(1, "item", (keys % n_items).astype(np.int32))
    return merged


def kcore(
    users: np.ndarray, items: np.ndarray, min_user_items: int, min_item_users: int
) -> tuple[np.ndarray, dict[str, int]]:
    """Iteratively drop users/items below the thresholds; returns a keep-mask and drop counts."""
    keep = np.ones(len(users), dtype=bool)
    dropped = {"rows_kcore": 0, "users_kcore": 0, "items_kcore": 0}
    n_users, n_items = int(users.max()) + 1, int(items.max()) + 1
    while True:
        user_deg = np.bincount(users[keep], minlength=n_users)
        item_deg = np.bincount(items[keep], minlength=n_items)
        bad_user = (user_deg > 0) & (user_deg < min_user_items)
        bad_item = (item_deg > 0) & (item_deg < min_item_users)
        if not bad_user.any() and not bad_item.any():
            break
        dropped["users_kcore"] += int(bad_user.sum())
        dropped["items_kcore"] += int(bad_item.sum())
        remove = keep & (bad_user[users] | bad_item[items])
        dropped["rows_kcore"] += int(remove.sum())
        keep &= ~remove
    return keep, dropped


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
    key = rng.random(len(users)) if order_key is None else order_key
    order = np.lexsort((key, users))
    sorted_users = users[order]
    starts = np.r_[0, np.flatnonzero(sorted_users[1:] != sorted_users[:-1]) + 1]
    sizes = np.diff(np.r_[starts, len(users)])
    position = np.arange(len(users)) - np.repeat(starts, sizes)
    n_test = np.minimum(np.floor(sizes * test_fraction).astype(np.int64), sizes - 1)
    is_test_sorted = position >= np.repeat(sizes - n_test, sizes)
    test = np.empty(len(users), dtype=bool)
    test[order] = is_test_sorted
    return test


def build_dataset(
    raw: RawInteractions, out_dir: str | Path, config: PrepareConfig, source: str = "unknown"
) -> PreparedSummary:
    """Dedupe, filter and split ``raw``; write the dataset directory atomically."""
    merged = merge_duplicates(raw)
    n_rows = len(raw.plays)
    keep, dropped = kcore(
        merged["user"].to_numpy(),
        merged["item"].to_numpy(),
        config.min_user_items,
        config.min_item_users,
    )
    merged = merged[keep]
    if merged.empty:
        raise DataError(
            f"no interactions left after the k-core filter (>= {config.min_user_items} artists "
            f"per user, >= {config.min_item_users} listeners per artist); lower the thresholds"
        )
    # Re-index kept users/items contiguously (sorted by first appearance of the raw code).
    user_codes, user_index = pd.factorize(merged["user"], sort=True)
    item_codes, item_index = pd.factorize(merged["item"], sort=True)
    user_codes = user_codes.astype(np.int32)
    item_codes = item_codes.astype(np.int32)
    plays = merged["plays"].to_numpy(dtype=np.float32)
    timestamps = merged["timestamp"].to_numpy() if "timestamp" in merged else None

    split = config.split
    if split == "auto":
        split = "temporal" if timestamps is not None else "random"
    if split == "temporal" and timestamps is None:
        raise DataError("temporal split needs timestamps; this source has none")
    rng = np.random.default_rng(config.seed)
    test = split_holdout(
        user_codes, config.test_fraction, rng, order_key=timestamps if split == "temporal" else None
    )

    interactions = pd.DataFrame({"user_idx": user_codes, "item_idx": item_codes, "plays": plays})
    if timestamps is not None:
        interactions["timestamp"] = timestamps.astype(np.int64)
    train_df = interactions[~test].sort_values(["user_idx", "item_idx"], ignore_index=True)
    test_df = interactions[test].sort_values(["user_idx", "item_idx"], ignore_index=True)

    users, items = _vocabularies(raw, user_index, item_index, item_codes, plays)
    tags = _tags_for(raw.tags, items)
    validate_frames(train_df, test_df, users, items, tags)

    fingerprint = fingerprint_frames(
        train_df, test_df, users, items, *([] if tags is None else [tags])
    )
    stats: dict[str, Any] = {
        "source": source,
        "rows_read": raw.rows_read,
        "rejected": {k: v for k, v in sorted(raw.rejected.items()) if v},
        "rejected_total": int(sum(raw.rejected.values())),
        "dropped": {
            "missing_artist": raw.missing_artist,
            "duplicate_rows_merged": int(n_rows - len(keep)),
            **dropped,
        },
        "kept": {
            "interactions": len(interactions),
            "users": len(users),
            "items": len(items),
            "train": len(train_df),
            "test": len(test_df),
            "tags": 0 if tags is None else len(tags),
        },
        "density": len(interactions) / max(1, len(users) * len(items)),
        "split": split,
    }
    meta = _meta(source, fingerprint, config, split, timestamps is not None, tags is not None)
    frames = {layout.TRAIN: train_df, layout.TEST: test_df, layout.USERS: users}
    frames |= {layout.ITEMS: items} | ({layout.TAGS: tags} if tags is not None else {})
    _write_dataset(out_dir, frames, stats, meta)
    log.info("prepared %s: %s", out_dir, stats["kept"])
    return PreparedSummary(out_dir=Path(out_dir), fingerprint=fingerprint, stats=stats)


def _meta(
    source: str,
    fingerprint: str,
    config: PrepareConfig,
    split: str,
    has_timestamps: bool,
    has_tags: bool,
) -> dict[str, Any]:
    """``dataset.json``: what the dataset is and how it was prepared."""
    return {
        "format_version": layout.DATASET_FORMAT_VERSION,
        "source": source,
        "fingerprint": fingerprint,
        "config": asdict(config) | {"split": split},
        "has_timestamps": has_timestamps,
        "has_tags": has_tags,
    }


def _vocabularies(
    raw: RawInteractions,
    user_index: Any,
    item_index: Any,
    item_codes: np.ndarray,
    plays: np.ndarray,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The kept users and items (with listeners and plays), indexed contiguously."""
    users = pd.DataFrame(
        {
            "user_idx": np.arange(len(user_index), dtype=np.int32),
            "user_id": raw.user_ids[np.asarray(user_index)].astype(str),
        }
    )
    items = raw.items.iloc[np.asarray(item_index)].reset_index(drop=True)
    items.insert(0, "item_idx", np.arange(len(items), dtype=np.int32))
    items["listeners"] = np.bincount(item_codes, minlength=len(items)).astype(np.int64)
    items["plays"] = np.bincount(item_codes, weights=plays, minlength=len(items)).astype(np.int64)
    items["mbid"] = items["mbid"].astype(object)
    return users, items


def _write_dataset(
    out_dir: str | Path,
    frames: dict[str, pd.DataFrame],
    stats: dict[str, Any],
    meta: dict[str, Any],
) -> None:
    """The dataset directory, written whole then renamed (``meta`` marks it complete)."""
    with atomic_dir(out_dir, marker=layout.DATASET_META) as tmp:
        for name, frame in frames.items():
            frame.to_parquet(tmp / name, index=False)
        write_json_atomic(tmp / layout.STATS, stats)
        write_json_atomic(tmp / layout.DATASET_META, meta)


def _tags_for(tags: pd.DataFrame | None, items: pd.DataFrame) -> pd.DataFrame | None:
    if tags is None or tags.empty:
        return None
    index = pd.Series(items["item_idx"].to_numpy(), index=items["artist_key"].to_numpy())
    out = tags.assign(item_idx=tags["artist_key"].map(index)).dropna(subset=["item_idx"])
    if out.empty:
        return None
    out = out.astype({"item_idx": np.int32, "weight": np.float32})
    return out[["item_idx", "tag", "weight"]].sort_values(["item_idx", "tag"], ignore_index=True)


def fingerprint_frames(*frames: pd.DataFrame) -> str:
    """Content hash of the dataset: same rows and vocabularies -> same fingerprint."""
    digest = hashlib.sha256()
    for frame in frames:
        hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
        digest.update(hashed.tobytes())
        digest.update(",".join(frame.columns).encode())
    return digest.hexdigest()[:16]
