"""The online benchmark at small counts: a real server, simulated listeners, the readouts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "online_simulator_lastfm2k.py"


@pytest.mark.slow
def test_interleaving_names_the_better_model_and_aa_arms_are_served(lastfm2k_dir: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--data",
            str(lastfm2k_dir),
            "--phases",
            "interleave,aa",
            "--il-listeners",
            "300",
            "--aa-experiments",
            "3",
            "--aa-listeners",
            "100",
            "--resamples",
            "200",
            "--repeats",
            "50",
            "--aa-resampled",
            "100",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    interleave = result["interleave"]
    assert interleave["listeners"] == 300
    assert interleave["winner"] == "default" and interleave["p_value"] < 0.05
    assert interleave["simulator"]["errors"] == 0
    assert interleave["simulator"]["with_request_id"] == 300
    power = interleave["power"]  # resampled experiments: more listeners, more power
    assert [p["units"] for p in power][-1] == 300 and power[-1]["power"] >= power[0]["power"]
    aa = result["aa"]
    assert aa["experiments"] == 3 and aa["lists_not_from_an_arm"] == 0
    assert aa["resampled"]["readouts"] == 100 and aa["resampled"]["pool"] == 300
