"""The dataset validation gate: each broken rule yields a readable, specific report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from musicrec.cli import app
from musicrec.data import prepare as prepare_module
from musicrec.data.splitting import TEST
from musicrec.data.synth import synthesize
from musicrec.data.validate import find_violations, validate_dataset_dir, validate_frames
from musicrec.errors import DataError

Frames = dict[str, pd.DataFrame]


def interactions(rows: list[tuple[int, int, float]]) -> pd.DataFrame:
    users, items, plays = zip(*rows, strict=True) if rows else ((), (), ())
    return pd.DataFrame(
        {
            "user_idx": np.array(users, dtype=np.int32),
            "item_idx": np.array(items, dtype=np.int32),
            "plays": np.array(plays, dtype=np.float32),
        }
    )


def valid_frames() -> Frames:
    """Three users, four artists; every user has train rows, test pairs are unseen."""
    train = interactions([(0, 0, 5), (0, 1, 2), (1, 1, 7), (1, 2, 1), (2, 0, 3), (2, 3, 9)])
    test = interactions([(0, 2, 4), (1, 3, 1), (2, 1, 2)])
    users = pd.DataFrame(
        {"user_idx": np.arange(3, dtype=np.int32), "user_id": ["ann", "bob", "cy"]}
    )
    items = pd.DataFrame(
        {
            "item_idx": np.arange(4, dtype=np.int32),
            "artist_key": ["abba", "bjork", "can", "dido"],
            "artist_name": ["ABBA", "Björk", "Can", "Dido"],
            "mbid": pd.Series(["m1", None, "m3", None], dtype=object),
            "listeners": np.array([2, 3, 1, 2], dtype=np.int64),
            "plays": np.array([8, 11, 5, 10], dtype=np.int64),
        }
    )
    return {"train": train, "test": test, "users": users, "items": items}


def check(frames: Frames) -> str:
    """The report validate_frames raises (fails the test if it does not raise)."""
    with pytest.raises(DataError) as info:
        validate_frames(frames["train"], frames["test"], frames["users"], frames["items"])
    return str(info.value)


def set_value(frame: str, row: int, column: str, value: object) -> Callable[[Frames], None]:
    def mutate(frames: Frames) -> None:
        frames[frame].loc[row, column] = value

    return mutate


def append_row(frame: str, row: tuple[int, int, float]) -> Callable[[Frames], None]:
    def mutate(frames: Frames) -> None:
        extra = interactions([row])
        frames[frame] = pd.concat([frames[frame], extra], ignore_index=True)

    return mutate


def drop_user_train(frames: Frames) -> None:
    frames["train"] = frames["train"][frames["train"]["user_idx"] != 1].reset_index(drop=True)


def retype(frame: str, column: str, dtype: type) -> Callable[[Frames], None]:
    def mutate(frames: Frames) -> None:
        frames[frame] = frames[frame].astype({column: dtype})

    return mutate


def drop_column(frame: str, column: str) -> Callable[[Frames], None]:
    def mutate(frames: Frames) -> None:
        frames[frame] = frames[frame].drop(columns=column)

    return mutate


def add_column(frame: str, column: str) -> Callable[[Frames], None]:
    def mutate(frames: Frames) -> None:
        frames[frame] = frames[frame].assign(**{column: 1})

    return mutate


def test_valid_frames_pass() -> None:
    frames = valid_frames()
    assert find_violations(frames["train"], frames["test"], frames["users"], frames["items"]) == []
    validate_frames(frames["train"], frames["test"], frames["users"], frames["items"])


def test_prepared_synthetic_dataset_passes_on_disk(synth_dataset: Path) -> None:
    validate_dataset_dir(synth_dataset)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (set_value("train", 1, "plays", 0.0), "train: plays must be > 0 (1 row)"),
        (set_value("test", 0, "plays", -3.0), "test: plays must be > 0 (1 row)"),
        (set_value("train", 2, "plays", np.inf), "train: plays must be finite (1 row)"),
        (set_value("train", 2, "plays", np.nan), "train: column 'plays': must not contain nulls"),
        (
            set_value("train", 0, "user_idx", 3),
            "train: user_idx must be within the vocabulary, 0..2 (1 row)",
        ),
        (
            set_value("test", 1, "item_idx", -1),
            "test: item_idx must be within the vocabulary, 0..3 (1 row)",
        ),
        (
            append_row("train", (0, 1, 4.0)),
            "train: (user_idx, item_idx) pairs must be unique within train (2 rows)",
        ),
        (
            append_row("test", (1, 3, 2.0)),
            "test: (user_idx, item_idx) pairs must be unique within test (2 rows)",
        ),
        (
            append_row("test", (2, 3, 1.0)),
            "test: (user_idx, item_idx) pairs in test must not also be in train (1 row)",
        ),
        (drop_user_train, "users: every user must have >= 1 train row (1 row)"),
        (set_value("users", 2, "user_idx", 7), "users: user_idx must be contiguous"),
        (set_value("items", 0, "item_idx", 1), "items: item_idx must be contiguous"),
        (set_value("users", 1, "user_id", "ann"), "users: column 'user_id': values must be unique"),
        (
            retype("train", "user_idx", np.int64),
            "train: column 'user_idx': expected dtype int32, got 'int64'",
        ),
        (drop_column("items", "artist_key"), "items: missing column 'artist_key'"),
        (add_column("test", "rating"), "test: unexpected column 'rating'"),
    ],
)
def test_each_violation_is_reported(mutate: Callable[[Frames], None], expected: str) -> None:
    frames = valid_frames()
    mutate(frames)
    report = check(frames)
    assert report.startswith("dataset failed validation (1 problem):"), report
    assert expected in report


def test_report_shows_offending_rows_with_their_values() -> None:
    frames = valid_frames()
    append_row("test", (2, 3, 1.0))(frames)
    report = check(frames)
    assert "row 3: user_idx=2, item_idx=3, plays=1.0" in report


def test_all_problems_reported_at_once() -> None:
    frames = valid_frames()
    set_value("train", 1, "plays", 0.0)(frames)
    append_row("test", (0, 0, 1.0))(frames)
    drop_user_train(frames)
    report = check(frames)
    lines = [line for line in report.splitlines() if line.startswith("  - ")]
    assert report.startswith("dataset failed validation (3 problems):")
    assert [line.split(":")[0] for line in lines] == ["  - train", "  - test", "  - users"]


def test_examples_are_capped() -> None:
    frames = valid_frames()
    frames["train"]["plays"] = np.float32(0)
    report = check(frames)
    assert "(6 rows)" in report
    assert sum(line.strip().startswith("row ") for line in report.splitlines()) == 3


def test_prepare_cli_fails_on_a_violation_with_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A split that leaves a user without train rows is caught before anything is written."""
    raw, out = tmp_path / "raw", tmp_path / "dataset"
    synthesize(raw, n_users=60, n_artists=60, seed=3)
    real_split = prepare_module.split_parts

    def all_of_user_zero_in_test(users: np.ndarray, *args: object, **kwargs: object) -> np.ndarray:
        parts = real_split(users, *args, **kwargs)  # type: ignore[arg-type]
        return np.where(users == 0, TEST, parts).astype(np.int8)

    monkeypatch.setattr(prepare_module, "split_parts", all_of_user_zero_in_test)
    result = CliRunner().invoke(
        app, ["data", "prepare", "--source", "lastfm360k", "--input", str(raw), "--out", str(out)]
    )
    assert result.exit_code == 1
    assert "dataset failed validation (1 problem):" in result.output
    assert "users: every user must have >= 1 train row (1 row)" in result.output
    assert "row 0: user_idx=0" in result.output
    assert not out.exists()


def test_a_validation_part_may_overlap_neither_train_nor_test() -> None:
    """The leakage rules of a dataset with a validation part: each is reported on its own."""
    frames = valid_frames()
    clean = interactions([(0, 3, 1), (1, 0, 1)])
    args = (frames["train"], frames["test"], frames["users"], frames["items"], None)
    assert find_violations(*args, clean) == []
    in_train = interactions([(0, 3, 1), (1, 1, 1)])  # (1, 1) is a train pair of bob
    in_test = interactions([(0, 3, 1), (1, 3, 1)])  # (1, 3) is a test pair of bob
    for valid, rule, pair in (
        (in_train, "pairs in valid must not also be in train", "item_idx=1"),
        (in_test, "pairs in test must not also be in train or valid", "item_idx=3"),
    ):
        with pytest.raises(DataError) as info:
            validate_frames(*args, valid)
        report = str(info.value)
        assert "(1 problem)" in report and rule in report, report
        assert f"user_idx=1, {pair}" in report, report
