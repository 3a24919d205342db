"""Beyond-accuracy metrics, segments and per-user scores on hand-made cases."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from musicrec.pipeline.beyond import ItemSpace, exposure_matrix, exposure_metrics, gini, per_user
from musicrec.pipeline.segments import COLD_MAX, Segments
from musicrec.pipeline.summary import summarize
from musicrec.pipeline.userscores import UserScores, score_users

# 4 training users x 5 artists; artist 4 has no tags.
TRAIN = sp.csr_matrix(
    np.array(
        [
            [1, 1, 0, 0, 0],
            [1, 0, 1, 0, 0],
            [1, 0, 0, 1, 0],
            [1, 1, 0, 0, 1],
        ],
        dtype=np.float32,
    )
)
TAGS = pd.DataFrame(
    {
        "item_idx": [0, 1, 1, 2, 3],
        "tag": ["rock", "rock", "metal", "jazz", "jazz"],
        "weight": [1.0, 1.0, 1.0, 1.0, 1.0],
    }
)


def test_novelty_and_popularity_lift() -> None:
    items = ItemSpace.build(TRAIN, TAGS)
    top = np.array([[2, 3], [1, -1]])
    history = TRAIN[[0, 1]]
    values = per_user(items, top, history, k=2)
    # artist 2 and 3: one listener of four each -> -log2(1/4) = 2 bits
    assert values["novelty"][0] == pytest.approx(2.0)
    assert values["novelty"][1] == pytest.approx(-math.log2(2 / 4))  # padding not counted
    # user 0 played artists 0 (4/4) and 1 (2/4); shown 2 and 3 (1/4 each)
    assert values["popularity_lift"][0] == pytest.approx(0.25 / 0.75)


def test_diversity_from_tags_and_the_model_fallback() -> None:
    def similar(items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        # the model says artist 4 is most like artist 0 (score 2.0), then 1 (score 1.0)
        ids = np.array([[0, 1, 2, 3][:k]] * len(items))
        scores = np.array([[2.0, 1.0, 0.0, -1.0][:k]] * len(items))
        return ids, scores

    items = ItemSpace.build(TRAIN, TAGS, similar)
    top = np.array([[2, 3, -1], [0, 1, -1], [0, 4, -1], [1, 4, 0], [2, -1, -1]])
    values = per_user(items, top, TRAIN[[0, 1, 2, 3, 0]], k=3)["diversity"]
    assert values[0] == pytest.approx(0.0)  # both jazz only
    assert values[1] == pytest.approx(1 - 1 / math.sqrt(2))  # rock vs rock+metal
    assert values[2] == pytest.approx(0.0)  # 4 is the model's nearest neighbour of 0: sim 1
    pairs = [1 - 1 / math.sqrt(2), 1 - 0.5, 1 - 1.0]  # (1,0) tags, (1,4) model 0.5, (4,0) model 1
    assert values[3] == pytest.approx(np.mean(pairs))
    assert math.isnan(values[4])  # one artist: no pair
    no_model = ItemSpace.build(TRAIN, TAGS)  # without a fallback, untagged pairs are skipped
    assert per_user(no_model, top, TRAIN[[0, 1, 2, 3, 0]], k=3)["diversity"][3] == pytest.approx(
        1 - 1 / math.sqrt(2)
    )


def test_gini_and_coverage_of_exposure() -> None:
    reference = np.array([[0, 0, 0, 10], [3, 3, 3, 3], [0, 1, 2, 3]], dtype=np.float64).T
    sorted_formula = []
    for column in reference.T:
        x = np.sort(column)
        n = len(x)
        sorted_formula.append(((2 * np.arange(1, n + 1) - n - 1) * x).sum() / (n * x.sum()))
    np.testing.assert_allclose(gini(reference), sorted_formula)  # values above n: sorted
    assert gini(reference)[1] == pytest.approx(0.0)
    many = np.random.default_rng(0).poisson(2.0, (300, 4)).astype(np.float32)  # histogram path
    expected = []
    for column in many.T:
        x = np.sort(column)
        expected.append(((2 * np.arange(1, 301) - 301) * x).sum() / (300 * x.sum()))
    np.testing.assert_allclose(gini(many), expected)
    padded = np.vstack([many, np.zeros((100, 4), dtype=np.float32)])  # artists never shown
    np.testing.assert_allclose(gini(many, n_items=400), gini(padded))
    np.testing.assert_allclose(
        gini(reference, n_items=9), gini(np.vstack([reference] + [0 * reference[:1]] * 5))
    )
    top = np.array([[0, 1], [0, 2], [0, -1]])
    shown = exposure_matrix(top, 2, 5).T @ np.ones((3, 1), dtype=np.float32)
    coverage, concentration = exposure_metrics([shown])[0]
    assert coverage == pytest.approx(3 / 5)
    assert concentration == pytest.approx(gini(np.array([[3, 1, 1, 0, 0]]).T)[0])


def test_segments_split_listeners_and_artists() -> None:
    rng = np.random.default_rng(0)
    sizes = np.array([2, 5, 6, 10, 20, 30, 40])
    rows = [rng.choice(60, size, replace=False) for size in sizes]
    train = sp.csr_matrix(
        (np.ones(sizes.sum()), (np.repeat(np.arange(7), sizes), np.concatenate(rows))),
        shape=(7, 60),
    )
    segments = Segments.build(train, np.arange(7))
    assert segments.listener.tolist()[:2] == [0, 0]  # <= COLD_MAX artists
    assert COLD_MAX == 5 and segments.light_max == 20  # median of the warm histories
    assert segments.listener.tolist()[2:] == [1, 1, 1, 2, 2]
    listeners = np.bincount(train.indices, minlength=60)
    head = listeners[segments.tier == 0]
    tail = listeners[segments.tier == 2]
    assert head.min() >= tail.max()
    assert abs(head.sum() / listeners.sum() - 1 / 3) < 0.15
    assert segments.thresholds()["cold"] == "<= 5 artists"


def test_scores_round_trip_and_summary_is_seeded(synth_dataset: Path, tmp_path: Path) -> None:
    from musicrec.config import TrainConfig
    from musicrec.data.dataset import Dataset
    from musicrec.models.kinds import build

    ds = Dataset.load(synth_dataset)
    items = ItemSpace.build(ds.train, ds.tags)
    popularity = build(TrainConfig.for_kind("popularity")).fit(ds.train)
    scores = score_users(popularity, ds.train, ds.test, (5, 10), items)
    loaded = UserScores.load(scores.save(tmp_path / "s.npz"))
    assert list(loaded.values) == list(scores.values) and loaded.ks == (5, 10)
    np.testing.assert_array_equal(loaded.top, scores.top)
    first, again = summarize(loaded, 200, seed=3), summarize(loaded, 200, seed=3)
    assert first.intervals == again.intervals
    assert summarize(loaded, 200, seed=4).intervals != first.intervals
    for name, value in first.metrics.items():
        bounds = first.intervals[name]
        assert bounds["low"] <= value + 1e-9 and value - 1e-9 <= bounds["high"], name
    counts = [first.segments[s]["users"] for s in ("cold", "light", "heavy")]
    assert sum(counts) == len(scores.users)
