"""``musicrec evaluate`` with the list dials: the lists a listener would be served, scored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from musicrec.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(synth_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval-dials") / "model"
    shutil.copytree(synth_model, out)
    return out


def evaluate(data: Path, model: Path, *dials: str) -> tuple[int, str, str]:
    args = ["evaluate", "--data", str(data), "--model", str(model), "--json", "--no-track"]
    result = runner.invoke(app, [*args, "--bootstrap", "0", "--no-record", *dials])
    return result.exit_code, result.stdout, result.stderr


def test_dials_change_what_is_scored_and_leave_the_manifest(
    synth_dataset: Path, model_dir: Path
) -> None:
    manifest = (model_dir / "manifest.json").read_text()
    code, out, err = evaluate(synth_dataset, model_dir)
    assert code == 0, err
    neutral = json.loads(out)
    code, out, err = evaluate(synth_dataset, model_dir, "--discovery", "1")
    assert code == 0, err
    discovery = json.loads(out)
    assert discovery["novelty@10"] > neutral["novelty@10"]
    assert discovery["ndcg@10"] < neutral["ndcg@10"]
    assert discovery["popularity"] == neutral["popularity"]  # baselines rank as they are
    code, out, err = evaluate(synth_dataset, model_dir, "--diversity", "1")
    assert code == 0, err
    assert json.loads(out)["diversity@10"] > neutral["diversity@10"]
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--data",
            str(synth_dataset),
            "--model",
            str(model_dir),
            "--json",
            "--no-track",
            "--bootstrap",
            "0",
            "--discovery",
            "0.5",
        ],
    )  # --record is the default, but a dialled evaluation records nothing
    assert result.exit_code == 0
    assert (model_dir / "manifest.json").read_text() == manifest


@pytest.mark.parametrize(
    ("dials", "message"),
    [
        (("--diversity", "2"), "diversity must be a number in 0..1"),
        (("--include-tag", "metall"), "--include-tag: unknown tag 'metall'; close matches: metal"),
    ],
)
def test_bad_dials_are_one_line_errors(
    synth_dataset: Path, model_dir: Path, dials: tuple[str, ...], message: str
) -> None:
    code, _, err = evaluate(synth_dataset, model_dir, *dials)
    assert code == 1 and message in err and "Traceback" not in err
