"""The CLI end to end on synthetic data, and its behaviour on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from musicrec.cli import app

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_synth_prepare_train_evaluate(tmp_path: Path) -> None:
    raw, ds, model = tmp_path / "raw", tmp_path / "ds", tmp_path / "model"
    assert run("data", "synth", "--out", str(raw), "--users", "400", "--artists", "400")[0] == 0
    code, out, err = run(
        "data", "prepare", "--source", "lastfm360k", "--input", str(raw), "--out", str(ds)
    )
    assert code == 0, err
    assert "kept: users" in out
    code, out, err = run(
        "train",
        "--data",
        str(ds),
        "--out",
        str(model),
        "--factors",
        "16",
        "--iterations",
        "5",
        "--no-track",
    )
    assert code == 0, err
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["params"]["factors"] == 16
    code, out, err = run(
        "evaluate", "--data", str(ds), "--model", str(model), "--json", "--no-track"
    )
    assert code == 0, err
    metrics = json.loads(out)
    for key in ("precision@10", "recall@10", "map@10", "ndcg@10"):
        assert 0 <= metrics[key] <= 1
        assert key in metrics["popularity"]
    assert metrics["ndcg@10"] > metrics["popularity"]["ndcg@10"]


@pytest.mark.parametrize(
    ("setup", "source", "message"),
    [
        (lambda p: None, "lastfm360k", "no such file"),
        (lambda p: p.write_bytes(b""), "lastfm360k", "empty"),
        (lambda p: p.write_bytes(b"garbage\nmore garbage\n"), "lastfm360k", "malformed"),
        (lambda p: p.write_bytes(b"x\ty\tz\n"), "lastfm360k", "malformed"),
        (lambda p: p.write_bytes(b"a,b\n1,2\n"), "csv", "missing column"),
        (lambda p: p.write_bytes(b"x"), "napster", "unknown source"),
    ],
)
def test_prepare_bad_input_one_line_error_no_output(
    tmp_path: Path, setup, source: str, message: str
) -> None:
    path = tmp_path / "input.tsv"
    setup(path)
    out = tmp_path / "out"
    code, _, err = run(
        "data", "prepare", "--source", source, "--input", str(path), "--out", str(out)
    )
    assert code == 1
    assert message in err
    assert err.strip().count("\n") == 0 or len(err.strip().splitlines()) <= 2  # one message
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == (["input.tsv"] if path.exists() else [])


def test_wrong_directory_layout(tmp_path: Path) -> None:
    code, _, err = run(
        "data",
        "prepare",
        "--source",
        "hetrec2k",
        "--input",
        str(tmp_path),
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 1 and "user_artists.dat" in err
    code, _, err = run("train", "--data", str(tmp_path), "--out", str(tmp_path / "m"), "--no-track")
    assert code == 1 and "dataset" in err
    assert not (tmp_path / "m").exists()


def test_bad_config_value(tmp_path: Path, synth_dataset: Path) -> None:
    code, _, err = run(
        "train",
        "--data",
        str(synth_dataset),
        "--out",
        str(tmp_path / "m"),
        "--weighting",
        "tfidf",
        "--no-track",
    )
    assert code == 1 and "weighting" in err
