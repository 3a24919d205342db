"""The contract every model kind and baseline keeps (one mixin; each kind says how it is built).

Best first, never an excluded item, ``-1`` / ``-inf`` padding only when the catalogue runs out,
batch results equal one-at-a-time results, fold-in works, and save/load changes nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from musicrec.config import TrainConfig
from musicrec.errors import ConfigError
from musicrec.models.base import Model
from musicrec.models.itemitem import check_ease_memory
from musicrec.models.registry import build, model_class
from musicrec.ranking import ModelRanker, RandomRanker, StaticRanker, check_ranking

N_USERS, N_ITEMS = 60, 40


def plays(seed: int = 0) -> sp.csr_matrix:
    """Two taste groups over a small catalogue; user 0 played all but three items."""
    rng = np.random.default_rng(seed)
    dense = np.zeros((N_USERS, N_ITEMS), dtype=np.float32)
    for user in range(N_USERS):
        group = user % 2
        items = rng.choice(np.arange(group * 20, group * 20 + 20), size=6, replace=False)
        dense[user, items] = rng.integers(1, 30, size=6)
    dense[0, :] = 1.0
    dense[0, [5, 17, 33]] = 0.0
    return sp.csr_matrix(dense)


class ModelContract:
    """Mixin: subclasses only say how the model is built."""

    def config(self) -> TrainConfig:
        raise NotImplementedError

    @pytest.fixture(scope="class")
    def fitted(self) -> tuple[Model, sp.csr_matrix]:
        train = plays()
        return build(self.config()).fit(train), train

    def test_recommend_is_best_first_and_never_excluded(self, fitted) -> None:  # type: ignore[no-untyped-def]
        model, train = fitted
        users = np.arange(N_USERS)
        ids, scores = model.recommend(users, train, 10)
        assert ids.shape == scores.shape == (N_USERS, 10)
        check_ranking(ids, scores, train)
        assert (ids[1:] >= 0).all()  # enough unplayed items: no padding

    def test_padding_is_explicit_when_the_catalogue_runs_out(self, fitted) -> None:  # type: ignore[no-untyped-def]
        model, train = fitted
        ids, scores = model.recommend(np.array([0]), train[[0]], 10)
        assert sorted(ids[0, :3].tolist()) == [5, 17, 33]  # the only unplayed items
        assert (ids[0, 3:] == -1).all() and np.isneginf(scores[0, 3:]).all()

    def test_extra_exclusions_are_honoured(self, fitted) -> None:  # type: ignore[no-untyped-def]
        model, train = fitted
        first, _ = model.recommend(np.array([3]), train[[3]], 5)
        banned = sp.csr_matrix(train[[3]])
        banned[0, first[0, :2]] = 1.0
        again, _ = model.recommend(np.array([3]), train[[3]], 5, exclude=banned)
        assert not np.isin(first[0, :2], again[0]).any()
        assert (again[0] >= 0).all()  # the list is refilled, not shortened

    def test_batch_equals_one_at_a_time(self, fitted) -> None:  # type: ignore[no-untyped-def]
        model, train = fitted
        users = np.array([1, 4, 7, 10])
        batch, _ = model.recommend(users, train[users], 5)
        for row, user in enumerate(users):
            single, _ = model.recommend(np.array([user]), train[[user]], 5)
            np.testing.assert_array_equal(single[0], batch[row])

    def test_listener_fold_in_follows_the_history(self, fitted) -> None:  # type: ignore[no-untyped-def]
        model, _ = fitted
        history = sp.csr_matrix(
            (np.full(4, 10.0, dtype=np.float32), (np.zeros(4, dtype=int), [21, 22, 23, 24])),
            shape=(1, N_ITEMS),
        )
        ids, scores = model.recommend_listener(history, 5)
        check_ranking(ids, scores, history)
        assert (ids[0] >= 20).sum() >= 4  # mostly the listener's taste group

    def test_similar_items_excludes_the_item_itself(self, fitted) -> None:  # type: ignore[no-untyped-def]
        model, _ = fitted
        items = np.array([2, 25])
        ids, scores = model.similar_items(items, 5)
        own = sp.csr_matrix((np.ones(2), ([0, 1], items)), shape=(2, N_ITEMS))
        check_ranking(ids, scores, own)
        assert (ids[0] < 20).sum() >= 3 and (ids[1] >= 20).sum() >= 3

    def test_save_and_load_change_nothing(self, fitted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        model, train = fitted
        model.save(tmp_path)
        assert all((tmp_path / name).exists() for name in type(model).files(model.config))
        loaded = type(model).load(tmp_path, model.config, train)
        users = np.arange(N_USERS)
        np.testing.assert_array_equal(
            loaded.recommend(users, train, 8)[0], model.recommend(users, train, 8)[0]
        )
        np.testing.assert_array_equal(
            loaded.similar_items(np.array([3]), 4)[0], model.similar_items(np.array([3]), 4)[0]
        )

    def test_ranker_adapter_keeps_the_contract(self, fitted) -> None:  # type: ignore[no-untyped-def]
        model, train = fitted
        ranker = ModelRanker(model, train)
        ids = ranker.rank(np.arange(N_USERS), 10, train)
        np.testing.assert_array_equal(ids, model.recommend(np.arange(N_USERS), train, 10)[0])


class TestALS(ModelContract):
    def config(self) -> TrainConfig:
        return TrainConfig(factors=8, iterations=10, regularization=0.05)


class TestEASE(ModelContract):
    def config(self) -> TrainConfig:
        return TrainConfig.for_kind("ease", l2=10.0)


class TestItemKNN(ModelContract):
    def config(self) -> TrainConfig:
        return TrainConfig.for_kind("itemknn", neighbours=10)


class TestItemKNNBM25(ModelContract):
    def config(self) -> TrainConfig:
        return TrainConfig.for_kind("itemknn", similarity="bm25", neighbours=10)


class TestRP3Beta(ModelContract):
    def config(self) -> TrainConfig:
        return TrainConfig.for_kind("rp3beta", neighbours=15)


class TestBlend(ModelContract):
    def config(self) -> TrainConfig:
        return TrainConfig.for_kind(
            "blend",
            first={"kind": "ease", "l2": 10.0},
            second={"kind": "als", "factors": 8, "iterations": 10},
        )


@pytest.mark.parametrize(
    "ranker", [StaticRanker.popularity(plays()), RandomRanker(N_ITEMS)], ids=["popular", "random"]
)
def test_baselines_keep_the_contract(ranker) -> None:  # type: ignore[no-untyped-def]
    """Popularity and random once returned played items for users with few unplayed ones."""
    train = plays()
    ids, scores = ranker.rank_scored(np.arange(N_USERS), 10, train)
    check_ranking(ids, scores, train)
    assert sorted(ids[0, :3].tolist()) == [5, 17, 33] and (ids[0, 3:] == -1).all()
    np.testing.assert_array_equal(ranker.rank(np.arange(N_USERS), 10, train), ids)


def test_unknown_kind_and_foreign_parameters_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown model kind"):
        model_class("svd")
    with pytest.raises(ConfigError, match="do not belong to model kind 'ease'"):
        TrainConfig.for_kind("ease", factors=32)
    with pytest.raises(ConfigError, match="l2 must be of type float"):
        TrainConfig.for_kind("ease", l2="big")


def test_ease_refuses_a_catalogue_too_large_with_an_estimate() -> None:
    with pytest.raises(ConfigError, match=r"about [\d,.]+ GiB"):
        check_ease_memory(160_000)
    check_ease_memory(4_000)  # HetRec-2K scale fits


@pytest.mark.parametrize("weighting", ["log1p", "bm25"])
def test_item_item_ranking_equals_the_sparse_reference(weighting: str) -> None:
    """The per-row numpy path ranks exactly like ``topk_sparse`` over ``weights @ S``
    (BM25 weights can be negative: negative scores rank after the zero-score fill)."""
    from musicrec.models.itemitem import ItemKNNModel
    from musicrec.models.topk import topk_sparse

    train = plays(3)
    model = build(TrainConfig.for_kind("itemknn", neighbours=8, weighting=weighting))
    assert isinstance(model, ItemKNNModel)
    model.fit(train)
    users = np.arange(N_USERS)
    ids, scores = model.recommend(users, train, 30)
    assert model.popularity is not None
    ref_ids, ref_scores = topk_sparse(
        model.history_scores(model.weights(train)), 30, train, model.popularity
    )
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5)
