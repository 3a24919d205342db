"""DLAE keeps the model contract in both forms, and its scores are the closed form's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from test_models import plays  # same directory (pytest rootdir import)

from musicrec.config import TrainConfig
from musicrec.errors import ConfigError
from musicrec.models.dlae import DLAEModel
from musicrec.models.kinds import build
from musicrec.models.topk import check_ranking

DUAL_USERS = 30  # fewer listeners (30) than items (40): the users x users form


def test_dual_form_ranks_saves_and_loads(tmp_path: Path) -> None:
    """The users x users form (fewer listeners than items): the contract's key checks (the
    primal form runs the whole contract suite, tests/contracts/test_models.py)."""
    train = sp.csr_matrix(plays()[:DUAL_USERS])
    model = build(TrainConfig.for_kind("dlae", l2=5.0, dropout=0.25)).fit(train)
    assert isinstance(model, DLAEModel) and model.dual and model.inverse.shape == (30, 30)
    users = np.arange(DUAL_USERS)
    ids, scores = model.recommend(users, train, 10)
    check_ranking(ids, scores, train)
    for row in (0, 7, 29):
        single = model.recommend(users[[row]], train[[row]], 10)[0]
        np.testing.assert_array_equal(single[0], ids[row])
    for row in (2, 11):  # served answers and exact explanations, as in the primal form
        query = model.user_query(row)
        served, served_scores = model.rank(query, 6)
        np.testing.assert_array_equal(served, ids[row, :6])
        terms = model.contributions(query, served)
        np.testing.assert_allclose(terms.sum(axis=0), served_scores, rtol=2e-3, atol=1e-5)
    similar, _ = model.similar_items(np.array([3, 25]), 5)
    assert 3 not in similar[0] and 25 not in similar[1]
    model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(DLAEModel.files(model.config))
    loaded = DLAEModel.load(tmp_path, model.config, train)
    np.testing.assert_array_equal(loaded.recommend(users, train, 10)[0], ids)
    with pytest.raises(ConfigError, match="do not match"):
        DLAEModel.load(tmp_path, model.config, sp.csr_matrix(plays()))


def closed_form(x: np.ndarray, l2: float, dropout: float) -> np.ndarray:
    """Steck (2020), eq. for the dropout-trained linear autoencoder: (G + L)^-1 G."""
    gram = x.T @ x
    penalty = l2 + dropout / (1 - dropout) * np.diag(gram)
    return np.linalg.solve(gram + np.diag(penalty), gram)


@pytest.mark.parametrize("users", [60, DUAL_USERS])
@pytest.mark.parametrize("dropout", [0.0, 0.4])
def test_scores_are_the_closed_form_in_both_forms(users: int, dropout: float) -> None:
    train = sp.csr_matrix(plays()[:users])
    config = TrainConfig.for_kind("dlae", l2=3.0, dropout=dropout, weighting="none")
    model = build(config).fit(train)
    assert isinstance(model, DLAEModel) and model.dual == (users < train.shape[1])
    x = train.toarray().astype(np.float64)
    expected = x @ closed_form(x, 3.0, dropout)
    got = model.scores(np.arange(users), train)
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=2e-4)
    # A listener the model never saw is scored by the same B.
    new = sp.csr_matrix(x[:1] * 0 + (np.arange(x.shape[1]) % 7 == 0))
    np.testing.assert_allclose(
        model.scores(None, new), new.toarray() @ closed_form(x, 3.0, dropout), rtol=2e-3, atol=2e-4
    )


def test_dlae_parameters_are_checked() -> None:
    with pytest.raises(ConfigError, match="dropout"):
        TrainConfig.for_kind("dlae", dropout=1.0)
    with pytest.raises(ConfigError, match="do not belong to model kind 'dlae'"):
        TrainConfig.for_kind("dlae", factors=8)
