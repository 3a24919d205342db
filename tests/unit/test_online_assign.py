"""Arm assignment: the same arm in every process, shares on target, salts independent."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from musicrec.errors import ExperimentError
from musicrec.online.assign import BUCKETS, Split, bucket, in_population, parse_range, share_buckets

LISTENERS = [f"listener-{i}" for i in range(100_000)]

WORKER = """
import sys
from musicrec.online.assign import Split
split = Split.from_shares(["control", "treatment"], [50, 50], "exp-1")
for line in sys.stdin:
    listener = line.rstrip("\\n")
    arms = {split.arm(listener) for _ in range(1000)}
    assert len(arms) == 1, (listener, arms)
    print(listener, arms.pop())
"""


def test_same_arm_in_two_worker_processes_over_1000_calls_each() -> None:
    listeners = [f"user{i}" for i in range(200)] + ["Björk fan", "😀", "x" * 200]
    answers = []
    for hash_seed in ("1", "2"):  # Python's own hash differs between the two processes
        done = subprocess.run(
            [sys.executable, "-c", WORKER],
            input="\n".join(listeners) + "\n",
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
            env={"PYTHONHASHSEED": hash_seed, "PATH": ""},
        )
        answers.append(dict(line.rsplit(" ", 1) for line in done.stdout.splitlines()))
    assert answers[0] == answers[1]
    assert set(answers[0]) == set(listeners)
    here = Split.from_shares(["control", "treatment"], [50, 50], "exp-1")
    assert answers[0] == {name: here.arm(name) for name in listeners}


@pytest.mark.parametrize("shares", [[50, 50], [10, 90], [20, 30, 50], [33.33, 33.33, 33.34]])
def test_shares_within_one_point_over_100000_listeners(shares: list[float]) -> None:
    names = [f"arm{i}" for i in range(len(shares))]
    split = Split.from_shares(names, shares, salt="shares")
    arms = [split.arm(listener) for listener in LISTENERS]
    observed = np.array([arms.count(name) for name in names])
    assert np.all(np.abs(observed / len(LISTENERS) * 100 - np.array(shares)) < 1.0)
    expected = np.array(shares) / 100 * len(LISTENERS)
    assert stats.chisquare(observed, expected).pvalue > 0.001  # no sample-ratio mismatch


def test_a_new_salt_reassigns_about_half() -> None:
    old = Split.from_shares(["a", "b"], [50, 50], salt="first")
    new = Split.from_shares(["a", "b"], [50, 50], salt="second")
    agree = np.mean([old.arm(x) == new.arm(x) for x in LISTENERS])
    assert 0.49 <= agree <= 0.51
    same = Split.from_shares(["a", "b"], [50, 50], salt="first")
    assert all(old.arm(x) == same.arm(x) for x in LISTENERS[:1000])


def test_buckets_are_uniform() -> None:
    counts = np.bincount([bucket(x, "u") for x in LISTENERS], minlength=BUCKETS)
    per_decile = counts.reshape(10, -1).sum(axis=1)
    assert stats.chisquare(per_decile).pvalue > 0.001


def test_populations_split_listeners_and_are_independent_of_arms() -> None:
    low = [x for x in LISTENERS[:20_000] if in_population(x, 0, 50)]
    high = [x for x in LISTENERS[:20_000] if in_population(x, 50, 100)]
    assert not set(low) & set(high) and len(low) + len(high) == 20_000
    split = Split.from_shares(["a", "b"], [50, 50], salt="population-test")
    share_a = np.mean([split.arm(x) == "a" for x in low])
    assert 0.47 < share_a < 0.53  # the population does not pick the arm


@pytest.mark.parametrize(
    ("shares", "message"),
    [([60, 60], "sum to 100"), ([0, 100], "positive"), ([50.005, 49.995], "0.01"), ([], "arm")],
)
def test_bad_shares_are_refused(shares: list[float], message: str) -> None:
    with pytest.raises(ExperimentError, match=message):
        share_buckets(shares)


@pytest.mark.parametrize("text", ["50", "50-40", "0-101", "a-b", "-5-10"])
def test_bad_population_ranges_are_refused(text: str) -> None:
    with pytest.raises(ExperimentError):
        parse_range(text)


def test_population_range_parses() -> None:
    assert parse_range("0-100") == (0.0, 100.0)
    assert parse_range("12.5-50") == (12.5, 50.0)
