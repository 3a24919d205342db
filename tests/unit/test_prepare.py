"""Prepare: dedupe, k-core, split, stats and atomic output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from musicrec import layout
from musicrec.data.dataset import Dataset
from musicrec.data.prepare import PrepareConfig, kcore, prepare, split_holdout
from musicrec.errors import DataError


def test_kcore_reaches_fixed_point() -> None:
    rng = np.random.default_rng(0)
    users = rng.integers(0, 200, 3000)
    items = (rng.zipf(1.6, 3000) % 400).astype(np.int64)
    pairs = np.unique(np.c_[users, items], axis=0)
    keep, dropped = kcore(pairs[:, 0], pairs[:, 1], 5, 3)
    kept = pairs[keep]
    assert np.bincount(kept[:, 0])[np.unique(kept[:, 0])].min() >= 5
    assert np.bincount(kept[:, 1])[np.unique(kept[:, 1])].min() >= 3
    assert dropped["rows_kcore"] == len(pairs) - keep.sum()


def test_split_holds_out_a_fraction_per_user_and_keeps_train_rows() -> None:
    users = np.repeat(np.arange(50), np.arange(5, 55))
    test = split_holdout(users, 0.2, np.random.default_rng(1))
    per_user_test = np.bincount(users[test], minlength=50)
    sizes = np.bincount(users)
    assert np.array_equal(per_user_test, np.floor(sizes * 0.2).astype(int))
    assert (np.bincount(users[~test], minlength=50) >= 1).all()


def test_temporal_split_puts_latest_listens_in_test() -> None:
    users = np.repeat([0, 1], 10)
    timestamps = np.r_[np.arange(10), np.arange(10)[::-1]]
    test = split_holdout(users, 0.2, np.random.default_rng(0), order_key=timestamps)
    assert set(timestamps[:10][test[:10]]) == {8, 9}
    assert set(timestamps[10:][test[10:]]) == {8, 9}


def test_prepare_synthetic_dataset_contract(synth_dataset: Path) -> None:
    ds = Dataset.load(synth_dataset)
    train, test = ds.train_frame, ds.test_frame
    pairs_train = set(zip(train.user_idx, train.item_idx, strict=True))
    pairs_test = set(zip(test.user_idx, test.item_idx, strict=True))
    assert not pairs_train & pairs_test
    assert len(pairs_train) == len(train) and len(pairs_test) == len(test)
    assert (train.plays > 0).all() and (test.plays > 0).all()
    assert set(ds.users.user_idx) == set(range(len(ds.users)))
    assert set(ds.items.item_idx) == set(range(len(ds.items)))
    assert train.user_idx.nunique() == len(ds.users)
    assert ds.tags is not None and {"item_idx", "tag", "weight"} <= set(ds.tags.columns)
    stats = json.loads((synth_dataset / layout.STATS).read_text())
    assert stats["kept"]["train"] + stats["kept"]["test"] == stats["kept"]["interactions"]
    assert stats["rows_read"] == (
        stats["rejected_total"]
        + stats["dropped"]["missing_artist"]
        + stats["dropped"]["duplicate_rows_merged"]
        + stats["dropped"]["rows_kcore"]
        + stats["kept"]["interactions"]
    )
    assert len(ds.fingerprint) == 16


def test_prepare_is_deterministic_and_seed_dependent(synth_raw: Path, tmp_path: Path) -> None:
    a = prepare("lastfm360k", synth_raw, tmp_path / "a", PrepareConfig(seed=1))
    b = prepare("lastfm360k", synth_raw, tmp_path / "b", PrepareConfig(seed=1))
    c = prepare("lastfm360k", synth_raw, tmp_path / "c", PrepareConfig(seed=2))
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_duplicates_are_summed(tmp_path: Path) -> None:
    rows = [(f"u{u}", f"a{a}", 1) for u in range(6) for a in range(6)]
    rows += [("u0", "a0", 10), ("u0", "A0 ", 100)]  # same artist after normalization
    frame = pd.DataFrame(rows, columns=["user_id", "artist_id", "plays"])
    frame.to_csv(tmp_path / "plays.csv", index=False)
    summary = prepare("csv", tmp_path / "plays.csv", tmp_path / "ds", PrepareConfig(seed=0))
    ds = Dataset.load(tmp_path / "ds")
    everything = pd.concat([ds.train_frame, ds.test_frame])
    u0 = int(ds.users.set_index("user_id").loc["u0", "user_idx"])
    a0 = int(ds.items.set_index("artist_key").loc["a0", "item_idx"])
    row = everything[(everything.user_idx == u0) & (everything.item_idx == a0)]
    assert row.plays.item() == 111
    assert summary.stats["dropped"]["duplicate_rows_merged"] == 2


def test_failed_prepare_leaves_existing_output_untouched(synth_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    prepare("lastfm360k", synth_raw, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(DataError, match="k-core"):
        prepare("lastfm360k", synth_raw, out, PrepareConfig(min_user_items=10_000))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # no temp dirs left behind


def test_invalid_config_is_rejected() -> None:
    with pytest.raises(DataError):
        PrepareConfig(test_fraction=1.5)
    with pytest.raises(DataError):
        PrepareConfig(split="sideways")  # type: ignore[arg-type]


def test_same_input_gives_byte_identical_directory(synth_raw: Path, tmp_path: Path) -> None:
    prepare("lastfm360k", synth_raw, tmp_path / "a")
    prepare("lastfm360k", synth_raw, tmp_path / "b")
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
