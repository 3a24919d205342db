"""A factor model's item index: exact (brute force) or HNSW (hnswlib) searches over item factors.

The model opens it (:meth:`musicrec.models.als.ALSModel.open_index`, kind chosen at load) and
answers single queries through it. Two searches:

- **inner product** (user -> items, mood -> items): ALS scores are ``u · v``; hnswlib's ``ip``
  space searches the raw item factors directly. (Lifting items to equal norm with an extra
  coordinate, the classic MIPS-to-nearest-neighbour reduction, gave clearly lower recall on
  Last.fm factors: popular artists have large norms and act as natural hubs of the graph.)
- **cosine** (artist -> similar artists): a second graph over unit-normalised factors.

Both graphs are persisted inside the artifact directory (built once, loaded in well under a
second) and written to a temporary file then renamed, so a reader never sees half an index.
"""

from __future__ import annotations

import logging
import os
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from musicrec import layout
from musicrec.errors import ConfigError
from musicrec.models.query import unit_rows
from musicrec.models.topk import topk_dense, unpadded

log = logging.getLogger(__name__)

IndexKind = Literal["hnsw", "exact"]
INDEX_KINDS: tuple[str, ...] = ("hnsw", "exact")
COSINE_INDEX = "item_index_cosine.hnsw"
# Graph degree and search breadths: the narrowest searches that keep recall@10 >= 0.98 vs exact
# at Last.fm-360K scale with a margin (benchmarks/bench_wrk.py --recall-sample measures the
# served answers; docs/api.md has the sweep). The search is most of a request's time, so
# breadth is throughput. Cosine neighbourhoods of 128-d factors need a wider search.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 128
HNSW_EF_COSINE = 600
EXACT_FALLBACK_CANDIDATES = 2000  # above this many candidates a brute-force pass is cheaper


class ItemSearch(Protocol):
    """Top-``k`` items for one query vector, skipping ``exclude``; best first."""

    kind: str

    def search(
        self, query: np.ndarray, k: int, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...


class ItemVectors:
    """Item factors with their norms; unit rows on demand, the whole unit matrix lazily."""

    def __init__(self, factors: np.ndarray):
        self.factors = np.ascontiguousarray(factors, dtype=np.float32)
        self.norms = np.sqrt(np.einsum("ij,ij->i", self.factors, self.factors))

    def __len__(self) -> int:
        return int(self.factors.shape[0])

    def unit(self, ids: np.ndarray) -> np.ndarray:
        """Unit-normalised rows ``ids`` (zero rows stay zero)."""
        rows = self.factors[ids]
        norms = self.norms[ids][:, None]
        return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)

    @cached_property
    def unit_all(self) -> np.ndarray:
        return unit_rows(self.factors)


def sorted_member(values: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """``np.isin(values, pool)`` by binary search: a few microseconds for short lists.

    ``pool`` is sorted here unless it already is (CSR rows are), which is cheap for the few
    hundred ids of a listening history.
    """
    if len(pool) > 1 and not bool((pool[1:] >= pool[:-1]).all()):
        pool = np.sort(pool)
    at = np.searchsorted(pool, values)
    at[at == len(pool)] = 0
    return pool[at] == values


class ExactSearch:
    """Brute-force scores against every item: the reference the approximate index is checked on."""

    kind = "exact"

    def __init__(self, vectors: np.ndarray):
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)

    def search(
        self, query: np.ndarray, k: int, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        scores = self.vectors @ np.asarray(query, dtype=np.float32)
        if exclude is not None and len(exclude):
            scores[exclude] = -np.inf
        return unpadded(topk_dense(scores[None, :], k))


class HnswSearch:
    """An hnswlib graph answering inner-product (``mips=True``) or cosine queries.

    ``vectors`` (or a function returning them, called only when needed) are what the graph
    indexes; they back the exact fallback and, for inner products, the final re-scoring.
    """

    kind = "hnsw"

    def __init__(
        self,
        index: object,
        vectors: np.ndarray | Callable[[], np.ndarray],
        mips: bool,
        ef: int = HNSW_EF_SEARCH,
    ):
        self.index = index
        self.mips = mips
        self.ef = ef
        self._vectors = vectors
        self.n_items = int(index.get_current_count())  # type: ignore[attr-defined]
        index.set_ef(ef)  # type: ignore[attr-defined]
        index.set_num_threads(1)  # type: ignore[attr-defined]

    @cached_property
    def exact(self) -> ExactSearch:
        """Brute force over the same vectors: for very long exclusion lists."""
        vectors = self._vectors if isinstance(self._vectors, np.ndarray) else self._vectors()
        return ExactSearch(vectors)

    def search(
        self, query: np.ndarray, k: int, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        n_exclude = 0 if exclude is None else len(exclude)
        want = min(self.n_items, k + n_exclude)
        if want <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        if want > EXACT_FALLBACK_CANDIDATES:
            return self.exact.search(query, k, exclude)
        q = np.asarray(query, dtype=np.float32)
        if not self.mips:
            norm = float(np.linalg.norm(q))
            q = q / norm if norm > 0 else q
        # hnswlib searches with max(ef, k) candidates, so a long exclusion list needs no set_ef
        # (which would not be thread-safe here).
        try:
            labels, distances = self.index.knn_query(q[None, :], k=want)  # type: ignore[attr-defined]
        except RuntimeError:  # graph could not return enough neighbours: answer exactly
            return self.exact.search(query, k, exclude)
        ids = labels[0].astype(np.int64)
        scores = (1.0 - distances[0]).astype(np.float32)
        if exclude is not None and n_exclude:
            keep = ~sorted_member(ids, exclude)
            ids, scores = ids[keep], scores[keep]
        ids, scores = ids[:k], scores[:k]
        if not self.mips:
            return ids, scores
        # hnswlib reports 1 - u·v; recompute u·v on the factors so ANN and exact scores agree.
        exact_scores = self.exact.vectors[ids] @ np.asarray(query, dtype=np.float32)
        order = np.argsort(-exact_scores, kind="stable")
        return ids[order], exact_scores[order]


def _build_hnsw(vectors: np.ndarray, space: str, threads: int) -> object:
    import hnswlib

    index = hnswlib.Index(space=space, dim=int(vectors.shape[1]))
    index.init_index(
        max_elements=max(1, len(vectors)),
        ef_construction=HNSW_EF_CONSTRUCTION,
        M=HNSW_M,
        random_seed=42,
    )
    index.set_num_threads(threads)
    index.add_items(vectors, np.arange(len(vectors)))
    return index


def _save_atomic(index: object, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        index.save_index(tmp)  # type: ignore[attr-defined]
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stored_dim(path: Path) -> int | None:
    """Vector dimension recorded in an hnswlib file header (``None`` if unreadable).

    The header starts with six ``size_t``: level-0 offset, max elements, count, bytes per
    element, label offset and data offset; the vector is stored between the last two.
    """
    try:
        with open(path, "rb") as fh:
            header = fh.read(48)
    except OSError:
        return None
    if len(header) < 48:
        return None
    fields = struct.unpack("<6Q", header)
    data_bytes = fields[4] - fields[5]
    return data_bytes // 4 if data_bytes > 0 and data_bytes % 4 == 0 else None


def _load_hnsw(path: Path, space: str, dim: int, n_items: int) -> object | None:
    """A saved graph when it matches ``n_items`` x ``dim``, else ``None``."""
    import hnswlib

    if not path.exists():
        return None
    stored = stored_dim(path)
    if stored != dim:
        log.warning("ignoring index %s built for %s dimensions, not %d", path, stored, dim)
        return None
    index = hnswlib.Index(space=space, dim=dim)
    try:
        index.load_index(str(path), max_elements=n_items)
    except (RuntimeError, ValueError, OSError) as exc:
        log.warning("ignoring unreadable index %s (%s)", path, exc)
        return None
    if index.get_current_count() != n_items:
        log.warning("ignoring stale index %s (%d items)", path, index.get_current_count())
        return None
    return index


@dataclass(frozen=True)
class IndexPair:
    """What the serving runtime needs: an inner-product and a cosine search."""

    inner: ItemSearch
    cosine: ItemSearch
    built: bool = False  # True when a graph was built (not loaded) while opening


def build_item_index(
    artifact_dir: str | Path, threads: int = 0, vectors: ItemVectors | None = None
) -> tuple[Path, Path]:
    """Build both HNSW graphs for an artifact and save them inside it (train-time hook).

    ``vectors`` default to the artifact's saved item factors.
    """
    artifact_dir = Path(artifact_dir)
    if vectors is None:
        factors = np.load(artifact_dir / layout.ITEM_FACTORS, mmap_mode="r", allow_pickle=False)
        vectors = ItemVectors(factors)
    n_threads = threads or (os.cpu_count() or 1)
    paths = (artifact_dir / layout.ITEM_INDEX, artifact_dir / COSINE_INDEX)
    for data, path in zip((vectors.factors, vectors.unit_all), paths, strict=True):
        _save_atomic(_build_hnsw(data, "ip", n_threads), path)
    return paths


def open_indexes(
    artifact_dir: str | Path | None,
    vectors: ItemVectors,
    kind: IndexKind = "hnsw",
    ef: int = HNSW_EF_SEARCH,
    ef_cosine: int = HNSW_EF_COSINE,
    save: bool = True,
) -> IndexPair:
    """Exact searches, or HNSW graphs loaded from ``artifact_dir`` (built and saved if absent).

    A graph that cannot be saved (read-only directory, or none given) is used from memory.
    """
    if kind not in INDEX_KINDS:
        raise ConfigError(f"unknown index kind {kind!r}; choose one of {', '.join(INDEX_KINDS)}")
    if kind == "exact":
        return IndexPair(ExactSearch(vectors.factors), ExactSearch(vectors.unit_all))
    n_items, dim = len(vectors), int(vectors.factors.shape[1])
    sources: tuple[tuple[str, bool, int, Callable[[], np.ndarray]], ...] = (
        (layout.ITEM_INDEX, True, ef, lambda: vectors.factors),
        (COSINE_INDEX, False, ef_cosine, lambda: vectors.unit_all),
    )
    searches = []
    built = False
    for name, mips, breadth, data in sources:
        path = Path(artifact_dir) / name if artifact_dir is not None else None
        index = _load_hnsw(path, "ip", dim, n_items) if path is not None else None
        if index is None:
            log.info("building %s over %d items", name, n_items)
            index = _build_hnsw(data(), "ip", os.cpu_count() or 1)
            built = True
            if save and path is not None:
                try:
                    _save_atomic(index, path)
                except OSError as exc:
                    log.warning("could not save %s (%s); using it from memory", path, exc)
        searches.append(HnswSearch(index, vectors.factors if mips else data, mips=mips, ef=breadth))
    return IndexPair(searches[0], searches[1], built=built)


class FactorIndex:
    """A factor model's item index (a mixin): exact or HNSW searches over its item factors.

    The kind is chosen when the model is opened for serving (:meth:`open_index`); until then
    single queries are answered exactly. The graphs live in the model's artifact directory.
    """

    item_factors: np.ndarray
    index: IndexPair | None = None

    @cached_property
    def vectors(self) -> ItemVectors:
        return ItemVectors(self.item_factors)

    @property
    def searches(self) -> IndexPair:
        """The open index; exact searches until :meth:`open_index` chose one."""
        if self.index is None:
            self.index = open_indexes(None, self.vectors, "exact")
        return self.index

    @property
    def n_factors(self) -> int:
        return int(self.item_factors.shape[1])

    @property
    def index_kind(self) -> str:
        return self.searches.inner.kind

    def open_index(
        self,
        directory: str | Path | None,
        kind: str = "exact",
        *,
        ef: int | None = None,
        ef_cosine: int | None = None,
        save: bool = True,
    ) -> bool:
        breadths = {"ef": ef or HNSW_EF_SEARCH, "ef_cosine": ef_cosine or HNSW_EF_COSINE}
        self.index = open_indexes(directory, self.vectors, kind, save=save, **breadths)  # type: ignore[arg-type]
        return self.index.built

    @classmethod
    def index_files(cls) -> tuple[str, ...]:
        return (layout.ITEM_INDEX, COSINE_INDEX)

    def build_index(self, directory: str | Path) -> list[Path]:
        return list(build_item_index(directory, vectors=self.vectors))


def recall_at_k(
    approx: ItemSearch,
    exact: ItemSearch,
    queries: np.ndarray,
    k: int = 10,
    excludes: list[np.ndarray] | None = None,
) -> float:
    """Mean share of the exact top-``k`` that the approximate search also returns."""
    hits = 0
    total = 0
    for row, query in enumerate(queries):
        exclude = excludes[row] if excludes is not None else None
        truth, _ = exact.search(query, k, exclude)
        found, _ = approx.search(query, k, exclude)
        hits += len(np.intersect1d(truth, found))
        total += len(truth)
    return hits / total if total else 1.0
