"""The serving runtime: scoring, fold-in, moods, search and the approximate index."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from musicrec import layout
from musicrec.errors import (
    ConfigError,
    MoodUnavailableError,
    UnknownArtistError,
    UnknownMoodError,
    UnknownUserError,
)
from musicrec.models.ann import (
    COSINE_INDEX,
    build_item_index,
    open_indexes,
    recall_at_k,
    stored_dim,
)
from musicrec.serving.moods import load_mood_specs
from musicrec.serving.recommender import (
    Recommender,
)

METAL = {"metal", "heavy metal", "thrash metal", "death metal", "black metal", "hard rock",
         "rock", "speed metal", "power metal", "nwobhm", "groove metal", "melodic death metal",
         "progressive metal", "doom metal", "alternative metal", "nu metal", "metalcore",
         "hardcore", "punk", "classic rock", "aggressive"}  # fmt: skip


@pytest.fixture(scope="module")
def model_dir(synth_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rec-model") / "model"
    shutil.copytree(synth_model, out)
    return out


@pytest.fixture(scope="module")
def rec(model_dir: Path) -> Recommender:
    return Recommender.load(model_dir)


def test_index_is_built_once_and_persisted(model_dir: Path, rec: Recommender) -> None:
    assert (model_dir / layout.ITEM_INDEX).exists() and (model_dir / COSINE_INDEX).exists()
    assert stored_dim(model_dir / layout.ITEM_INDEX) == rec.n_factors
    again = Recommender.load(model_dir)
    assert not again.index_built


def test_stale_or_corrupt_index_is_rebuilt(model_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    (copy / layout.ITEM_INDEX).write_bytes(b"\x00" * 10)
    rebuilt = Recommender.load(copy)
    assert rebuilt.index_built
    assert stored_dim(copy / layout.ITEM_INDEX) == rebuilt.n_factors


def test_build_item_index_hook(model_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    for name in (layout.ITEM_INDEX, COSINE_INDEX):
        (copy / name).unlink()
    paths = build_item_index(copy)
    assert all(p.exists() for p in paths)
    assert not list(copy.glob(".*.tmp"))  # written via temp file + rename


def test_ann_matches_exact(rec: Recommender) -> None:
    model = rec.model
    exact = open_indexes(None, model.vectors, "exact")
    users = np.arange(0, rec.n_users, 7)
    excludes = [rec.train[u].indices.astype(np.int64) for u in users]
    queries = np.asarray(model.user_factors[users])
    assert recall_at_k(model.index.inner, exact.inner, queries, 10, excludes) >= 0.98
    assert recall_at_k(model.index.cosine, exact.cosine, model.vectors.unit_all[:200], 10) >= 0.98


def test_user_recommendations_skip_history(rec: Recommender) -> None:
    user_id = rec.sample_users(1)[0]
    history = set(rec.train[rec.user_index(user_id)].indices)
    recs = rec.recommend_user(user_id, 20)
    assert len(recs) == 20
    assert not {r.item for r in recs} & history
    scores = [r.score for r in recs]
    assert scores == sorted(scores, reverse=True)
    expected = (
        np.asarray(rec.model.item_factors)[[r.item for r in recs]]
        @ rec.model.user_factors[rec.user_index(user_id)]
    )
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)


def test_unknown_user_suggests_close_ids(rec: Recommender) -> None:
    user_id = rec.sample_users(1)[0]
    with pytest.raises(UnknownUserError) as err:
        rec.recommend_user(user_id[:-2] + "zz", 5)
    assert user_id in err.value.suggestions


def test_fold_in_reproduces_a_training_user(rec: Recommender) -> None:
    """Folding a user's own training row back in lands next to their trained vector."""
    user = int(np.argmax(np.diff(rec.train.indptr)))
    row = rec.train[user]
    names = [str(rec.catalogue.names[i]) for i in row.indices]
    plays = [float(p) for p in row.data]
    result = rec.recommend_listener(names, plays, 10)
    assert not result.unknown
    trained = rec.recommend_user(str(rec.user_ids[user]), 10)
    overlap = len({r.item for r in result.recs} & {r.item for r in trained})
    assert overlap >= 7


def test_fold_in_weighting_matches_training(rec: Recommender) -> None:
    user = int(np.argmax(np.diff(rec.train.indptr)))
    from musicrec.models.confidence import confidence

    row = rec.train[user]
    query = rec.model.fold_in(row.indices, row.data)
    weighted = confidence(row, rec.model.config, totals=rec.model.item_totals)
    np.testing.assert_array_equal(query.weights, weighted.data)  # weighted as in training
    folded = query.vector
    trained = np.asarray(rec.model.user_factors[user])
    cosine = folded @ trained / (np.linalg.norm(folded) * np.linalg.norm(trained))
    # Weighting the row differently (alpha applied twice, raw plays) moves it far off.
    assert cosine > 0.97
    assert 0.9 < np.linalg.norm(folded) / np.linalg.norm(trained) < 1.1


def test_listener_with_no_known_artist(rec: Recommender) -> None:
    with pytest.raises(UnknownArtistError) as err:
        rec.recommend_listener(["Metalica", "zzzz qqqq"], None, 5)
    assert "Metallica" in err.value.suggestions


def test_similar_excludes_the_artist(rec: Recommender) -> None:
    name, recs = rec.similar("metallica", 10)
    assert name == "Metallica"
    assert "Metallica" not in [r.artist for r in recs]
    assert all(r.score <= 1.0001 for r in recs)
    with pytest.raises(UnknownArtistError):
        rec.similar("no such artist at all", 5)


def test_search_prefix_first_then_substring(rec: Recommender) -> None:
    names = [str(rec.catalogue.names[i]) for i in rec.search_artists("motorh", 5)]
    assert names[0] == "Motörhead"
    results = rec.search_artists("er", 50)
    folded = [rec.catalogue.folded[i] for i in results]
    starts = [f.startswith("er") for f in folded]
    assert starts == sorted(starts, reverse=True)
    assert all("er" in f for f in folded)
    assert rec.search_artists("\n", 5) == []


def test_moods_resolve_and_recommend(rec: Recommender) -> None:
    assert len(rec.moods) == 12 and all(m.available for m in rec.moods.values())
    recs = rec.recommend_mood("jazz", 10)
    jazz = {"jazz", "bebop", "smooth jazz", "fusion", "swing"}
    assert sum(bool(jazz & set(r.tags)) for r in recs) >= 8
    with pytest.raises(UnknownMoodError) as err:
        rec.recommend_mood("jaz", 5)
    assert "jazz" in err.value.suggestions


def test_unresolvable_mood_is_reported(model_dir: Path, tmp_path: Path) -> None:
    moods = tmp_path / "moods.yaml"
    moods.write_text(
        "moods:\n  vapor:\n    display_name: Vapor\n    seed_artists: [nobody known]\n"
        "    tags: [no-such-tag]\n  rage:\n    seed_artists: [metallica]\n",
        encoding="utf-8",
    )
    custom = Recommender.load(model_dir, moods_path=moods)
    assert list(custom.moods) == ["vapor", "rage"]
    assert not custom.moods["vapor"].available
    with pytest.raises(MoodUnavailableError, match="vapor"):
        custom.recommend_mood("vapor", 5)
    assert custom.recommend_mood("rage", 3)


@pytest.mark.parametrize(
    "text",
    ["moods: []\n", "not: moods\n", "moods:\n  x: {seed_artists: 3}\n", "moods:\n  x: {}\n", ": ["],
)
def test_bad_moods_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "moods.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError):
        load_mood_specs(path)


def test_packaged_moods() -> None:
    specs = load_mood_specs()
    assert len(specs) == 12
    assert all(s.display_name and s.emoji and s.seed_artists and s.tags for s in specs)


# ----------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def hetrec_rec(hetrec_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Recommender:
    out = tmp_path_factory.mktemp("hetrec-rec") / "model"
    shutil.copytree(hetrec_model, out)
    return Recommender.load(out)


def _tag_share(recs: list, wanted: set[str]) -> float:
    return sum(bool(wanted & set(r.tags)) for r in recs) / len(recs)


@pytest.mark.slow
def test_metal_listener_gets_metal(hetrec_rec: Recommender) -> None:
    result = hetrec_rec.recommend_listener(
        ["Metallica", "Slayer", "Iron Maiden", "Megadeth"], None, 10
    )
    assert result.used == ["Metallica", "Slayer", "Iron Maiden", "Megadeth"]
    assert _tag_share(result.recs, METAL) >= 0.7
    assert all(r.because for r in result.recs)


@pytest.mark.slow
@pytest.mark.parametrize("artist", ["Miles Davis", "John Coltrane"])
def test_jazz_artists_are_similar_to_jazz(hetrec_rec: Recommender, artist: str) -> None:
    _, recs = hetrec_rec.similar(artist, 10)
    jazz = {"jazz", "bebop", "cool jazz", "jazz fusion", "free jazz", "hard bop", "swing",
            "smooth jazz", "vocal jazz", "saxophone"}  # fmt: skip
    assert _tag_share(recs, jazz) >= 0.6


@pytest.mark.slow
def test_ann_recall_on_real_data(hetrec_rec: Recommender) -> None:
    model = hetrec_rec.model
    exact = open_indexes(None, model.vectors, "exact")
    users = np.arange(hetrec_rec.n_users)
    excludes = [hetrec_rec.train[u].indices.astype(np.int64) for u in users]
    queries = np.asarray(model.user_factors[users])
    assert recall_at_k(model.index.inner, exact.inner, queries, 10, excludes) >= 0.98
    sample = model.vectors.unit_all[:: max(1, hetrec_rec.n_items // 500)]
    assert recall_at_k(model.index.cosine, exact.cosine, sample, 10) >= 0.98


@pytest.mark.parametrize("weighting", ["log1p", "bm25", "none"])
def test_history_weights_equal_confidence_of_the_row(rec: Recommender, weighting: str) -> None:
    """The served history is weighted from the CSR arrays; it must equal confidence()."""
    from dataclasses import replace

    from musicrec.models.confidence import confidence

    original = rec.model.config
    rec.model.config = replace(original, weighting=weighting, alpha=2.5)
    try:
        for user in range(0, rec.n_users, max(1, rec.n_users // 50)):
            items, weights = rec.history(user)
            row = rec.train[user]
            expected = confidence(row, rec.model.config, totals=rec.model.item_totals)
            assert items.dtype == np.int64 and weights.dtype == np.float32
            np.testing.assert_array_equal(items, row.indices)
            np.testing.assert_array_equal(weights, expected.data.astype(np.float32))
    finally:
        rec.model.config = original


def test_sorted_member_is_isin() -> None:
    from musicrec.models.ann import sorted_member

    rng = np.random.default_rng(0)
    for _ in range(200):
        values = rng.integers(0, 50, size=rng.integers(1, 30))
        pool = rng.integers(0, 50, size=rng.integers(1, 30))
        np.testing.assert_array_equal(sorted_member(values, pool), np.isin(values, pool))
        pool = np.unique(pool)
        np.testing.assert_array_equal(sorted_member(values, pool), np.isin(values, pool))


def test_user_index_finds_every_known_id(rec: Recommender) -> None:
    for position in range(0, rec.n_users, max(1, rec.n_users // 100)):
        assert rec.user_index(str(rec.user_ids[position])) == position
    with pytest.raises(UnknownUserError):
        rec.user_index("not-a-user")


@pytest.mark.parametrize("index", ["hnsw", "exact"])
def test_mood_answers_are_prefixes_of_the_cached_list(model_dir: Path, index: str) -> None:
    fresh = Recommender.load(model_dir, index=index)
    for name, mood in fresh.moods.items():
        if not mood.available:
            continue
        for k in (1, 7, 10, 33, 100):
            served, live = fresh.recommend_mood(name, k), fresh._mood_recs(mood, k)
            # The same artists, explanations and scores (up to float32 rounding of the BLAS
            # product, which depends on how many rows are rescored; as between any two k).
            assert [(r.item, r.because) for r in served] == [(r.item, r.because) for r in live]
            np.testing.assert_allclose(
                [r.score for r in served], [r.score for r in live], rtol=1e-5, atol=1e-6
            )
    assert fresh._mood_answers  # filled on first use
    assert len(fresh.recommend_mood("chill", 150)) == 150  # above the cached length: live
