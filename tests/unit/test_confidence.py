"""Confidence weighting: one definition, matching implicit's BM25, applied once."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from implicit.nearest_neighbours import bm25_weight

from musicrec.config import TrainConfig
from musicrec.models.confidence import confidence, item_totals


def plays_matrix() -> sp.csr_matrix:
    return sp.random(40, 30, density=0.2, format="csr", random_state=3, dtype=np.float32) * 100 + (
        sp.random(40, 30, density=0.2, format="csr", random_state=3, dtype=np.float32) != 0
    )


def test_bm25_matches_implicit_on_items_by_users() -> None:
    plays = plays_matrix()
    ours = confidence(plays, TrainConfig(weighting="bm25", alpha=1.0))
    theirs = bm25_weight(plays.T.tocoo(), K1=100, B=0.8).T.tocsr()
    np.testing.assert_allclose(ours.toarray(), theirs.toarray(), rtol=1e-5)


def test_alpha_scales_exactly_once() -> None:
    plays = plays_matrix()
    one = confidence(plays, TrainConfig(weighting="log1p", alpha=1.0))
    five = confidence(plays, TrainConfig(weighting="log1p", alpha=5.0))
    np.testing.assert_allclose(five.data, 5 * one.data, rtol=1e-6)
    np.testing.assert_allclose(one.data, np.log1p(plays.data), rtol=1e-6)


def test_new_listener_row_weighted_like_training_rows() -> None:
    plays = plays_matrix()
    config = TrainConfig(weighting="bm25", alpha=3.0)
    full = confidence(plays, config)
    row = confidence(plays[7], config, totals=item_totals(plays))
    np.testing.assert_allclose(row.toarray(), full[7].toarray(), rtol=1e-5)
