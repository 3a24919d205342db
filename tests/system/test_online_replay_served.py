"""Off-policy replay end to end at small counts: a real server explores, the CLI replays."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "online_replay_lastfm2k.py"
LISTENERS, K = 60, 10


@pytest.mark.slow
def test_an_exploring_server_logs_propensities_that_replay_reads(lastfm2k_dir: Path) -> None:
    done = subprocess.run(
        [
            sys.executable, str(SCRIPT), "--data", str(lastfm2k_dir), "--models", "default",
            "--listeners", str(LISTENERS), "--log-lists", "1", "--served-lists", "1",
            "--resamples", "100",
        ],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    logging = result["logging"]
    assert logging["errors"] == 0 and logging["with_request_id"] == LISTENERS
    assert set(logging["arms"]) == {"a", "b"}  # every list came from the exploring arms
    replay = result["replay"]["default"]
    assert replay["impressions"] == LISTENERS * K  # every shown artist logged a propensity
    assert replay["listeners"] == LISTENERS and replay["listeners_unknown"] == 0
    assert replay["support"] == 1.0  # the logging model replayed: all inside its candidates
    assert 0 < replay["matched"] < LISTENERS * K  # the lists explored
    assert replay["low"] <= replay["value"] <= replay["high"]
    assert replay["trusted"] is True and replay["warning"] is None
    served = result["served"]["default"]
    assert served["listeners"] == LISTENERS and served["impressions"] == LISTENERS * K
    assert served["lists_as_replayed"] == 1.0  # served lists are the lists replay scores
