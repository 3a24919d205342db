"""Hyperparameter search: the validation split, staged fitting, and a short real search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from musicrec.config import TrainConfig
from musicrec.data.dataset import Dataset
from musicrec.models.kinds import build
from musicrec.pipeline.search import checkpoints, model_ndcg, score_config
from musicrec.pipeline.tune import tune, validation_split
from musicrec.tracking import MlflowObserver, get_client


def _random_plays(n_users: int = 120, n_items: int = 90, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < 0.15) * rng.integers(1, 50, (n_users, n_items))
    dense[:, 0] = 3  # every user has at least one row
    dense[0, :] = 0
    dense[0, 1] = 5  # a user with a single row keeps it
    return sp.csr_matrix(dense.astype(np.float32))


def test_validation_split_partitions_each_users_training_rows() -> None:
    train = _random_plays()
    split = validation_split(train, fraction=0.25, seed=3)
    assert split.train.multiply(split.valid).nnz == 0  # disjoint
    assert (split.train + split.valid != train).nnz == 0  # nothing lost, plays kept
    kept, held, total = (np.diff(m.indptr) for m in (split.train, split.valid, train))
    assert (kept >= 1).all()  # no user loses all training rows
    assert held[0] == 0
    np.testing.assert_array_equal(held[1:], np.round(0.25 * total[1:]))
    again = validation_split(train, fraction=0.25, seed=3)
    assert (again.valid != split.valid).nnz == 0  # same seed, same split
    assert (validation_split(train, fraction=0.25, seed=4).valid != split.valid).nnz > 0


def test_checkpoints() -> None:
    assert checkpoints(15, 5) == [5, 10, 15]
    assert checkpoints(7, 5) == [5, 7]
    assert checkpoints(3, 5) == [3]


def test_staged_fit_equals_one_fit() -> None:
    """Scoring at checkpoints must not change the model the trial is judged by."""
    split = validation_split(_random_plays(), seed=1)
    config = TrainConfig(factors=8, iterations=7, regularization=0.05)
    seen: list[tuple[int, float]] = []
    staged = score_config(config, split, lambda step, ndcg: seen.append((step, ndcg)), every=3)
    whole = build(config).fit(split.train)
    assert [step for step, _ in seen] == [3, 6, 7]
    assert staged.ndcg == pytest.approx(model_ndcg(whole, split))


@pytest.mark.slow
def test_three_trial_search_is_no_worse_than_the_default(
    hetrec_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    # Three trials are fewer than the pruner's startup trials: pruning could not act anyway.
    observer = MlflowObserver(experiment="musicrec-tune", run_name="tune")
    result = tune(
        hetrec_dataset, tmp_path / "tune", n_trials=3, prune=False, final=False, observer=observer
    )
    split = validation_split(Dataset.load(hetrec_dataset).train, seed=0)
    default = score_config(TrainConfig(), split).ndcg
    assert result.baseline_value == pytest.approx(default)
    assert result.best_value >= default - 1e-9
    assert TrainConfig.from_yaml(result.best_config_path) == result.best
    client = get_client()
    trials = client.search_runs(
        [client.get_experiment_by_name("musicrec-tune").experiment_id],
        f"tags.`mlflow.parentRunId` = '{result.run_id}'",
    )
    assert len(trials) == 3
    assert all("val_ndcg_at_10" in run.data.metrics for run in trials)
    assert not any("ndcg_at_10" in run.data.metrics for run in trials)  # test split untouched


def test_unknown_kinds_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from musicrec.cli import app

    result = CliRunner().invoke(
        app, ["tune", "--data", str(tmp_path), "--kinds", "als,svd", "--out", str(tmp_path / "t")]
    )
    assert result.exit_code == 1
    assert "unknown: svd" in result.output
    assert not (tmp_path / "t").exists()


@pytest.mark.slow
def test_short_search_over_kinds_beats_every_default_als(
    hetrec_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two trials per kind plus the blend step: the chosen model clears NDCG@10 0.25 on test."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    observer = MlflowObserver(experiment="musicrec-tune", run_name="tune")
    result = tune(
        hetrec_dataset,
        tmp_path / "tune",
        n_trials=4,
        kinds="ease,als",
        prune=False,
        observer=observer,
    )
    assert result.test is not None
    assert result.test["ndcg@10"] >= 0.25
    assert result.test["ndcg@10"] > 2.5 * result.test["popularity"]["ndcg@10"]
    rows = (tmp_path / "tune" / "trials.csv").read_text().splitlines()
    assert {row.split(",")[1] for row in rows[1:]} >= {"ease", "als"}


def test_every_kind_scores_through_the_model(tmp_path: Path) -> None:
    """Non-iterative kinds fit once and are scored once; the search space lives with the kind."""
    import optuna

    from musicrec.models.kinds import tunable_kinds
    from musicrec.pipeline.search import suggest_config, trial_params

    split = validation_split(_random_plays(), seed=2)
    seen: list[int] = []
    score = score_config(TrainConfig.for_kind("ease", l2=50.0), split, lambda s, _: seen.append(s))
    assert seen == [1] and 0 <= score.ndcg <= 1
    assert set(tunable_kinds()) >= {"als", "ease", "itemknn", "rp3beta"}
    for kind in ("als", "ease", "itemknn", "rp3beta"):
        start = TrainConfig.for_kind(kind)
        study = optuna.create_study()
        study.enqueue_trial(trial_params(start, (kind,)))
        assert suggest_config(study.ask(), start, (kind,)) == start  # trial 0 is the start
