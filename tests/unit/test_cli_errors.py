"""Bad command-line input: one ``error:`` line, exit code 1, no traceback, no clobbered paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from musicrec.cli import app
from musicrec.errors import ArtifactError
from musicrec.fsutil import atomic_dir, write_json_atomic

runner = CliRunner()


@pytest.fixture(autouse=True)
def no_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A regression must fail here, not exec or start a server inside the test process."""
    import os

    import uvicorn

    from musicrec.ops import monitoring

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("bad input reached the server start")

    monkeypatch.setattr(os, "execv", refuse)
    monkeypatch.setattr(uvicorn, "run", refuse)
    monkeypatch.setattr(monitoring, "start_prometheus", refuse)


def fails(*args: str) -> str:
    """Run ``musicrec ARGS``; assert a clean exit 1 and return the error text on stderr."""
    result = runner.invoke(app, list(args))
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: "), result.output
    return " ".join(result.stderr.split())


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("keep me\n", encoding="utf-8")
    return path


@pytest.fixture
def unrelated_dir(tmp_path: Path) -> Path:
    path = tmp_path / "mine"
    path.mkdir()
    (path / "thesis.tex").write_text("keep me\n", encoding="utf-8")
    return path


def test_prepare_refuses_to_replace_a_file(a_file: Path, tmp_path: Path) -> None:
    err = fails(
        "data", "prepare", "--source", "lastfm360k", "--input", str(tmp_path), "--out", str(a_file)
    )
    assert "exists and is not a directory" in err
    assert a_file.read_text(encoding="utf-8") == "keep me\n"


def test_prepare_refuses_to_replace_an_unrelated_directory(
    unrelated_dir: Path, tmp_path: Path
) -> None:
    err = fails(
        "data",
        "prepare",
        "--source",
        "lastfm360k",
        "--input",
        str(tmp_path),
        "--out",
        str(unrelated_dir),
    )
    assert "has no dataset.json" in err
    assert (unrelated_dir / "thesis.tex").read_text(encoding="utf-8") == "keep me\n"


def test_train_refuses_an_unrelated_out_directory(synth_dataset: Path, unrelated_dir: Path) -> None:
    err = fails("train", "--data", str(synth_dataset), "--out", str(unrelated_dir), "--no-track")
    assert "has no manifest.json" in err
    assert sorted(p.name for p in unrelated_dir.iterdir()) == ["thesis.tex"]


def test_train_refuses_its_own_dataset_as_out(synth_dataset: Path) -> None:
    before = sorted(p.name for p in synth_dataset.iterdir())
    fails("train", "--data", str(synth_dataset), "--out", str(synth_dataset), "--no-track")
    assert sorted(p.name for p in synth_dataset.iterdir()) == before


def test_train_config_that_is_a_directory(tmp_path: Path) -> None:
    err = fails("train", "--data", str(tmp_path), "--out", str(tmp_path / "m"), "--config", ".")
    assert "is a directory, expected a YAML file" in err


def test_train_config_that_is_binary(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_bytes(b"\xff\xfe\x00\xe7garbage")
    err = fails(
        "train", "--data", str(tmp_path), "--out", str(tmp_path / "m"), "--config", str(config)
    )
    assert "cannot read the config" in err


def test_synth_out_is_a_file(a_file: Path) -> None:
    err = fails("data", "synth", "--out", str(a_file), "--users", "5", "--artists", "30")
    assert "cannot create the output directory" in err


def test_fetch_cache_dir_is_a_file(a_file: Path) -> None:
    err = fails("data", "fetch", "hetrec-2k", "--cache-dir", str(a_file))
    assert "cannot create the cache directory" in err


@pytest.mark.parametrize("k", ["0", "-1"])
def test_evaluate_k_must_be_positive(tmp_path: Path, k: str) -> None:
    err = fails("evaluate", "--data", str(tmp_path), "--model", str(tmp_path), "--k", k)
    assert f"--k must be at least 1, got {k}" in err


def test_evaluate_k_larger_than_the_catalogue(synth_dataset: Path, synth_model: Path) -> None:
    err = fails(
        "evaluate", "--data", str(synth_dataset), "--model", str(synth_model), "--k", "99999"
    )
    assert "must be smaller than the catalogue" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "a"], "--model must be given exactly twice"),
        (["--model", "a", "--model", "b", "--bootstrap", "0"], "at least 1"),
    ],
)
def test_compare_options(tmp_path: Path, args: list[str], message: str) -> None:
    assert message in fails("compare", "--data", str(tmp_path), *args)


def test_gate_options() -> None:
    assert "--gate must be one of" in fails("promote", "--gate", "best")
    assert "0 or more" in fails("promote", "--delta", "-1")


def test_evaluate_output_is_a_directory(tmp_path: Path) -> None:
    err = fails(
        "evaluate", "--data", str(tmp_path), "--model", str(tmp_path), "--output", str(tmp_path)
    )
    assert "is a directory" in err


def test_promote_model_that_is_not_an_artifact(a_file: Path, tmp_path: Path) -> None:
    for model in (a_file, tmp_path / "absent"):
        assert "not a model artifact directory" in fails("promote", "--model", str(model))


def test_grid_config_that_is_a_directory(tmp_path: Path) -> None:
    err = fails("experiments", "grid", "--data", str(tmp_path), "--config", str(tmp_path))
    assert "is a directory, expected a YAML file" in err


def test_report_out_is_a_file(a_file: Path) -> None:
    err = fails("experiments", "report", "--out", str(a_file), "--experiment", "none-here")
    assert "exists and is not a directory" in err


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--trials", "0", "number of trials must be at least 1"),
        ("--timeout", "-5", "timeout must be positive"),
    ],
)
def test_tune_bounds(tmp_path: Path, option: str, value: str, message: str) -> None:
    out = tmp_path / "tune"
    err = fails("tune", "--data", str(tmp_path), "--out", str(out), option, value)
    assert message in err
    assert not out.exists()


def test_tune_out_is_a_file(a_file: Path, tmp_path: Path) -> None:
    err = fails("tune", "--data", str(tmp_path), "--out", str(a_file), "--trials", "1")
    assert "exists and is not a directory" in err


def test_tracking_ui_port_out_of_range() -> None:
    assert "--port must be in 1..65535" in fails("tracking", "ui", "--port", "70000")


def test_serve_unknown_log_level(tmp_path: Path) -> None:
    err = fails("serve", "--model", str(tmp_path), "--index", "exact", "--log-level", "chatty")
    assert "--log-level must be one of" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "0"], "concurrency must be at least 1"),
        (["--url", "http://127.0.0.1:70000"], "Port out of range"),
    ],
)
def test_traffic_bounds(args: list[str], message: str) -> None:
    assert message in fails("traffic", "--max-requests", "1", *args)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--api-url", "notaurl"], "--api-url must be an http(s) URL"),
        (["--api-url", "http://127.0.0.1:99999"], "Port out of range"),
        (["--port", "70000"], "--port must be in 1..65535"),
    ],
)
def test_monitor_bad_input_fails_before_starting(
    tmp_path: Path, args: list[str], message: str
) -> None:
    workdir = tmp_path / "prometheus"
    assert message in fails("monitor", "--workdir", str(workdir), *args)
    assert not workdir.exists()


def test_monitor_workdir_is_a_file(a_file: Path) -> None:
    assert "exists and is not a directory" in fails("monitor", "--workdir", str(a_file))


def test_atomic_dir_leaves_a_file_target_alone(a_file: Path) -> None:
    with pytest.raises(ArtifactError), atomic_dir(a_file):
        pass
    assert a_file.read_text(encoding="utf-8") == "keep me\n"
    assert [p.name for p in a_file.parent.iterdir()] == [a_file.name]


def test_atomic_dir_replaces_an_earlier_output_of_its_kind(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "manifest.json").write_text("{}", encoding="utf-8")
    with atomic_dir(target, marker="manifest.json") as tmp:
        (tmp / "manifest.json").write_text('{"new": 1}', encoding="utf-8")
    assert (target / "manifest.json").read_text(encoding="utf-8") == '{"new": 1}'


def test_write_json_atomic_to_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="is a directory"):
        write_json_atomic(tmp_path, {})
