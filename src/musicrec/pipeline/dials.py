"""Evaluation under the list dials: a model's rankings through the rule chain.

``musicrec evaluate --diversity 0.5`` scores what a listener would be served with those dials,
the way ``benchmarks/dials_lastfm2k.py`` measures them: for each batch of test users the model
ranks ``OVERFETCH x k`` unplayed artists and :func:`~musicrec.rules.rerank_rows` makes the top
``k`` (played artists are never listed as new; deeper candidates and then popular artists fill
in where the rules remove some).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from musicrec.errors import ConfigError
from musicrec.models.base import Model
from musicrec.pipeline.userscores import Ranking
from musicrec.rules import Dials, ItemMeta, Similarity, TagVocabulary, rerank_rows
from musicrec.rules.chain import MMR_POOL_FACTOR

OVERFETCH = MMR_POOL_FACTOR  # as serving: the diversity pool in one model query


def item_meta(items: pd.DataFrame, tags: pd.DataFrame | None) -> ItemMeta:
    """Listeners and each artist's heaviest tags, as the rule chain reads them."""
    listeners = items["listeners"].to_numpy()
    if tags is None or tags.empty:
        return ItemMeta.build(listeners)
    codes, names = pd.factorize(tags["tag"])
    return ItemMeta.build(
        listeners, tags["item_idx"].to_numpy(), codes, tags["weight"].to_numpy(), list(names)
    )


def tag_codes(meta: ItemMeta, names: Sequence[str], option: str) -> tuple[int, ...]:
    """Codes of tag ``names``; a one-line error with close matches for one it does not know."""
    vocabulary = TagVocabulary(meta.tag_names)
    codes = []
    for name in names:
        code = vocabulary.code(name)
        if code is None:
            close = vocabulary.close(name)
            hint = f"; close matches: {', '.join(close)}" if close else ""
            raise ConfigError(f"{option}: unknown tag {name!r}{hint}")
        codes.append(code)
    return tuple(sorted(set(codes)))


def dataset_dials(
    items: pd.DataFrame,
    tags: pd.DataFrame | None,
    *,
    diversity: float = 0.0,
    discovery: float = 0.0,
    familiar_share: float = 0.0,
    max_per_tag: int | None = None,
    exclude_tags: Sequence[str] = (),
    include_tags: Sequence[str] = (),
) -> Dials:
    """The chain's dials for a dataset's catalogue (tags by name; out of range: ConfigError)."""
    meta = item_meta(items, tags) if exclude_tags or include_tags else None
    return Dials(
        exclude_tags=tag_codes(meta, exclude_tags, "--exclude-tag") if meta else (),
        include_tags=tag_codes(meta, include_tags, "--include-tag") if meta else (),
        max_per_tag=max_per_tag,
        diversity=diversity,
        discovery=discovery,
        familiar_share=familiar_share,
    )


def embedding_similarity(model: Model) -> Similarity:
    """Pairwise cosine of the model's embedding of items (what its similar artists rank by)."""

    def pairwise(ids: np.ndarray) -> np.ndarray:
        rows = np.asarray(model.embedding(np.asarray(ids, dtype=np.int64)), dtype=np.float32)
        norms = np.linalg.norm(rows, axis=1)
        rows = rows * np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)[:, None]
        sim: np.ndarray = rows @ rows.T
        np.fill_diagonal(sim, 1.0)
        return sim

    return pairwise


def dial_ranking(model: Model, train: sp.csr_matrix, meta: ItemMeta, dials: Dials) -> Ranking:
    """``model``'s ranking of its training users, through the rule chain with ``dials``."""
    popularity = np.argsort(-meta.listeners, kind="stable")
    similarity = embedding_similarity(model) if dials.diversity > 0 else None
    train = sp.csr_matrix(train)

    def rank(users: np.ndarray, k: int, exclude: sp.csr_matrix) -> np.ndarray:
        n = min(model.n_items, OVERFETCH * k)
        ids, scores = model.recommend(users, train[users], n, exclude=exclude)
        return rerank_rows(
            ids,
            scores,
            exclude,
            k,
            meta=meta,
            popularity=popularity,
            dials=dials,
            similarity=similarity,
        )

    return rank
