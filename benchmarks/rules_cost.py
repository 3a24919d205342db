"""What the rule chain adds to a request: k = 50 from 500 candidates, at full catalogue scale.

    python benchmarks/rules_cost.py --model MODEL_DIR [--users 300] [--k 50] [--candidates 500]

For ``--users`` listeners of the model (seeded sample) the candidates are the exact top
``--candidates`` unplayed artists by the model's score (computed before timing). Each listener
gets a state as serving would build it: their training artists (played), 5 bans (2 of them
expired), events on 20 of their artists in the last 10 days, and 30 artists shown 0-5 times.
The chain then runs, single-threaded (BLAS limited to one thread, like one API worker), for
each setting below; the table gives p50 / p99 / max milliseconds over every call, as wall time
and as the process's CPU time for the call (on a busy machine the wall time also counts the
time the process waited for a core; the CPU time does not), and for the settings with
diversity how many candidates it chose among (the similarity's size per call: median / p90 /
max). Target: p99 <= 2 ms at k = 50 from 500 candidates. The cost of fetching 500 instead of
k candidates from the model's index is not part of this figure.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from musicrec.rules import (
    Candidates,
    CoolDown,
    Dials,
    Exposure,
    ItemMeta,
    ListenerState,
    apply_rules,
    cosine,
)

NOW = 1_800_000_000.0
DAY = 86_400.0
REPEATS = 3


def item_meta(model: Path) -> tuple[ItemMeta, pd.Series]:
    items = pd.read_parquet(model / "items.parquet", columns=["listeners"])
    tags = pd.read_parquet(model / "tags.parquet")
    codes, names = pd.factorize(tags["tag"])
    meta = ItemMeta.build(
        items["listeners"].to_numpy(),
        tags["item_idx"].to_numpy(),
        codes,
        tags["weight"].to_numpy(),
        list(names),
    )
    return meta, tags["tag"].value_counts()


def candidates(
    user_vector: np.ndarray, items: np.ndarray, played: np.ndarray, n: int
) -> Candidates:
    scores = items @ user_vector
    scores[played] = -np.inf
    top = np.argpartition(-scores, n)[:n]
    top = top[np.argsort(-scores[top], kind="stable")]
    return Candidates.of(top, scores[top])


def listener(row: sp.csr_matrix, n_items: int, rng: np.random.Generator) -> ListenerState:
    played, weights = row.indices.astype(np.int64), row.data
    bans = rng.choice(n_items, 5, replace=False)
    until = np.array([np.inf, np.inf, NOW + DAY, NOW - DAY, NOW - 2 * DAY])
    recent = rng.choice(played, min(20, len(played)), replace=False)
    shown = rng.choice(n_items, 30, replace=False)
    exposure = Exposure(shown, rng.integers(0, 6, 30), NOW - rng.random(30) * 10 * DAY)
    recent_at = NOW - rng.random(len(recent)) * 10 * DAY
    return ListenerState.of(played, weights, bans, until, recent, recent_at, exposure)


def settings(meta: ItemMeta, common_tags: pd.Series, rng: np.random.Generator) -> dict[str, Dials]:
    code = {name: c for c, name in enumerate(meta.tag_names)}
    excluded = tuple(code[t] for t in common_tags.index[:2])
    included = tuple(code[t] for t in common_tags.index[2:12])
    filters = {
        "exclude_artists": tuple(rng.choice(meta.n_items, 5, replace=False).tolist()),
        "exclude_tags": excluded,
        "exclude_recent_days": 7.0,
        "cooldown": CoolDown(),
    }
    return {
        "neutral (bans only)": Dials(),
        "filters": Dials(**filters),
        "include_tags (10)": Dials(include_tags=included),
        "max_per_tag=2": Dials(max_per_tag=2),
        "discovery=0.5": Dials(discovery=0.5),
        "diversity=0.5": Dials(diversity=0.5),
        "familiar_share=0.2": Dials(familiar_share=0.2),
        "everything": Dials(
            **filters, max_per_tag=2, diversity=0.5, discovery=0.5, familiar_share=0.2
        ),
    }


def pool(sizes: list[int]) -> str:
    if not sizes:
        return "—"
    median, p90 = np.percentile(sizes, [50, 90])
    return f"{median:.0f} / {p90:.0f} / {max(sizes)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--candidates", type=int, default=500)
    args = parser.parse_args()
    rng = np.random.default_rng(42)
    items = np.load(args.model / "item_factors.npy", mmap_mode="r")
    users = np.load(args.model / "user_factors.npy", mmap_mode="r")
    train = sp.load_npz(args.model / "train_matrix.npz").tocsr()
    meta, common_tags = item_meta(args.model)
    popularity = np.argsort(-meta.listeners, kind="stable")
    pairwise = cosine(items)
    pool_sizes: list[int] = []

    def similarity(ids: np.ndarray) -> np.ndarray:
        pool_sizes.append(len(ids))  # the candidates diversity chooses among
        return pairwise(ids)

    sample = rng.choice(np.flatnonzero(np.diff(train.indptr) > 0), args.users, replace=False)
    dense_items = np.asarray(items, dtype=np.float32)
    requests = []
    for user in sample:
        row = train[int(user)]
        state = listener(row, meta.n_items, rng)
        found = candidates(np.asarray(users[user]), dense_items, state.played, args.candidates)
        requests.append((found, state))
    print(
        f"model {args.model.name}: {meta.n_items:,} artists, {items.shape[1]} factors; "
        f"{args.users} listeners (median {int(np.median(np.diff(train.indptr)[sample]))} "
        f"played), k={args.k} from {args.candidates} candidates, {REPEATS} calls each; "
        f"loadavg {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print()
    print(
        "| setting | p50 ms | p99 ms | max ms | CPU p50 ms | CPU p99 ms | listed (mean) "
        "| diversity pool |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with threadpool_limits(1):
        for found, state in requests[:20]:  # warm caches and allocator before timing
            apply_rules(found, args.k, meta=meta, popularity=popularity, now=NOW, listener=state)
        for name, dials in settings(meta, common_tags, rng).items():
            times, cpu, sizes = [], [], []
            pool_sizes.clear()
            for found, state in requests * REPEATS:
                started, started_cpu = time.perf_counter(), time.process_time()
                result = apply_rules(
                    found,
                    args.k,
                    meta=meta,
                    popularity=popularity,
                    now=NOW,
                    listener=state,
                    dials=dials,
                    similarity=similarity,
                )
                times.append(time.perf_counter() - started)
                cpu.append(time.process_time() - started_cpu)
                sizes.append(len(result))
            ms, cpu_ms = 1000 * np.asarray(times), 1000 * np.asarray(cpu)
            print(
                f"| {name} | {np.percentile(ms, 50):.2f} | {np.percentile(ms, 99):.2f} "
                f"| {ms.max():.2f} | {np.percentile(cpu_ms, 50):.2f} "
                f"| {np.percentile(cpu_ms, 99):.2f} | {np.mean(sizes):.1f} | {pool(pool_sizes)} |"
            )
    print(f"\nloadavg after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
