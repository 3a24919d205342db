"""The contract every model kind and baseline keeps, under each index it can be served with.

One mixin (each kind says how it is built), run for every kind x {exact, HNSW}: best first,
never an excluded item, ``-1`` / ``-inf`` padding only when the catalogue runs out, batch
results equal one-at-a-time results, the per-sweep callback, staged fitting, fold-in of a
training listener ranking like their trained state, explanations that add up to the score,
save/load changing nothing, the approximate index against exact search, and (slow, on real
data) a quality floor. What the API serves goes through exactly these calls.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from musicrec.config import KIND_SPECS, KindSpec, TrainConfig, register_kind
from musicrec.errors import ConfigError
from musicrec.models.base import Model
from musicrec.models.itemitem import check_ease_memory
from musicrec.models.kinds import build, model_class
from musicrec.models.topk import check_ranking

N_USERS, N_ITEMS = 60, 40
INDEXES = ("exact", "hnsw")
HNSW_RECALL = 0.95

# A kind that is not shipped: its module (example_kind.py) plus this one registration line.
register_kind("cooccurrence", KindSpec("example_kind:CooccurrenceModel", ("neighbours",)))


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
    """Mixin: subclasses say how the model is built and what bounds their kind keeps."""

    personalised = True  # rankings follow the listener's taste (not the baselines)
    deterministic = True  # one user's ranking does not depend on the batch (not random)
    fold_in_overlap = 10  # top-10 shared by a training user and their own history folded in
    quality_floor = 0.22  # NDCG@10 on HetRec-2K's default split, default parameters

    def config(self) -> TrainConfig:
        raise NotImplementedError

    @pytest.fixture(scope="class", params=INDEXES)
    def fitted(self, request: pytest.FixtureRequest) -> tuple[Model, sp.csr_matrix]:
        train = plays()
        model = build(self.config()).fit(train)
        model.open_index(None, request.param, save=False)
        return model, train

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
        single, _ = model.rank(model.user_query(0), 10)
        assert sorted(single.tolist()) == [5, 17, 33]  # one answer: no padding at all

    def test_extra_exclusions_are_honoured(self, fitted) -> None:  # type: ignore[no-untyped-def]
        model, train = fitted
        first, _ = model.recommend(np.array([3]), train[[3]], 5)
        banned = sp.csr_matrix(train[[3]])
        banned[0, first[0, :2]] = 1.0
        again, _ = model.recommend(np.array([3]), train[[3]], 5, exclude=banned)
        assert not np.isin(first[0, :2], again[0]).any()
        assert (again[0] >= 0).all()  # the list is refilled, not shortened
        ids, _ = model.rank(model.user_query(3), 5, exclude=first[0, :2])
        assert len(ids) == 5 and not np.isin(first[0, :2], ids).any()

    def test_batch_equals_one_at_a_time(self, fitted) -> None:  # type: ignore[no-untyped-def]
        if not self.deterministic:
            pytest.skip("a random ranking is drawn per batch")
        model, train = fitted
        users = np.array([1, 4, 7, 10])
        batch, _ = model.recommend(users, train[users], 5)
        for row, user in enumerate(users):
            single, _ = model.recommend(np.array([user]), train[[user]], 5)
            np.testing.assert_array_equal(single[0], batch[row])

    def test_served_answer_equals_the_batch_answer(self, fitted) -> None:  # type: ignore[no-untyped-def]
        """The one-listener path the API uses ranks like the batch path evaluation uses."""
        if not self.deterministic:
            pytest.skip("a random ranking is drawn per batch")
        model, train = fitted
        for user in (1, 4, 7):
            batch, batch_scores = model.recommend(np.array([user]), train[[user]], 8)
            served, served_scores = model.rank(model.user_query(user), 8)
            np.testing.assert_array_equal(served, batch[0])
            np.testing.assert_allclose(served_scores, batch_scores[0], rtol=1e-4, atol=1e-6)

    def test_listener_fold_in_follows_the_history(self, fitted) -> None:  # type: ignore[no-untyped-def]
        if not self.personalised:
            pytest.skip("the baseline ignores the history")
        model, _ = fitted
        history = sp.csr_matrix(
            (np.full(4, 10.0, dtype=np.float32), (np.zeros(4, dtype=int), [21, 22, 23, 24])),
            shape=(1, N_ITEMS),
        )
        ids, scores = model.recommend_listener(history, 5)
        check_ranking(ids, scores, history)
        assert (ids[0] >= 20).sum() >= 4  # mostly the listener's taste group
        served, _ = model.rank(model.fold_in(np.array([21, 22, 23, 24]), np.full(4, 10.0)), 5)
        np.testing.assert_array_equal(served, ids[0])

    def test_fold_in_of_a_training_listener_ranks_like_their_trained_state(self, fitted) -> None:  # type: ignore[no-untyped-def]
        model, train = fitted
        overlaps = []
        for user in range(1, 21):
            trained, _ = model.rank(model.user_query(user), 10)
            row = train[user]
            folded, _ = model.rank(model.fold_in(row.indices, row.data), 10)
            overlaps.append(len(set(trained.tolist()) & set(folded.tolist())))
        assert np.mean(overlaps) >= self.fold_in_overlap

    def test_explanations_add_up_to_the_score(self, fitted) -> None:  # type: ignore[no-untyped-def]
        model, train = fitted
        row = train[5]
        query = model.fold_in(row.indices, row.data)
        ids, scores = model.rank(query, 6)
        reasons = model.explain(query, ids)
        assert all(set(r) <= set(row.indices.tolist()) for r in reasons)
        assert all(int(i) not in r for i, r in zip(ids, reasons, strict=True))
        if not self.personalised:
            assert reasons == [() for _ in ids]  # nothing in the history explains them
            return
        assert sum(bool(r) for r in reasons) >= 4
        terms = model.contributions(query, ids, exact=True)
        assert terms.shape == (len(row.indices), len(ids))
        np.testing.assert_allclose(terms.sum(axis=0), scores, rtol=2e-3, atol=1e-5)
        best = np.argmax(np.where(row.indices[:, None] == ids[None, :], -np.inf, terms), axis=0)
        for col, reason in enumerate(reasons):
            if reason and model.exact_explanations:
                assert reason[0] == row.indices[best[col]]  # the largest term comes first

    def test_similar_items_excludes_the_item_itself(self, fitted) -> None:  # type: ignore[no-untyped-def]
        model, _ = fitted
        items = np.array([2, 25])
        ids, scores = model.similar_items(items, 5)
        own = sp.csr_matrix((np.ones(2), ([0, 1], items)), shape=(2, N_ITEMS))
        check_ranking(ids, scores, own)
        one, _ = model.similar(25, 5)
        assert 25 not in one.tolist() and len(one) == 5
        if self.personalised:
            assert (ids[0] < 20).sum() >= 3 and (ids[1] >= 20).sum() >= 3

    def test_fit_calls_back_after_every_sweep(self) -> None:
        seen: list[tuple[int, float, float]] = []
        model = build(self.config()).fit(plays(), callback=lambda *step: seen.append(step))
        assert [step for step, _, _ in seen] == list(range(model.sweeps if model.iterative else 1))
        assert all(seconds >= 0 for _, seconds, _ in seen)
        if model.iterative and model.loss_history:
            assert not math.isnan(seen[-1][2])  # the loss after the last sweep

    def test_staged_fit_equals_one_fit(self) -> None:
        train = plays(1)
        whole = build(self.config()).fit(train)
        first = max(1, whole.sweeps // 2)
        staged = build(self.config()).fit_partial(train, first)
        if whole.sweeps > first:
            staged.fit_partial(train, whole.sweeps - first)
        users = np.arange(N_USERS)
        expected, expected_scores = whole.recommend(users, train, 8)
        got, got_scores = staged.recommend(users, train, 8)
        if self.deterministic:
            np.testing.assert_array_equal(got, expected)
            np.testing.assert_allclose(got_scores, expected_scores, rtol=1e-5, atol=1e-6)

    def test_save_and_load_change_nothing(self, fitted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        model, train = fitted
        model.save(tmp_path)
        assert all((tmp_path / name).exists() for name in type(model).files(model.config))
        loaded = type(model).load(tmp_path, model.config, train)
        loaded.open_index(tmp_path, model.index_kind if model.n_factors else "exact")
        users = np.arange(N_USERS)
        np.testing.assert_array_equal(
            loaded.recommend(users, train, 8)[0], model.recommend(users, train, 8)[0]
        )
        np.testing.assert_array_equal(
            loaded.similar_items(np.array([3]), 4)[0], model.similar_items(np.array([3]), 4)[0]
        )

    def test_approximate_index_recall_against_exact(self, fitted) -> None:  # type: ignore[no-untyped-def]
        model, train = fitted
        served = [model.rank(model.user_query(u), 10)[0] for u in range(N_USERS)]
        exact = build(self.config()).fit(train)
        exact.open_index(None, "exact")
        truth = [exact.rank(exact.user_query(u), 10)[0] for u in range(N_USERS)]
        found = sum(
            len(set(a.tolist()) & set(b.tolist())) for a, b in zip(served, truth, strict=True)
        )
        assert found / sum(len(t) for t in truth) >= HNSW_RECALL

    @pytest.mark.slow
    def test_quality_floor_on_hetrec(self, fitted, hetrec_dataset: Path) -> None:  # type: ignore[no-untyped-def]
        from musicrec.data.dataset import Dataset
        from musicrec.pipeline.evaluate import evaluate_ranker

        model, _ = fitted
        dataset = Dataset.load(hetrec_dataset)
        real = build(TrainConfig.for_kind(self.config().kind)).fit(dataset.train)
        real.open_index(None, model.index_kind if model.n_factors else "exact")
        metrics, _ = evaluate_ranker(real, dataset.train, dataset.test, ks=(10,))
        assert metrics["ndcg@10"] >= self.quality_floor


class TestALS(ModelContract):
    fold_in_overlap = 7  # re-solved against fixed item factors: close, not equal

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


class TestDLAE(ModelContract):
    """Primal form here (60 listeners, 40 items); tests/contracts/test_dlae.py covers the dual."""

    def config(self) -> TrainConfig:
        return TrainConfig.for_kind("dlae", l2=5.0, dropout=0.25)


class TestBlend(ModelContract):
    fold_in_overlap = 7  # its ALS part is re-solved

    def config(self) -> TrainConfig:
        return TrainConfig.for_kind(
            "blend",
            first={"kind": "ease", "l2": 10.0},
            second={"kind": "als", "factors": 8, "iterations": 10},
        )


class TestPopularity(ModelContract):
    personalised = False
    quality_floor = 0.07

    def config(self) -> TrainConfig:
        return TrainConfig.for_kind("popularity")


class TestRandom(ModelContract):
    personalised = False
    deterministic = False
    fold_in_overlap = 0
    quality_floor = 0.0005  # the floor every model clears

    def config(self) -> TrainConfig:
        return TrainConfig.for_kind("random")

    def test_approximate_index_recall_against_exact(self, fitted) -> None:  # type: ignore[no-untyped-def]
        pytest.skip("a random ranking has no exact reference")


class TestExampleKind(ModelContract):
    """The unshipped kind of example_kind.py keeps the same contract."""

    quality_floor = 0.15

    def config(self) -> TrainConfig:
        return TrainConfig.for_kind("cooccurrence", neighbours=15)


@pytest.fixture()
def example_kind_registered() -> Iterator[None]:
    assert "cooccurrence" in KIND_SPECS
    yield


def test_an_added_kind_trains_serves_and_tunes(
    example_kind_registered: None, synth_dataset: Path, tmp_path: Path
) -> None:
    """The added kind goes through the train stage, the serving runtime and the search."""
    import optuna

    from musicrec.pipeline.search import suggest_config
    from musicrec.pipeline.train import train
    from musicrec.serving.recommender import Recommender

    config = TrainConfig.for_kind("cooccurrence", neighbours=30)
    train(synth_dataset, tmp_path / "model", config)
    rec = Recommender.load(tmp_path / "model", save_index=False)
    user = rec.sample_users(3)[1]
    recs = rec.recommend_user(user, 10)
    assert len(recs) == 10 and sum(bool(r.because) for r in recs) >= 5
    assert len(rec.recommend_listener(["Metallica", "Slayer"], None, 5).recs) == 5
    assert rec.recommend_mood("jazz", 5) and rec.similar("Metallica", 5)[1]
    study = optuna.create_study()
    suggested = suggest_config(study.ask(), config, ("cooccurrence",))
    assert suggested.kind == "cooccurrence" and 5 <= suggested.neighbours <= 500


def test_every_registered_kind_resolves_to_its_class() -> None:
    for kind in KIND_SPECS:
        assert model_class(kind).kind == kind


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


def test_evaluation_ranks_through_the_model() -> None:
    from musicrec.pipeline.evaluate import ranking_of

    train = plays()
    model = build(TrainConfig.for_kind("itemknn", neighbours=10)).fit(train)
    ids = ranking_of(model, train)(np.arange(N_USERS), 10, train)
    np.testing.assert_array_equal(ids, model.recommend(np.arange(N_USERS), train, 10)[0])
