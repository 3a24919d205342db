"""Per-listener metric values: computed once per model, reused by every summary and test.

:func:`score_users` ranks every test user once and keeps, per user, every accuracy metric at
each K, the beyond-accuracy metrics (:mod:`musicrec.pipeline.beyond`), the accuracy metrics per
artist tier (:mod:`musicrec.pipeline.segments`) and the ranked lists themselves (for coverage
and Gini). Bootstrap intervals, segment tables, paired comparisons and the promotion gate all
read these arrays; nothing is ranked again per resample.

Accuracy definitions (K = cut-off, rel = the user's test artists, training artists never ranked):

- precision@K = hits in top-K / K
- recall@K    = hits in top-K / |rel|
- ndcg@K      = DCG@K / IDCG@K, gain 1/log2(rank + 1), IDCG over min(K, |rel|) hits
- map@K       = mean over users of AP@K = sum_k P@k * rel_k / min(K, |rel|)
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from rich.progress import Progress

from musicrec.errors import ArtifactError, ConfigError
from musicrec.models.base import Model
from musicrec.pipeline.beyond import ItemSpace, per_user
from musicrec.pipeline.segments import ARTIST_TIERS, Segments, tier_relevance

ACCURACY = ("precision", "recall", "ndcg", "map")
SCORES_FORMAT = 1

# A ranking of users: (users, k, exclude) -> (len(users), k) item ids, -1 padded.
Ranking = Callable[[np.ndarray, int, sp.csr_matrix], np.ndarray]


def ranking_of(model: Model, user_items: sp.csr_matrix) -> Ranking:
    """``model``'s ranking of the users it was trained on, their histories in ``user_items``."""

    def rank(users: np.ndarray, k: int, exclude: sp.csr_matrix) -> np.ndarray:
        return model.recommend(users, user_items[users], k, exclude=exclude)[0]

    return rank


def ranking_metrics(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per-user metrics from a boolean ``hits`` matrix (users x >=k, ranked best first)."""
    hits = hits[:, :k].astype(np.float64)
    n_hits = hits.sum(axis=1)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hits @ discounts
    ideal = np.cumsum(discounts)[np.minimum(n_relevant, k) - 1]
    precision_at = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    ap = (precision_at * hits).sum(axis=1) / np.minimum(n_relevant, k)
    return {
        "precision": n_hits / k,
        "recall": n_hits / n_relevant,
        "ndcg": dcg / ideal,
        "map": ap,
    }


@dataclass
class UserScores:
    """Every metric per test user (NaN where it does not apply) and the ranked lists."""

    users: np.ndarray  # user indices (rows of the dataset), ascending
    values: dict[str, np.ndarray]  # "ndcg@10", "novelty@10", "tail:ndcg@10", ...
    top: np.ndarray  # int32 (users, max K), -1 padding
    segments: Segments
    ks: tuple[int, ...]
    n_items: int
    fingerprint: str | None = None

    @property
    def metric_names(self) -> list[str]:
        """Per-user metrics over all test artists (no tier prefix)."""
        return [name for name in self.values if ":" not in name]

    def save(self, path: str | Path) -> Path:
        """Write an ``.npz`` (no pickle) atomically."""
        meta = {
            "format": SCORES_FORMAT,
            "ks": list(self.ks),
            "n_items": self.n_items,
            "fingerprint": self.fingerprint,
            "light_max": self.segments.light_max,
            "head_min": self.segments.head_min,
            "tail_max": self.segments.tail_max,
            "names": list(self.values),
        }
        arrays: dict[str, np.ndarray] = {
            f"value{i}": v.astype(np.float32) for i, v in enumerate(self.values.values())
        }
        arrays |= {
            "meta": np.array(json.dumps(meta)),
            "users": self.users.astype(np.int64),
            "top": self.top.astype(np.int32),
            "listener": self.segments.listener,
            "tier": self.segments.tier,
        }
        buffer = io.BytesIO()
        np.savez_compressed(buffer, allow_pickle=False, **arrays)
        _write_bytes_atomic(Path(path), buffer.getvalue())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> UserScores:
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if meta.get("format") != SCORES_FORMAT:
                    raise ArtifactError(f"{path}: unsupported per-user scores {meta.get('format')}")
                loaded = {
                    name: data[f"value{i}"].astype(np.float64)
                    for i, name in enumerate(meta["names"])
                }
                segments = Segments(
                    data["listener"],
                    data["tier"],
                    meta["light_max"],
                    meta["head_min"],
                    meta["tail_max"],
                )
                users, top = data["users"], data["top"]
        except (OSError, KeyError, ValueError) as exc:
            raise ArtifactError(f"{path}: not a per-user evaluation ({exc})") from None
        return cls(
            users, loaded, top, segments, tuple(meta["ks"]), meta["n_items"], meta["fingerprint"]
        )


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _batches(users: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(users), batch_size):
        yield users[start : start + batch_size]


def check_ks(ks: Sequence[int], n_items: int) -> tuple[int, ...]:
    """Sorted distinct cut-offs, each at least 1 and smaller than the catalogue."""
    ks = tuple(sorted(set(int(k) for k in ks)))
    if not ks or ks[0] < 1:
        raise ConfigError(f"--k must be at least 1, got {ks[0] if ks else 'none'}")
    if ks[-1] >= n_items:
        raise ConfigError(f"k={ks[-1]} must be smaller than the catalogue ({n_items} artists)")
    return ks


def score_users(
    ranker: Model | Ranking,
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    ks: Sequence[int],
    items: ItemSpace | None = None,
    batch_size: int = 4096,
    show_progress: bool = False,
    label: str | None = None,
    exclude: sp.csr_matrix | None = None,
) -> UserScores:
    """Rank every user with test artists once; every metric per user at each K.

    ``ranker`` is a model of the users of ``train`` or any :data:`Ranking`. Without ``items``
    the beyond-accuracy metrics are left out (tuning needs only accuracy). ``exclude`` is what
    the rankings must not hold (default ``train``; a dataset's train plus validation parts).
    """
    if isinstance(ranker, Model):
        label = label or ranker.kind
        ranker = ranking_of(ranker, train)
    n_items = train.shape[1]
    ks = check_ks(ks, n_items)
    k_max = ks[-1]
    train, test = sp.csr_matrix(train), sp.csr_matrix(test)
    exclude = train if exclude is None else sp.csr_matrix(exclude)
    n_rel = np.diff(test.indptr)
    users = np.flatnonzero(n_rel > 0)
    segments = Segments.build(train, users)
    parts: dict[str, list[np.ndarray]] = {}
    tops: list[np.ndarray] = []
    with Progress(disable=not show_progress, transient=True) as progress:
        task = progress.add_task(f"evaluating {label or 'ranking'}", total=len(users))
        for batch in _batches(users, batch_size):
            top = ranker(batch, k_max, exclude[batch])
            tops.append(top.astype(np.int32))
            for name, column in _batch_values(top, batch, train, test, ks, segments, items):
                parts.setdefault(name, []).append(column)
            progress.advance(task, len(batch))
    per_user = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    top_all = np.concatenate(tops) if tops else np.empty((0, k_max), dtype=np.int32)
    return UserScores(users, per_user, top_all, segments, ks, n_items)


def _batch_values(
    top: np.ndarray,
    batch: np.ndarray,
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    ks: tuple[int, ...],
    segments: Segments,
    items: ItemSpace | None,
) -> Iterator[tuple[str, np.ndarray]]:
    filled = top >= 0  # -1 pads users with fewer unplayed artists than k
    safe = np.where(filled, top, 0)
    rows = np.arange(len(batch))[:, None]
    test_rows = test[batch]
    hits = (np.asarray(test_rows[rows, safe].todense()) != 0) & filled
    n_rel = np.diff(test_rows.indptr)
    in_tier = tier_relevance(test_rows, segments.tier)
    shown_tier = segments.tier[safe]
    for k in ks:
        for name, values in ranking_metrics(hits, n_rel, k).items():
            yield f"{name}@{k}", values
        for code, tier in enumerate(ARTIST_TIERS):
            relevant = in_tier[:, code]
            with np.errstate(invalid="ignore", divide="ignore"):
                metrics = ranking_metrics(hits & (shown_tier == code), np.maximum(relevant, 1), k)
            for name, values in metrics.items():
                yield f"{tier}:{name}@{k}", np.where(relevant > 0, values, np.nan)
        if items is not None:
            for name, values in per_user(items, top, train[batch], k).items():
                yield f"{name}@{k}", values
