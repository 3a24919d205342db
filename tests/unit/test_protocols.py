"""Published protocols end to end: prepare writes the parts, tune and evaluate honour them.

No leakage: a test pair is never in the same user's train or validation part, test rankings
exclude validation items, and the search never reads the test part.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from musicrec import layout
from musicrec.cli import app
from musicrec.config import TrainConfig
from musicrec.data.dataset import Dataset
from musicrec.data.prepare import PrepareConfig, prepare
from musicrec.data.splitting import ratio_counts, stratified_counts
from musicrec.errors import DataError
from musicrec.models.base import IterationCallback, Model
from musicrec.pipeline.evaluate import evaluate_dataset

RATIO = PrepareConfig(protocol="ratio", ratios=(0.8, 0.1, 0.1), binary=True, no_filter=True)


def pairs(frame: pd.DataFrame) -> set[tuple[int, int]]:
    return set(zip(frame.user_idx, frame.item_idx, strict=True))


@pytest.fixture(scope="module")
def ratio_dataset(synth_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ratio") / "dataset"
    prepare("lastfm360k", synth_raw, out, RATIO)
    return out


def test_ratio_protocol_writes_three_disjoint_parts_with_recboles_sizes(
    ratio_dataset: Path,
) -> None:
    ds = Dataset.load(ratio_dataset)
    assert ds.has_valid and (ratio_dataset / layout.VALID).exists()
    train, valid, test = ds.train_frame, ds.valid_frame, ds.test_frame
    assert not pairs(train) & pairs(valid)
    assert not pairs(train) & pairs(test)
    assert not pairs(valid) & pairs(test)
    sizes = np.bincount(pd.concat([train, valid, test]).user_idx, minlength=len(ds.users))
    got = np.stack(
        [np.bincount(f.user_idx, minlength=len(ds.users)) for f in (train, valid, test)], axis=1
    )
    assert np.array_equal(got, ratio_counts(sizes, (0.8, 0.1, 0.1)))
    assert set(np.unique(pd.concat([train, valid, test]).plays)) == {1.0}  # binary
    stats = ds.stats
    assert stats["protocol"]["name"] == "ratio" and stats["protocol"]["validation_part"]
    assert stats["protocol"]["binary"] and not stats["protocol"]["filtered"]
    assert stats["kept"]["valid"] == len(valid)
    assert (
        stats["kept"]["train"] + stats["kept"]["valid"] + stats["kept"]["test"]
        == (stats["kept"]["interactions"])
    )


def test_protocol_is_part_of_the_fingerprint(synth_raw: Path, tmp_path: Path) -> None:
    a = prepare("lastfm360k", synth_raw, tmp_path / "a", RATIO)
    b = prepare("lastfm360k", synth_raw, tmp_path / "b", RATIO)
    c = prepare(
        "lastfm360k", synth_raw, tmp_path / "c", PrepareConfig(**{**vars(RATIO), "seed": 1})
    )
    assert a.fingerprint == b.fingerprint != c.fingerprint
    # Same rows, a different recorded protocol (ratio 9:1 vs stratified 10%) -> another print.
    d = prepare(
        "lastfm360k", synth_raw, tmp_path / "d", PrepareConfig(protocol="ratio", ratios=(0.9, 0.1))
    )
    e = prepare(
        "lastfm360k",
        synth_raw,
        tmp_path / "e",
        PrepareConfig(protocol="stratified", test_fraction=0.1),
    )
    assert d.fingerprint != e.fingerprint


def test_stratified_protocol_has_no_validation_part(synth_raw: Path, tmp_path: Path) -> None:
    config = PrepareConfig(protocol="stratified", test_fraction=0.25, binary=True, no_filter=True)
    prepare("lastfm360k", synth_raw, tmp_path / "ds", config)
    ds = Dataset.load(tmp_path / "ds")
    assert not ds.has_valid and not (tmp_path / "ds" / layout.VALID).exists()
    assert ds.valid.nnz == 0 and ds.validation_parts() is None
    sizes = np.bincount(pd.concat([ds.train_frame, ds.test_frame]).user_idx)
    expected = stratified_counts(sizes, 0.25)
    assert np.array_equal(np.bincount(ds.test_frame.user_idx, minlength=len(sizes)), expected[:, 2])
    assert ds.stats["protocol"]["name"] == "stratified"


def test_default_holdout_keeps_its_fingerprint(lastfm2k_dir: Path, tmp_path: Path) -> None:
    """Datasets prepared with the defaults are the same files, fingerprint included."""
    summary = prepare("hetrec2k", lastfm2k_dir, tmp_path / "ds")
    assert summary.fingerprint == "252f8442699163b3"
    assert not (tmp_path / "ds" / layout.VALID).exists()
    assert summary.stats["protocol"]["name"] == "holdout"


def test_hetrec_under_the_published_protocol(lastfm2k_dir: Path, tmp_path: Path) -> None:
    """RecBole's Last.fm: 1,892 users x 17,632 artists, 92,834 pairs, nothing merged or dropped."""
    summary = prepare("hetrec2k", lastfm2k_dir, tmp_path / "ds", RATIO)
    kept = summary.stats["kept"]
    assert (kept["users"], kept["items"], kept["interactions"]) == (1892, 17632, 92834)
    ds = Dataset.load(tmp_path / "ds")
    raw = pd.read_csv(lastfm2k_dir / "user_artists.dat", sep="\t")
    sizes = raw.groupby("userID").size().sort_index().to_numpy()  # users in id order
    counts = ratio_counts(sizes, (0.8, 0.1, 0.1))
    assert (kept["train"], kept["valid"], kept["test"]) == tuple(counts.sum(axis=0))
    assert not pairs(ds.test_frame) & (pairs(ds.train_frame) | pairs(ds.valid_frame))


def test_prepare_cli_protocol_options(synth_raw: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["data", "prepare", "--source", "lastfm360k", "--input", str(synth_raw)]
    ok = runner.invoke(
        app,
        [*base, "--out", str(tmp_path / "ds"), "--protocol", "ratio", "--binary", "--no-filter"],
    )
    assert ok.exit_code == 0, ok.output
    assert "ratio 0.8:0.1:0.1" in ok.output and "kept: valid" in ok.output
    meta = json.loads((tmp_path / "ds" / layout.DATASET_META).read_text())
    assert meta["has_validation"] and meta["config"]["protocol"] == "ratio"
    for bad, message in (
        (["--protocol", "leave-one-out"], "unknown protocol"),
        (["--protocol", "ratio", "--ratios", "0.8,x"], "--ratios must be numbers"),
        (["--protocol", "ratio", "--ratios", "0,0.5,0.5"], "ratios must be 2 or 3 shares"),
    ):
        result = runner.invoke(app, [*base, "--out", str(tmp_path / "bad"), *bad])
        assert result.exit_code == 1 and message in result.output, result.output
        assert not (tmp_path / "bad").exists()


def test_invalid_protocol_configs_are_rejected() -> None:
    with pytest.raises(DataError, match="ratios"):
        PrepareConfig(protocol="ratio", ratios=(0.5, 0.2, 0.2, 0.1))
    with pytest.raises(DataError, match="ratios"):
        PrepareConfig(protocol="ratio", ratios=(0.8, -0.1, 0.3))
    assert PrepareConfig(min_user_items=1, no_filter=True).no_filter


class ValidationFirst(Model):
    """A model that scores every validation item of a user above everything, test items next.

    If test rankings did not exclude validation items, its top-k would be full of them.
    """

    kind = "als"

    def __init__(self, valid: sp.csr_matrix, test: sp.csr_matrix):
        super().__init__(TrainConfig())
        self.valid, self.test = valid, test

    def _fit(
        self, user_items: Any, callback: IterationCallback | None, show_progress: bool
    ) -> None:
        pass

    def scores(self, users: np.ndarray | None, user_items: sp.csr_matrix) -> np.ndarray:
        assert users is not None
        return np.asarray(
            2.0 * self.valid[users].toarray() + self.test[users].toarray(), np.float32
        )

    def similar_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        ids = (items[:, None] + np.arange(1, k + 1)) % self.valid.shape[1]
        return ids, np.ones(ids.shape, np.float32)

    def save(self, directory: Path) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, directory: Path, config: TrainConfig, user_items: sp.csr_matrix) -> Model:
        raise NotImplementedError


def test_test_rankings_exclude_validation_items(ratio_dataset: Path) -> None:
    ds = Dataset.load(ratio_dataset)
    model = ValidationFirst(ds.valid, ds.test).fit(ds.train)
    report = evaluate_dataset(ds, model, ks=(10, 20), baselines=())
    # Every test item is ranked first once validation items are out: recall@20 is 1 for every
    # user with at most 20 test items (all of them here), precision@10 capped by |test|.
    assert int(np.diff(ds.test.indptr).max()) <= 20
    assert report.model["recall@20"] == pytest.approx(1.0)
    assert report.model["ndcg@20"] == pytest.approx(1.0)


def test_compare_and_the_gate_exclude_validation_items(
    ratio_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`musicrec compare` and the promotion gate rank test items as `evaluate` does."""
    from types import SimpleNamespace

    from musicrec.pipeline import gate
    from musicrec.pipeline.compare import score_artifacts

    ds = Dataset.load(ratio_dataset)
    model = ValidationFirst(ds.valid, ds.test).fit(ds.train)
    artifact: Any = SimpleNamespace(model=model)
    (compared,) = score_artifacts(ds, [artifact], ks=(20,))
    assert np.nanmean(compared.values["recall@20"]) == pytest.approx(1.0)
    gated: list[Any] = []
    monkeypatch.setattr(gate, "gate_scores", lambda a, b, config: gated.extend([a, b]))
    gate.gate_rankers(model, model, ds, ds.test, gate.GateConfig())
    assert np.nanmean(gated[1].values["recall@10"]) == pytest.approx(
        np.nanmean(np.minimum(1.0, 10 / np.diff(ds.test.indptr)[gated[1].users]))
    )


def test_tune_searches_on_the_validation_part_and_never_reads_test(
    ratio_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The search scores on valid.parquet (not a split carved from train) and cannot see test."""
    from musicrec.models.kinds import build
    from musicrec.pipeline.search import ValidationSplit, model_ndcg
    from musicrec.pipeline.tune import tune

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")

    def no_test(self: Dataset) -> pd.DataFrame:
        raise AssertionError("the search read the test part")

    with monkeypatch.context() as patch:
        patch.setattr(Dataset, "test_frame", property(no_test))
        result = tune(ratio_dataset, tmp_path / "tune", n_trials=1, kinds="dlae", final=False)
    ds = Dataset.load(ratio_dataset)
    config = TrainConfig.for_kind("dlae")
    expected = model_ndcg(build(config).fit(ds.train), ValidationSplit(ds.train, ds.valid))
    assert result.baseline_value == pytest.approx(expected)


def test_tune_trains_the_winner_on_train_only_and_tests_without_valid_items(
    ratio_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from musicrec.models.artifact import ModelArtifact
    from musicrec.pipeline.tune import tune

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    result = tune(ratio_dataset, tmp_path / "tune", n_trials=1, kinds="dlae")
    ds = Dataset.load(ratio_dataset)
    artifact = ModelArtifact.load(tmp_path / "tune" / "model")
    stored = sp.load_npz(tmp_path / "tune" / "model" / layout.TRAIN_MATRIX)
    assert (stored != ds.train).nnz == 0  # fitted on train, not train + valid
    report = evaluate_dataset(ds, artifact.model, baselines=())
    assert result.test is not None
    assert result.test["ndcg@10"] == pytest.approx(report.model["ndcg@10"])
    # `musicrec evaluate` on the same artifact: the same figures, valid items excluded.
    model_dir = str(tmp_path / "tune" / "model")
    command = ["evaluate", "--data", str(ratio_dataset), "--model", model_dir, "--json"]
    out = CliRunner().invoke(app, [*command, "--no-track", "--no-record"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["ndcg@10"] == pytest.approx(report.model["ndcg@10"])


def test_no_filter_keeps_artists_the_source_tells_apart_by_id(tmp_path: Path) -> None:
    from musicrec.data.identity import distinct_names
    from musicrec.text import normalize_name

    names = pd.Series(["Slot", "СЛОТ", "Слот", "Air", "air"], index=[1, 2, 3, 4, 5])
    assert distinct_names(names, normalize_name).tolist() == [
        "Slot",
        "СЛОТ",
        "Слот [3]",
        "Air",
        "air [5]",
    ]
    rows = [(f"u{u}", "a1", "Radiohead", 1) for u in range(3)]
    rows += [(f"u{u}", "a2", "radiohead", 2) for u in range(3)]
    rows += [(f"u{u}", f"a{u + 3}", f"other {u}", 1) for u in range(3)]
    frame = pd.DataFrame(rows, columns=["user_id", "artist_id", "artist_name", "plays"])
    frame.to_csv(tmp_path / "plays.csv", index=False)
    loose = PrepareConfig(min_user_items=2, min_item_users=1, seed=0)
    merged = prepare("csv", tmp_path / "plays.csv", tmp_path / "merged", loose)
    kept = prepare(
        "csv",
        tmp_path / "plays.csv",
        tmp_path / "kept",
        PrepareConfig(protocol="ratio", no_filter=True, seed=0),
    )
    assert merged.stats["kept"]["items"] == 4  # the two ids of "radiohead" are one artist
    assert (
        merged.stats["kept"]["interactions"] == 6
        and merged.stats["dropped"]["duplicate_rows_merged"] == 3
    )
    assert kept.stats["kept"]["items"] == 5 and kept.stats["kept"]["interactions"] == 9
    names_kept = set(Dataset.load(tmp_path / "kept").items.artist_name)
    assert {"Radiohead", "radiohead [a2]"} <= names_kept
