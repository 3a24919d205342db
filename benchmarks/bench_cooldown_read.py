"""Exposure cool-down: what serving pays per request to know what rests, by listener history.

For each history (lists already shown to one listener, ``--histories``; 10 artists each, the
model's own top 10, so all of them rest) this times, per request:

- ``from scratch``: :func:`musicrec.serving.exposure.read_resting`, which reads the latest
  10,000 impressions and the listener's plays on every call (serving before the kept state);
- ``kept``: :func:`musicrec.serving.exposure.resting` as serving calls it, after one more
  list was logged (5 s after the previous one, as a listener paging through lists), so every
  call counts a new list into the worker's kept state.

The listener has one play event (their plays are read). Prints a Markdown table of median and
p90 microseconds per call over ``--calls`` calls; SQLite event store in a temporary folder.

Usage::

    python benchmarks/bench_cooldown_read.py --model MODEL
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from musicrec.events.impressions import pack, write_impressions
from musicrec.events.schema import Event
from musicrec.events.store import EventStore
from musicrec.rules import CoolDown
from musicrec.serving.exposure import read_resting, resting
from musicrec.serving.recommender import Recommender

POLICY = CoolDown(shows=3, days=7)
K = 10


def one_history(rec: Recommender, folder: Path, lists: int, calls: int) -> tuple[float, ...]:
    """Median and p90 (us) of a call from scratch and of a kept one, ``lists`` lists in."""
    store = EventStore(f"sqlite:///{folder / f'events-{lists}.db'}")
    user = rec.sample_users(1)[0]
    top = [r.artist for r in rec.recommend_user(user, K)]
    now = time.time()
    store.append(
        [Event(user, str(rec.catalogue.names[0]), "play", timestamp=int(now - 30 * 86400))]
    )
    rows = []
    for n in range(lists):
        at = now - 3600 - 60 * (lists - n)
        rows += [pack(f"h{n}", user, top, [1.0] * K, "v", at=at)]
    for start in range(0, len(rows), 5_000):
        write_impressions(store, rows[start : start + 5_000])
    version = store.listener_version(user)
    scratch = np.empty(calls)
    for i in range(calls):
        started = time.perf_counter()
        assert read_resting(store, rec, user, POLICY, now).held
        scratch[i] = time.perf_counter() - started
    kept = np.empty(calls)
    assert resting(store, rec, user, POLICY, now, version=version).held  # the state, read once
    for i in range(calls):
        at = now + 5 * (i + 1)
        write_impressions(store, [pack(f"n{i}", user, top, [1.0] * K, "v", at=at)])
        started = time.perf_counter()
        assert resting(store, rec, user, POLICY, at, version=version).held
        kept[i] = time.perf_counter() - started
    return tuple(float(np.percentile(x * 1e6, q)) for x in (scratch, kept) for q in (50, 90))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="Model artifact directory.")
    parser.add_argument("--histories", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--calls", type=int, default=200, help="Timed calls per history.")
    args = parser.parse_args()
    rec = Recommender.load(args.model)
    print(f"- model: {args.model.name}, {rec.catalogue.names.shape[0]} artists")
    print(f"- machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at start")
    print()
    print("| lists shown before | from scratch p50 us | p90 | kept p50 us | p90 |")
    print("|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for lists in args.histories:
            s50, s90, k50, k90 = one_history(rec, Path(tmp), lists, args.calls)
            print(f"| {lists} | {s50:.0f} | {s90:.0f} | {k50:.0f} | {k90:.0f} |", flush=True)
    print(f"\nload {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
