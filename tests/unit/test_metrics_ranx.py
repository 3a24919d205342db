"""Ranking metrics and paired tests checked against ranx, an independent implementation.

Seeded random rankings: every listener has 1-30 relevant (test) artists and a top-10 list
in which relevant artists are likelier than the rest, so hit counts, ranks and the number of
relevant artists all vary, on both sides of K.

NDCG@10, recall@10 and precision@10 must equal ranx's per listener. MAP@K follows another
convention here: musicrec divides AP@K by ``min(K, |rel|)`` (the best AP@K a top-K list can
reach is then 1), ranx and trec_eval divide by ``|rel|``. Our MAP@10 times
``min(K, |rel|) / |rel|`` must equal ranx's; for listeners with more than K relevant artists
ours is the higher one, for the others the two are equal.

The paired t-test and Fisher's randomization test are compared with the functions ranx's
``compare`` runs for ``stat_test="student"`` and ``"fisher"``. The t-test p-values are the
same number. The randomization tests draw their own permutations and count differently
(ranx ``c / n``, musicrec ``(1 + c) / (1 + n)``, never 0), so they agree within Monte-Carlo
error: four standard errors of the difference of two estimates plus ``1 / n``. ranx draws its
permutations in parallel threads, so its p-value varies a little from run to run even with a
seed; four standard errors (plus ``1 / n``) leave a false alarm a chance well under 1 in 10,000.
"""

from __future__ import annotations

import numpy as np
import pytest

from musicrec import stats
from musicrec.pipeline.userscores import ranking_metrics

ranx = pytest.importorskip("ranx")
statistical_tests = pytest.importorskip("ranx.statistical_tests")
# ranx's numba kernels warn about an internal uint64 -> int64 cast when first compiled.
pytestmark = pytest.mark.filterwarnings("ignore:unsafe cast from uint64 to int64")

K = 10
N_USERS = 400
N_ITEMS = 200
PERMUTATIONS = 100_000


def top_lists(
    rng: np.random.Generator, relevant: list[np.ndarray], boost: float
) -> list[np.ndarray]:
    """A top-K list per listener: random scores, relevant artists lifted by ``boost``."""
    ranked = []
    for rel in relevant:
        score = rng.random(N_ITEMS)
        score[rel] += boost
        ranked.append(np.argsort(-score)[:K])
    return ranked


def random_relevant(rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.choice(N_ITEMS, rng.integers(1, 31), replace=False) for _ in range(N_USERS)]


def ours(relevant: list[np.ndarray], ranked: list[np.ndarray]) -> dict[str, np.ndarray]:
    hits = np.array([np.isin(top, rel) for rel, top in zip(relevant, ranked, strict=True)])
    n_relevant = np.array([len(rel) for rel in relevant])
    return ranking_metrics(hits, n_relevant, K)


def qid(user: int) -> str:
    # evaluate(return_mean=False) returns scores in sorted query-id order: zero-padded ids
    # keep that order the listeners' order.
    return f"u{user:05d}"


def theirs(
    relevant: list[np.ndarray], ranked: list[np.ndarray], metrics: list[str]
) -> dict[str, np.ndarray]:
    qrels = ranx.Qrels({qid(u): {f"a{i}": 1 for i in rel} for u, rel in enumerate(relevant)})
    run = ranx.Run(
        {qid(u): {f"a{i}": float(K - r) for r, i in enumerate(top)} for u, top in enumerate(ranked)}
    )
    scores = ranx.evaluate(qrels, run, metrics, return_mean=False)
    if len(metrics) == 1:  # one metric: ranx returns its array, not a dict
        scores = {metrics[0]: scores}
    assert list(qrels.keys()) == sorted(qid(u) for u in range(N_USERS))
    return {name: np.asarray(scores[name], dtype=np.float64) for name in metrics}


@pytest.fixture(scope="module")
def rankings() -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(20240611)
    relevant = random_relevant(rng)
    return relevant, top_lists(rng, relevant, boost=0.3)


def test_ndcg_recall_precision_equal_ranx_per_listener(rankings) -> None:
    relevant, ranked = rankings
    mine = ours(relevant, ranked)
    ref = theirs(relevant, ranked, ["ndcg@10", "recall@10", "precision@10"])
    for name in ("ndcg", "recall", "precision"):
        np.testing.assert_allclose(mine[name], ref[f"{name}@10"], rtol=0, atol=1e-6, err_msg=name)
    assert 0 < mine["ndcg"].mean() < 1 and (mine["ndcg"] == 0).any() and (mine["ndcg"] > 0).any()


def test_map_equals_ranx_after_the_documented_rescale(rankings) -> None:
    relevant, ranked = rankings
    mine = ours(relevant, ranked)["map"]
    ref = theirs(relevant, ranked, ["map@10"])["map@10"]
    n_relevant = np.array([len(rel) for rel in relevant])
    rescaled = mine * np.minimum(n_relevant, K) / n_relevant
    np.testing.assert_allclose(rescaled, ref, rtol=0, atol=1e-6)
    many = n_relevant > K
    assert many.sum() > 50 and (~many).sum() > 50  # both sides of K are exercised
    np.testing.assert_allclose(mine[~many], ref[~many], rtol=0, atol=1e-6)
    hit = mine > 0
    assert (mine[many & hit] > ref[many & hit] + 1e-6).all() and (many & hit).sum() > 20


@pytest.fixture(scope="module")
def two_systems(rankings) -> tuple[np.ndarray, np.ndarray]:
    """Per-listener NDCG@10 of two systems on the same listeners, the second slightly better."""
    relevant, ranked = rankings
    better = top_lists(np.random.default_rng(7), relevant, boost=0.31)
    return ours(relevant, ranked)["ndcg"], ours(relevant, better)["ndcg"]


def test_paired_t_test_equals_ranx_student(two_systems) -> None:
    a, b = two_systems
    mine = stats.paired_t_test(a, b)
    ref, _ = statistical_tests.paired_student_t_test(a, b, 0.05)
    assert 1e-4 < mine < 0.5  # a p-value where a wrong formula would show
    assert mine == pytest.approx(float(ref), rel=1e-9, abs=1e-12)


def test_randomization_test_agrees_with_ranx_fisher(two_systems) -> None:
    a, b = two_systems
    mine = stats.randomization_test(a, b, PERMUTATIONS, seed=0)
    ref, _ = statistical_tests.fisher_randomization_test(a, b, PERMUTATIONS, 0.05, 42)
    assert 0.01 < mine < 0.5
    std_error = np.sqrt(2 * mine * (1 - mine) / PERMUTATIONS)
    assert abs(mine - float(ref)) <= 4 * std_error + 1 / PERMUTATIONS
