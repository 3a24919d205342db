"""Prepare: raw interactions -> deduplicated, k-core filtered, split dataset directory.

Vectorized end to end: duplicates are merged on an int64 pair key, the k-core filter
iterates over whole arrays (a handful of passes), and the per-user split
(:mod:`musicrec.data.splitting`) ranks rows with one lexsort.
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
from musicrec.data.splitting import (
    PROTOCOLS,
    TEST,
    TRAIN,
    VALID,
    ProtocolKind,
    describe,
    split_holdout,
    split_parts,
)
from musicrec.data.validate import validate_frames
from musicrec.errors import DataError
from musicrec.fsutil import atomic_dir, check_replaceable, write_json_atomic

__all__ = [
    "PrepareConfig",
    "PreparedSummary",
    "build_dataset",
    "parse_ratios",
    "prepare",
    "split_holdout",
]

log = logging.getLogger(__name__)

SplitKind = Literal["auto", "random", "temporal"]


@dataclass(frozen=True)
class PrepareConfig:
    """Filtering and split parameters; defaults match the documented dataset contract.

    ``protocol`` says how many of each user's rows go to train, validation and test
    (:mod:`musicrec.data.splitting`); ``split`` says in which order they are taken (``auto``:
    by time when the source has timestamps, for the default holdout only). ``binary`` counts
    every (listener, artist) pair once, whatever its plays; ``no_filter`` keeps every row of
    the source: no k-core filter, and artists the source tells apart by id stay apart.
    """

    min_user_items: int = 5
    min_item_users: int = 3
    test_fraction: float = 0.2
    split: SplitKind = "auto"
    seed: int = 42
    protocol: ProtocolKind = "holdout"
    ratios: tuple[float, ...] = (0.8, 0.1, 0.1)
    binary: bool = False
    no_filter: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.test_fraction < 1.0:
            raise DataError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.min_user_items < 2 and not self.no_filter:
            raise DataError("min_user_items must be >= 2 so every user keeps a train item")
        if self.min_item_users < 1:
            raise DataError("min_item_users must be >= 1")
        if self.split not in ("auto", "random", "temporal"):
            raise DataError(f"unknown split {self.split!r}; use auto, random or temporal")
        if self.protocol not in PROTOCOLS:
            raise DataError(f"unknown protocol {self.protocol!r}; use {', '.join(PROTOCOLS)}")
        ratios = tuple(self.ratios)
        if len(ratios) not in (2, 3) or min(ratios) < 0 or not ratios[0] > 0:
            raise DataError(
                f"ratios must be 2 or 3 shares (train, [validation,] test), train > 0, none "
                f"negative; got {','.join(f'{r:g}' for r in ratios)}"
            )

    def order(self, has_timestamps: bool) -> str:
        """``random`` or ``temporal``: how each user's rows are ordered before the split."""
        if self.split != "auto":
            return self.split
        return "temporal" if has_timestamps and self.protocol == "holdout" else "random"

    def record(self) -> dict[str, Any]:
        """The protocol as stats.json and dataset.json record it."""
        has_valid = self.protocol == "ratio" and len(self.ratios) == 3
        return {
            "name": self.protocol,
            "description": describe(self.protocol, self.test_fraction, self.ratios),
            **({"ratios": list(self.ratios)} if self.protocol == "ratio" else {}),
            **({} if self.protocol == "ratio" else {"test_fraction": self.test_fraction}),
            "validation_part": has_valid,
            "binary": self.binary,
            "filtered": not self.no_filter,
            "seed": self.seed,
        }


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
    raw = load(source, input_path, merge_names=not config.no_filter)
    summary = build_dataset(raw, out_dir, config, source=source)
    return replace(summary, seconds=time.perf_counter() - started)


def parse_ratios(text: str) -> tuple[float, ...]:
    """``"0.8,0.1,0.1"`` -> ``(0.8, 0.1, 0.1)`` (one-line error for anything else)."""
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise DataError(f"--ratios must be numbers separated by commas, got {text!r}") from None


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


def build_dataset(
    raw: RawInteractions, out_dir: str | Path, config: PrepareConfig, source: str = "unknown"
) -> PreparedSummary:
    """Dedupe, filter and split ``raw``; write the dataset directory atomically."""
    merged = merge_duplicates(raw)
    dropped = {
        "missing_artist": raw.missing_artist,
        "duplicate_rows_merged": int(len(raw.plays) - len(merged)),
    }
    merged, dropped_kcore = _kcore_filter(merged, config)
    dropped |= dropped_kcore
    # Re-index kept users/items contiguously (sorted by first appearance of the raw code).
    user_codes, user_index = pd.factorize(merged["user"], sort=True)
    item_codes, item_index = pd.factorize(merged["item"], sort=True)
    plays = merged["plays"].to_numpy(dtype=np.float32)
    if config.binary:
        plays = np.ones_like(plays)
    interactions = pd.DataFrame(
        {
            "user_idx": user_codes.astype(np.int32),
            "item_idx": item_codes.astype(np.int32),
            "plays": plays,
        }
    )
    if "timestamp" in merged:
        interactions["timestamp"] = merged["timestamp"].to_numpy().astype(np.int64)
    parts, split = split_frames(interactions, config)
    users, items = _vocabularies(raw, user_index, item_index, item_codes, plays)
    tags = _tags_for(raw.tags, items)
    validate_frames(parts["train"], parts["test"], users, items, tags, valid=parts.get("valid"))
    frames = {layout.TRAIN: parts["train"], layout.TEST: parts["test"]}
    frames |= {layout.USERS: users, layout.ITEMS: items}
    frames |= {} if tags is None else {layout.TAGS: tags}
    frames |= {layout.VALID: parts["valid"]} if "valid" in parts else {}
    protocol = config.record()
    # Same frames hashed in the same order as before protocols existed, so the default
    # holdout keeps its fingerprints; any other protocol also hashes its description.
    extra = (
        [] if _is_legacy(config) else [pd.DataFrame({"protocol": [repr(sorted(protocol.items()))]})]
    )
    fingerprint = fingerprint_frames(*frames.values(), *extra)
    kept = {"interactions": len(interactions), "users": len(users), "items": len(items)}
    kept |= {name: len(frame) for name, frame in parts.items()}
    kept |= {"tags": 0 if tags is None else len(tags)}
    stats: dict[str, Any] = {
        "source": source,
        "rows_read": raw.rows_read,
        "rejected": {k: v for k, v in sorted(raw.rejected.items()) if v},
        "rejected_total": int(sum(raw.rejected.values())),
        "dropped": dropped,
        "kept": kept,
        "density": len(interactions) / max(1, len(users) * len(items)),
        "split": split,
        "protocol": protocol,
    }
    has = {"timestamps": "timestamp" in interactions, "tags": tags is not None}
    meta = _meta(source, fingerprint, config, split, **has, validation="valid" in parts)
    _write_dataset(out_dir, frames, stats, meta)
    log.info("prepared %s: %s", out_dir, stats["kept"])
    return PreparedSummary(out_dir=Path(out_dir), fingerprint=fingerprint, stats=stats)


def _meta(
    source: str,
    fingerprint: str,
    config: PrepareConfig,
    split: str,
    timestamps: bool,
    tags: bool,
    validation: bool,
) -> dict[str, Any]:
    """``dataset.json``: what the dataset is and how it was prepared."""
    return {
        "format_version": layout.DATASET_FORMAT_VERSION,
        "source": source,
        "fingerprint": fingerprint,
        "config": asdict(config) | {"split": split},
        "has_timestamps": timestamps,
        "has_tags": tags,
        "has_validation": validation,
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


def split_frames(
    interactions: pd.DataFrame, config: PrepareConfig
) -> tuple[dict[str, pd.DataFrame], str]:
    """``{"train", ["valid",] "test"}`` frames of ``config``'s protocol, and the row order used."""
    timestamps = interactions["timestamp"].to_numpy() if "timestamp" in interactions else None
    split = config.order(timestamps is not None)
    if split == "temporal" and timestamps is None:
        raise DataError("temporal split needs timestamps; this source has none")
    parts = split_parts(
        interactions["user_idx"].to_numpy(),
        config.protocol,
        np.random.default_rng(config.seed),
        test_fraction=config.test_fraction,
        ratios=config.ratios,
        order_key=timestamps if split == "temporal" else None,
    )
    with_valid = config.record()["validation_part"]
    names = {"train": TRAIN, **({"valid": VALID} if with_valid else {}), "test": TEST}
    frames = {
        name: interactions[parts == part].sort_values(["user_idx", "item_idx"], ignore_index=True)
        for name, part in names.items()
    }
    return frames, split


def _kcore_filter(
    merged: pd.DataFrame, config: PrepareConfig
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The k-core filter of ``config`` (nothing dropped with ``no_filter``)."""
    if config.no_filter:
        return merged, {"rows_kcore": 0, "users_kcore": 0, "items_kcore": 0}
    keep, dropped = kcore(
        merged["user"].to_numpy(),
        merged["item"].to_numpy(),
        config.min_user_items,
        config.min_item_users,
    )
    if not keep.any():
        raise DataError(
            f"no interactions left after the k-core filter (>= {config.min_user_items} artists "
            f"per user, >= {config.min_item_users} listeners per artist); lower the thresholds"
        )
    return merged[keep], dropped


def _is_legacy(config: PrepareConfig) -> bool:
    """The default holdout on filtered play counts: its fingerprints stay what they were."""
    return config.protocol == "holdout" and not config.binary and not config.no_filter


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
