"""Token buckets: the burst, then the rate, shared by processes through one file."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest

from musicrec.api.quota import LocalBuckets, SharedBuckets


@pytest.mark.parametrize("kind", ["local", "shared"])
def test_burst_then_rate(kind: str, tmp_path: Path) -> None:
    buckets = LocalBuckets() if kind == "local" else SharedBuckets(tmp_path)
    waits = [buckets.take(0, "k1", rate=2.0, burst=3, now=100.0) for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0] and waits[3] == pytest.approx(0.5)
    assert buckets.take(0, "k1", 2.0, 3, now=100.4) > 0  # 0.8 tokens: not yet
    assert buckets.take(0, "k1", 2.0, 3, now=100.5) == 0.0  # one token after 1/rate s
    assert buckets.take(0, "k1", 2.0, 3, now=1000.0) == 0.0  # refilled, capped at the burst
    assert [buckets.take(0, "k1", 2.0, 3, now=1000.0) for _ in range(3)][-1] > 0
    assert buckets.take(1, "k2", 2.0, 3, now=1000.0) == 0.0  # another key, another bucket
    assert buckets.take(0, "k3", 2.0, 1, now=1000.0) == 0.0  # a new key in a reused slot: full
    assert buckets.take(0, "k3", 2.0, 1, now=999.0) > 0  # an older clock reading: no refill
    assert buckets.take(0, "k3", 2.0, 1, now=5.0) == 0.0  # the clock restarted: start over


def _hammer(directory: str, ready: Any, go: Any, until: Any, out: Any) -> None:
    buckets = SharedBuckets(directory)
    ready.put(True)
    go.wait(60)
    granted = 0
    while time.monotonic() < until.value:
        granted += buckets.take(7, "shared", rate=50.0, burst=20, now=time.monotonic()) == 0.0
    out.put(granted)


def test_processes_share_one_budget(tmp_path: Path) -> None:
    """Four processes together get burst + rate x time, not four times that."""
    context = multiprocessing.get_context("spawn")
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    until = context.Value("d", 0.0)
    args = (str(tmp_path), ready, go, until, results)
    procs = [context.Process(target=_hammer, args=args) for _ in range(4)]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=120)
    full = time.monotonic()
    SharedBuckets(tmp_path).take(7, "shared", 50.0, 20, now=full)  # the bucket starts full
    until.value = full + 1.0
    go.set()
    granted = sum(results.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join(timeout=30)
    assert granted <= 19 + 50 * 1.0 + 1  # the burst (one taken above) and a second of rate
    assert granted >= 19  # they did get through
