"""Metrics against an independent reference, against implicit, and the quality floor."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from implicit.evaluation import ranking_metrics_at_k

from musicrec.config import TrainConfig
from musicrec.data.dataset import Dataset
from musicrec.errors import ArtifactError
from musicrec.models.artifact import ModelArtifact
from musicrec.models.exact import FactorRanker
from musicrec.models.kinds import build
from musicrec.pipeline.evaluate import evaluate, evaluate_model, ranking_metrics


def reference(ranked: list[int], relevant: set[int], k: int) -> dict[str, float]:
    """Textbook definitions, one user, written without numpy."""
    top = ranked[:k]
    hits = [1 if item in relevant else 0 for item in top]
    dcg = sum(h / math.log2(i + 2) for i, h in enumerate(hits))
    idcg = sum(1 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    ap, seen = 0.0, 0
    for i, h in enumerate(hits):
        if h:
            seen += 1
            ap += seen / (i + 1)
    return {
        "precision": sum(hits) / k,
        "recall": sum(hits) / len(relevant),
        "ndcg": dcg / idcg,
        "map": ap / min(k, len(relevant)),
    }


def test_metrics_match_reference_on_hand_made_case() -> None:
    ranked = [[3, 1, 4, 0, 5], [9, 8, 7, 6, 5], [2, 6, 1, 7, 0]]
    relevant = [{1, 5, 11}, {0}, {2, 6, 1, 7, 0, 12, 13}]
    n_items = 14
    hits = np.array(
        [[item in rel for item in row] for row, rel in zip(ranked, relevant, strict=True)]
    )
    n_rel = np.array([len(r) for r in relevant])
    for k in (1, 3, 5):
        ours = ranking_metrics(hits, n_rel, k)
        for user, (row, rel) in enumerate(zip(ranked, relevant, strict=True)):
            expected = reference(row, rel, k)
            for name, value in expected.items():
                assert ours[name][user] == pytest.approx(value), (name, k, user)
    assert n_items > max(max(r) for r in relevant)


def test_popularity_never_recommends_seen_items() -> None:
    train = sp.csr_matrix(np.array([[1, 1, 0, 0, 0], [1, 0, 0, 1, 0], [0, 1, 0, 0, 1]]))
    popularity = build(TrainConfig.for_kind("popularity")).fit(train)
    ranked, _ = popularity.recommend(np.arange(3), train, 2)
    for user, row in enumerate(ranked):
        assert not set(row) & set(train[user].indices)
    assert ranked[1].tolist() == [1, 4] or ranked[1].tolist() == [1, 2]


def implicit_model(artifact: ModelArtifact) -> AlternatingLeastSquares:
    model = AlternatingLeastSquares(factors=artifact.item_factors.shape[1])
    model.user_factors = np.array(artifact.user_factors)
    model.item_factors = np.array(artifact.item_factors)
    return model


@pytest.mark.slow
def test_ndcg_and_map_agree_with_implicit_on_real_split(
    hetrec_dataset: Path, hetrec_model: Path
) -> None:
    ds = Dataset.load(hetrec_dataset)
    artifact = ModelArtifact.load(hetrec_model)
    ours = evaluate(artifact.model, ds.train, ds.test)
    theirs = ranking_metrics_at_k(
        implicit_model(artifact), ds.train, ds.test, K=10, show_progress=False
    )
    assert ours.model["ndcg@10"] == pytest.approx(theirs["ndcg"], rel=1e-3)
    assert ours.model["map@10"] == pytest.approx(theirs["map"], rel=1e-3)
    # implicit's "precision" is hits / min(K, |test|): not precision@K, and not reported as such.
    assert theirs["precision"] > ours.model["precision@10"]


@pytest.mark.slow
def test_quality_floor_on_lastfm_2k(hetrec_dataset: Path, hetrec_model: Path) -> None:
    report = evaluate_model(hetrec_dataset, hetrec_model, record=False)
    ndcg, popularity = report.model["ndcg@10"], report.baselines["popularity"]["ndcg@10"]
    assert ndcg >= 0.21
    assert ndcg >= 2.5 * popularity
    segments = report.segments
    assert sum(segments[name]["users"] for name in ("cold", "light", "heavy")) == report.n_users
    assert segments["cold"]["users"] > 0 and segments["tail"]["users"] > 0
    assert 0 < report.model["coverage@10"] <= 1


def test_evaluate_records_metrics_and_checks_fingerprint(
    synth_dataset: Path, synth_model: Path, hetrec_dataset: Path
) -> None:
    report = evaluate_model(synth_dataset, synth_model, baselines=["popularity", "random"])
    stored = ModelArtifact.load(synth_model).manifest["metrics"]
    assert stored["ndcg@10"] == pytest.approx(report.model["ndcg@10"])
    assert report.model["ndcg@10"] > report.baselines["popularity"]["ndcg@10"]
    assert report.baselines["popularity"]["ndcg@10"] > report.baselines["random"]["ndcg@10"]
    with pytest.raises(ArtifactError, match="trained on dataset"):
        evaluate_model(hetrec_dataset, synth_model)


@pytest.mark.parametrize("block_items", [7, 64, 10_000])
def test_factor_ranker_is_exact(block_items: int) -> None:
    """Early termination never changes the result: same top-k scores as scoring everything."""
    rng = np.random.default_rng(0)
    items = rng.normal(size=(300, 16)).astype(np.float32) * rng.lognormal(size=(300, 1))
    users = rng.normal(size=(50, 16)).astype(np.float32)
    exclude = sp.random(50, 300, density=0.1, format="csr", random_state=1) != 0
    exclude[3, :295] = True  # only 5 candidates left for user 3
    ranked = FactorRanker(users, items, block_items=block_items).rank(
        np.arange(50), 10, sp.csr_matrix(exclude)
    )
    scores = users @ items.T
    scores[exclude.toarray()] = -np.inf
    expected = -np.sort(-scores, axis=1)[:, :10]
    got = np.where(ranked >= 0, np.take_along_axis(scores, np.maximum(ranked, 0), 1), -np.inf)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert (ranked[3, 5:] == -1).all() and (ranked[3, :5] >= 295).all()
    for user in range(50):
        assert not set(ranked[user][ranked[user] >= 0]) & set(exclude[user].indices)
