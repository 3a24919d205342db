"""Is the promotion gate calibrated? A/A twins and a clearly worse model on HetRec Last.fm-2K.

    python benchmarks/gate_calibration.py [--data PATH_TO_hetrec2011-lastfm-2k] [--seeds 20]
    python benchmarks/gate_calibration.py --measure [--seeds 20]

For each seed i, a champion (default config, seed 1000+i) is compared on the same test users
with an A/A twin (the same config, seed 2000+i) and with a clearly worse model (4 factors,
1 sweep, seed 3000+i). Prints how often each passes the non-inferiority and the superiority gate
with the default settings (:mod:`musicrec.pipeline.gate`).

``--measure`` uses other seeds (champion 100+2i, twin 101+2i) to measure what the defaults are
picked from: the spread of the twins' NDCG@10 difference and of its interval's lower bound,
the twins' relative change of coverage@10 and novelty@10, and their segment p-values.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from musicrec.config import TrainConfig
from musicrec.data.dataset import Dataset
from musicrec.data.prepare import PrepareConfig, prepare
from musicrec.models.kinds import build
from musicrec.pipeline.beyond import ItemSpace
from musicrec.pipeline.compare import compare_scores
from musicrec.pipeline.gate import GUARDED, PRIMARY, GateConfig, decide, segment_check
from musicrec.pipeline.userscores import UserScores, score_users

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lastfm-2k"
WORSE = {"factors": 4, "iterations": 1}


def scored(dataset: Dataset, config: TrainConfig, items: ItemSpace | None) -> UserScores:
    model = build(config).fit(dataset.train)
    if items is None:
        items = ItemSpace.build(dataset.train, dataset.tags, model.similar_items)
    scores = score_users(model, dataset.train, dataset.test, (10,), items)
    scores.fingerprint = dataset.fingerprint
    return scores


def outcomes(champion: UserScores, candidate: UserScores) -> dict[str, object]:
    """Both gate modes on one comparison, plus the numbers the defaults are read from."""
    base = GateConfig()
    comparison = compare_scores(
        champion, candidate, [PRIMARY, *GUARDED], base.resamples, base.permutations, base.seed
    )
    modes = [GateConfig(mode="non-inferiority"), GateConfig(mode="superiority")]
    ni, sup = (decide(comparison, segment_check(champion, candidate, c), c) for c in modes)
    segments = sup.checks[-1]  # tested against 0: what the twins' seed noise looks like
    ndcg = comparison.metrics[PRIMARY]
    rel = {name: comparison.metrics[name].low / comparison.metrics[name].a for name in GUARDED}
    holm = [v for v in segments.numbers.values() if isinstance(v, float)]
    return {
        "ni": ni.passed,
        "sup": sup.passed,
        "ni_failed": [c.name for c in ni.checks if not c.passed],
        "diff": ndcg.difference,
        "low": ndcg.low,
        "half": (ndcg.high - ndcg.low) / 2,
        "p_t": ndcg.p_value_t,
        "coverage_low": rel["coverage@10"],
        "novelty_low": rel["novelty@10"],
        "min_segment_p": min(holm) if holm else float("nan"),
    }


def describe(values: list[float]) -> str:
    arr = np.asarray(values)
    return (
        f"mean {arr.mean():+.4f}, sd {arr.std(ddof=1):.4f}, min {arr.min():+.4f}, "
        f"max {arr.max():+.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--measure", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        prepare("hetrec2k", args.data, Path(tmp) / "ds", PrepareConfig())
        dataset = Dataset.load(Path(tmp) / "ds")
        rows = []
        for i in range(args.seeds):
            first, second = (100 + 2 * i, 101 + 2 * i) if args.measure else (1000 + i, 2000 + i)
            champion = scored(dataset, TrainConfig(seed=first), None)
            twin = scored(dataset, TrainConfig(seed=second), None)
            row = {"seed": i, "twin": outcomes(champion, twin)}
            if not args.measure:
                worse = scored(dataset, TrainConfig(seed=3000 + i, **WORSE), None)
                row["worse"] = outcomes(champion, worse)
            rows.append(row)
            print(f"seed {i}: twin {row['twin']}", flush=True)
    twins = [r["twin"] for r in rows]
    n = len(rows)
    load = os.getloadavg()
    print(
        f"\nHetRec Last.fm-2K, default split; {n} seeds; {time.perf_counter() - started:.0f} s; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(f"twin NDCG@10 difference:           {describe([t['diff'] for t in twins])}")
    print(f"twin 95% interval half-width:      {describe([t['half'] for t in twins])}")
    print(f"twin interval lower bound:         {describe([t['low'] for t in twins])}")
    print(f"twin paired-t p < 0.05:            {sum(t['p_t'] < 0.05 for t in twins)}/{n}")
    print(f"twin coverage@10 lower bound/champion: {describe([t['coverage_low'] for t in twins])}")
    print(f"twin novelty@10 lower bound/champion:  {describe([t['novelty_low'] for t in twins])}")
    print(f"twin lowest segment Holm p:        {describe([t['min_segment_p'] for t in twins])}")
    if args.measure:
        lows = np.asarray([t["low"] for t in twins])
        spread = 2.326 * lows.std(ddof=1)  # 1st and 99th percentiles of a normal fit
        print(f"1st percentile of the twins' lower bound (-delta): {lows.mean() - spread:+.4f}")
        print(f"99th percentile of the twins' lower bound (margin): {lows.mean() + spread:+.4f}")
        for name in ("coverage_low", "novelty_low"):
            rel = np.asarray([t[name] for t in twins])
            print(
                f"1st percentile of the twins' {name}: {rel.mean() - 2.326 * rel.std(ddof=1):+.4f}"
            )
        return
    worse = [r["worse"] for r in rows]
    print("| gate | twin passes | worse model passes |")
    print("|---|---|---|")
    print(
        f"| non-inferiority (delta {GateConfig().delta}) | {sum(t['ni'] for t in twins)}/{n} "
        f"| {sum(w['ni'] for w in worse)}/{n} |"
    )
    print(
        f"| superiority (margin {GateConfig().margin}) | {sum(t['sup'] for t in twins)}/{n} "
        f"| {sum(w['sup'] for w in worse)}/{n} |"
    )
    failed = [c for t in twins for c in t["ni_failed"]]
    print(f"checks that stopped a twin under non-inferiority: {sorted(set(failed)) or 'none'}")
    print(f"worse model NDCG@10 difference:    {describe([w['diff'] for w in worse])}")
    stopped = [set(w["ni_failed"]) for w in worse]
    print(
        f"checks that stopped the worse model in every seed: {sorted(set.intersection(*stopped))}"
    )


if __name__ == "__main__":
    main()
