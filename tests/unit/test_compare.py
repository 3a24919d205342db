"""`musicrec evaluate` intervals and `musicrec compare`, checked against independent code."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats
from typer.testing import CliRunner

from musicrec.cli import app
from musicrec.config import TrainConfig
from musicrec.data.dataset import Dataset
from musicrec.models.artifact import ModelArtifact
from musicrec.pipeline.train import train


@pytest.fixture(scope="module")
def twin_model(synth_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic fixture's configuration with another seed."""
    out = tmp_path_factory.mktemp("twin") / "model"
    train(synth_dataset, out, TrainConfig(factors=32, iterations=10, seed=7))
    return out


def textbook_ndcg(ranked: list[int], relevant: set[int], k: int) -> float:
    """NDCG@k of one user, written without numpy."""
    dcg = sum(1 / math.log2(i + 2) for i, item in enumerate(ranked[:k]) if item in relevant)
    idcg = sum(1 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg / idcg


def per_user_ndcg(dataset: Dataset, model_dir: Path) -> np.ndarray:
    """Per-user NDCG@10 from the public Model API and the textbook formula."""
    model = ModelArtifact.load(model_dir).model
    test = dataset.test
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    ids, _ = model.recommend(users, dataset.train[users], 10)
    return np.array(
        [
            textbook_ndcg(list(row), set(test[user].indices), 10)
            for user, row in zip(users, ids, strict=True)
        ]
    )


def run_json(*args: str) -> dict:  # type: ignore[type-arg]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_paired_t_p_value_matches_an_independent_computation(
    synth_dataset: Path, synth_model: Path, twin_model: Path
) -> None:
    report = run_json(
        "compare", "--data", str(synth_dataset), "--model", str(synth_model),
        "--model", str(twin_model), "--metric", "ndcg@10", "--metric", "coverage@10",
    )  # fmt: skip
    dataset = Dataset.load(synth_dataset)
    a, b = per_user_ndcg(dataset, synth_model), per_user_ndcg(dataset, twin_model)
    expected = scipy_stats.ttest_rel(b, a).pvalue
    ours = report["ndcg@10"]
    assert ours["p_value_t"] == pytest.approx(expected, abs=0.001)
    assert ours["a"] == pytest.approx(a.mean()) and ours["b"] == pytest.approx(b.mean())
    assert ours["difference"] == pytest.approx((b - a).mean())
    assert ours["low"] < ours["difference"] < ours["high"]
    assert (
        0 < ours["p_value_randomization"] <= 1
        and ours["p_value_holm"] >= ours["p_value_randomization"]
    )
    assert report["coverage@10"]["p_value_t"] is None  # not a mean over users
    assert set(report) == {"ndcg@10", "coverage@10", "segments", "comparison"}
    assert set(report["segments"]) >= {"cold", "light", "heavy", "head", "mid", "tail"}


def test_compare_with_only_per_user_metrics(
    synth_dataset: Path, synth_model: Path, twin_model: Path
) -> None:
    """No coverage or Gini asked for: no aggregate statistic to bootstrap, still a report."""
    report = run_json(
        "compare", "--data", str(synth_dataset), "--model", str(synth_model),
        "--model", str(twin_model), "--k", "10", "--metric", "ndcg@10",
    )  # fmt: skip
    assert set(report) == {"ndcg@10", "segments", "comparison"}
    assert report["ndcg@10"]["low"] <= report["ndcg@10"]["difference"] <= report["ndcg@10"]["high"]


def test_evaluate_json_keeps_flat_keys_and_adds_intervals(
    synth_dataset: Path, synth_model: Path
) -> None:
    args = ("evaluate", "--data", str(synth_dataset), "--model", str(synth_model))
    first = run_json(*args, "--no-track", "--no-record", "--bootstrap", "300", "--seed", "5")
    again = run_json(*args, "--no-track", "--no-record", "--bootstrap", "300", "--seed", "5")
    assert first == again
    for metric in ("ndcg", "coverage", "novelty", "diversity", "gini", "popularity_lift"):
        for k in (10, 20):
            key = f"{metric}@{k}"
            assert isinstance(first[key], float), key
            assert first["intervals"][key]["low"] <= first["intervals"][key]["high"], key
    assert first["bootstrap"]["resamples"] == 300 and first["segments"]["light"]["intervals"]
    assert "thresholds" in first["segments"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--metric", "ndcg@11"), "unknown metric 'ndcg@11'"),
        (("--k", "100000"), "must be smaller than the catalogue"),
    ],
)
def test_compare_bad_input_is_one_line(
    synth_dataset: Path, synth_model: Path, twin_model: Path, extra: tuple[str, ...], message: str
) -> None:
    args = ["compare", "--data", str(synth_dataset), "--model", str(synth_model)]
    result = CliRunner().invoke(app, [*args, "--model", str(twin_model), *extra])
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) <= 2


def test_compare_refuses_models_of_different_datasets(
    synth_raw: Path, synth_dataset: Path, synth_model: Path, tmp_path: Path
) -> None:
    from musicrec.data.prepare import PrepareConfig, prepare

    other = tmp_path / "other"
    prepare("lastfm360k", synth_raw, other, PrepareConfig(seed=1))
    other_model = tmp_path / "other-model"
    train(other, other_model, TrainConfig(factors=4, iterations=1))
    args = ["compare", "--data", str(synth_dataset), "--model", str(synth_model)]
    result = CliRunner().invoke(app, [*args, "--model", str(other_model)])
    assert result.exit_code == 1 and "different datasets" in result.output
