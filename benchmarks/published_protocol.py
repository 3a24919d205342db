"""musicrec next to published tables, on their protocols, over 5 split seeds, through the CLI.

    python benchmarks/published_protocol.py lastfm2k --seeds 0,1,2,3,4 --work DIR   # runs seeds
    python benchmarks/published_protocol.py lastfm2k --report --work DIR           # the table

Each seed runs, as a user would:

1. ``musicrec data prepare`` with the dataset's published protocol and that split seed;
2. ``musicrec tune`` with the same trial budget for every seed (the search sees only the
   validation part: the dataset's own one under ``ratio``, else one carved from train), which
   trains the winner on the train part only and evaluates it once on test;
3. ``musicrec evaluate --json`` on the tuned model (the figures reported; they must equal what
   tune recorded).

Seeds already done in ``--work`` are skipped, so a long benchmark runs in chunks. The report
gives each seed's test NDCG@10 / Recall@10 and a 95 % Student-t interval over the seeds
(``scipy.stats``), beside the published table, with the load average of each run.

Datasets and protocols:

- ``lastfm2k``: HetRec 2011 Last.fm-2K, RecBole's protocol as RecBole-GNN's
  ``results/social/lastfm.md`` ran it: binary, no filtering, per-user random 8:1:1 with
  RecBole's rounding, full ranking with train and validation items excluded.
- ``ml100k``: MovieLens-100K (from the RecBole wheel on PyPI, see ``movielens100k.py``),
  Microsoft Recommenders' benchmark protocol: every rating an interaction, per-user random
  75/25 (``python_stratified_split``), full ranking with train items excluded, k = 10.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from movielens100k import fetch_ml100k  # noqa: E402  (sibling script)

MUSICREC = Path(os.environ.get("MUSICREC", HERE.parent / ".venv" / "bin" / "musicrec"))
DEFAULT_KINDS = "dlae,als,rp3beta"
DEFAULT_TRIALS = 60


@dataclass(frozen=True)
class Published:
    """One row of a published table."""

    method: str
    ndcg: float
    recall: float | None
    note: str = ""


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    source: str
    prepare: tuple[str, ...]
    protocol: str
    citation: str
    published: tuple[Published, ...]
    goal: float  # the best published NDCG@10 the interval's lower bound should clear


BENCHMARKS = {
    "lastfm2k": Benchmark(
        "lastfm2k",
        "HetRec 2011 Last.fm-2K (1,892 users, 17,632 artists, 92,834 pairs)",
        "hetrec2k",
        ("--protocol", "ratio", "--ratios", "0.8,0.1,0.1", "--binary", "--no-filter"),
        "binary, no filtering, per-user random 8:1:1 (RecBole RS with its rounding), models "
        "chosen on validation NDCG@10, full ranking on test with train and validation items "
        "excluded",
        "RecBole-GNN, results/social/lastfm.md (RUCAIBox/RecBole-GNN, commit 16f7a39), "
        "embedding size 64, learning rate and layers tuned on validation",
        (
            Published("MHCN (uses the friendship graph)", 0.2068, 0.2123),
            Published("SEPT (uses the friendship graph)", 0.2057, 0.2127),
            Published("LightGCN", 0.1972, 0.2064),
            Published("NGCF", 0.1898, 0.1960),
            Published("DiffNet (uses the friendship graph)", 0.1694, 0.1757),
            Published("BPR", 0.1674, 0.1761),
            Published("NeuMF", 0.1604, 0.1696),
        ),
        0.2068,
    ),
    "ml100k": Benchmark(
        "ml100k",
        "MovieLens-100K (943 users, 1,682 movies, 100,000 ratings)",
        "csv",
        ("--protocol", "stratified", "--test-fraction", "0.25", "--binary", "--no-filter"),
        "every rating an interaction, per-user random 75/25 (round-half-even train share), "
        "models tuned on a validation split carved from train, full ranking on test with "
        "train items excluded",
        "Microsoft Recommenders README, algorithm comparison on MovieLens 100k "
        "(recommenders-team/recommenders, README at commit 005dcd0), "
        "python_stratified_split(ratio=0.75, seed=42), k=10, one split, parameters from the "
        "literature, 15 epochs",
        (
            Published("BiVAE", 0.475077, 0.219145),
            Published("BPR (cornac)", 0.441997, 0.212522),
            Published("LightGCN", 0.419846, 0.144336),
            Published("NCF", 0.396118, 0.180775),
            Published("SAR", 0.382461, 0.176385),
        ),
        0.475077,
    ),
}


def load_average() -> list[str]:
    """The 1, 5 and 15 minute load averages, as /proc/loadavg has them."""
    path = Path("/proc/loadavg")
    return path.read_text().split()[:3] if path.exists() else ["n/a"]


def run(command: list[str], log: Path) -> None:
    """Run one CLI step; its output goes to ``log`` (failures show its tail)."""
    with log.open("a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = log.read_text().splitlines()[-20:]
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n" + "\n".join(tail))


def raw_input(bench: Benchmark, args: argparse.Namespace) -> Path:
    if bench.name == "ml100k":
        return fetch_ml100k(args.cache)
    return args.data


def run_seed(bench: Benchmark, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """prepare -> tune -> evaluate for one split seed; returns the seed's record."""
    work = args.work / bench.name / f"seed-{seed}"
    shutil.rmtree(work, ignore_errors=True)  # an unfinished earlier attempt
    work.mkdir(parents=True)
    log = work / "log.txt"
    env_uri = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = env_uri
    load_before = load_average()
    started = time.perf_counter()
    dataset, tuned = work / "dataset", work / "tune"
    mr, data = str(MUSICREC), str(raw_input(bench, args))
    prepare = ["data", "prepare", "--source", bench.source, "--input", data, "--out", str(dataset)]
    run([mr, *prepare, *bench.prepare, "--seed", str(seed)], log)
    budget = ["--kinds", args.kinds, "--trials", str(args.trials), "--seed", str(seed)]
    run([mr, "tune", "--data", str(dataset), *budget, "--out", str(tuned)], log)
    report = work / "evaluate.json"
    model = ["--model", str(tuned / "model"), "--json", "--no-track", "--no-record"]
    run([mr, "evaluate", "--data", str(dataset), *model, "--output", str(report)], log)
    metrics = json.loads(report.read_text())
    manifest = json.loads((tuned / "model" / "manifest.json").read_text())
    recorded = manifest["metrics"]["ndcg@10"]
    if abs(recorded - metrics["ndcg@10"]) > 1e-9:
        raise SystemExit(f"seed {seed}: evaluate {metrics['ndcg@10']} != tune's {recorded}")
    stats = json.loads((dataset / "stats.json").read_text())
    trials = (tuned / "trials.csv").read_text().splitlines()
    record = {
        "seed": seed,
        "ndcg@10": metrics["ndcg@10"],
        "recall@10": metrics["recall@10"],
        "popularity_ndcg@10": metrics["popularity"]["ndcg@10"],
        "users_evaluated": metrics["users_evaluated"],
        "best": manifest["params"],
        "best_validation_ndcg@10": _best_validation(tuned / "best.yaml"),
        "trials": len(trials) - 1,
        "kinds": args.kinds,
        "trial_budget": args.trials,
        "kept": stats["kept"],
        "protocol": stats["protocol"],
        "seconds": round(time.perf_counter() - started, 1),
        "load_before": load_before,
        "load_after": load_average(),
    }
    (work / "result.json").write_text(json.dumps(record, indent=2, sort_keys=True))
    return record


def _best_validation(path: Path) -> float | None:
    for line in path.read_text().splitlines():
        if line.startswith("# validation NDCG@10"):
            return float(line.split()[3])
    return None


def interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95 % Student-t interval over seeds (``scipy.stats.t``).

    ``musicrec.stats`` bootstraps over listeners; over five seeds a percentile bootstrap is
    too narrow (it cannot reach past the extreme seeds), so the seeds get a t interval at the
    same confidence.
    """
    from scipy import stats as scipy_stats

    from musicrec.stats import CONFIDENCE

    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    scale = scipy_stats.sem(values)
    low, high = scipy_stats.t.interval(CONFIDENCE, len(values) - 1, loc=mean, scale=scale)
    return mean, float(low), float(high)


def report(bench: Benchmark, work: Path) -> str:
    """The Markdown table: every seed, the interval, the published rows."""
    records = sorted(
        (json.loads(p.read_text()) for p in (work / bench.name).glob("seed-*/result.json")),
        key=lambda r: r["seed"],
    )
    if not records:
        raise SystemExit(f"no finished seeds under {work / bench.name}")
    lines = [
        f"### {bench.title}",
        "",
        f"Protocol: {bench.protocol}. Published: {bench.citation}.",
        f"musicrec: `musicrec tune --kinds {records[0]['kinds']} --trials "
        f"{records[0]['trial_budget']}` per split seed; figures from `musicrec evaluate`.",
        "",
        "| split seed | chosen model | valid NDCG@10 | test NDCG@10 | test Recall@10 | "
        "popularity NDCG@10 | seconds | load avg (1/5/15 min, before) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['seed']} | {_describe(r['best'])} | {r['best_validation_ndcg@10']:.4f} | "
            f"{r['ndcg@10']:.4f} | {r['recall@10']:.4f} | {r['popularity_ndcg@10']:.4f} | "
            f"{r['seconds']:.0f} | {' '.join(r['load_before'])} |"
        )
    ndcg = interval([r["ndcg@10"] for r in records])
    recall = interval([r["recall@10"] for r in records])
    lines += [
        "",
        "| method | NDCG@10 | Recall@10 |",
        "|---|---|---|",
        f"| **musicrec, mean over {len(records)} split seeds [95 % t interval]** | "
        f"**{ndcg[0]:.4f}** [{ndcg[1]:.4f}, {ndcg[2]:.4f}] | "
        f"**{recall[0]:.4f}** [{recall[1]:.4f}, {recall[2]:.4f}] |",
    ]
    for row in bench.published:
        recall_text = f"{row.recall:.4f}" if row.recall is not None else "-"
        lines.append(f"| {row.method} (published, one split) | {row.ndcg:.4f} | {recall_text} |")
    lines += ["", *per_kind(work / bench.name, [r["seed"] for r in records])]
    margin = ndcg[1] - bench.goal
    verdict = "above" if margin > 0 else "below"
    lines += [
        "",
        f"Lower bound of the interval {ndcg[1]:.4f}: {abs(margin):.4f} {verdict} the best "
        f"published NDCG@10 ({bench.goal:.4f}).",
    ]
    return "\n".join(lines)


def per_kind(work: Path, seeds: list[int]) -> list[str]:
    """Best validation NDCG@10 of each kind's search (and of the blends), mean over seeds."""
    best: dict[str, list[float]] = {}
    for seed in seeds:
        with (work / f"seed-{seed}" / "tune" / "trials.csv").open() as handle:
            rows = [row for row in csv.DictReader(handle) if row["state"] == "COMPLETE"]
        for kind in sorted({row["kind"] for row in rows}):
            values = [float(row["val_ndcg_at_10"]) for row in rows if row["kind"] == kind]
            best.setdefault(kind, []).append(max(values))
    lines = [
        "| searched kind | best validation NDCG@10, mean over seeds [min, max] |",
        "|---|---|",
    ]
    for kind, values in sorted(best.items(), key=lambda item: -sum(item[1])):
        mean = sum(values) / len(values)
        lines.append(f"| {kind} | {mean:.4f} [{min(values):.4f}, {max(values):.4f}] |")
    return lines


def _describe(params: dict[str, Any]) -> str:
    kind = params.get("kind", "?")
    if kind == "blend":
        first, second = params["first"], params["second"]
        return f"blend {first['kind']}+{second['kind']} w={params['blend_weight']:.2g}"
    shown = {k: v for k, v in params.items() if k in ("l2", "dropout", "factors", "weighting")}
    return (
        kind
        + " "
        + " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmark", choices=sorted(BENCHMARKS))
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--trials", type=int, default=DEFAULT_TRIALS)
    parser.add_argument("--kinds", default=DEFAULT_KINDS)
    parser.add_argument("--work", type=Path, required=True, help="Results and datasets.")
    parser.add_argument(
        "--data", type=Path, default=HERE.parents[1] / "shared" / "data" / "lastfm-2k"
    )
    parser.add_argument("--cache", type=Path, default=Path("data/raw/ml-100k"))
    parser.add_argument("--report", action="store_true", help="Print the table of done seeds.")
    args = parser.parse_args()
    bench = BENCHMARKS[args.benchmark]
    if args.report:
        print(report(bench, args.work))
        return
    for seed in (int(s) for s in args.seeds.split(",")):
        if (args.work / bench.name / f"seed-{seed}" / "result.json").exists():
            print(f"seed {seed}: done already")
            continue
        record = run_seed(bench, seed, args)
        print(
            f"seed {seed}: test NDCG@10 {record['ndcg@10']:.4f} recall@10 "
            f"{record['recall@10']:.4f} ({_describe(record['best'])}, {record['seconds']:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
