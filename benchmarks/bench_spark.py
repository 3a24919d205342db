"""Spark MLlib ALS against implicit: training time and NDCG@10 on the same data.

    python benchmarks/bench_spark.py scale                       # synthetic 5k / 20k / 50k users
    python benchmarks/bench_spark.py scale --users 5000 --master "local[2]"
    python benchmarks/bench_spark.py regmap [--data PATH_TO_hetrec2011-lastfm-2k]

``scale`` times both engines on synthetic Last.fm-360K-format data at several sizes, in one
process: implicit's ``fit`` and Spark's (one session, warmed up by an untimed fit first; the
session start-up is printed separately). ``regmap`` compares Spark ``regParam`` mappings with
implicit's ``regularization`` on real HetRec Last.fm-2K data. Both print Markdown tables.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from musicrec.config import TrainConfig
from musicrec.data.dataset import Dataset
from musicrec.data.prepare import PrepareConfig, prepare
from musicrec.data.synth import synthesize
from musicrec.models.als import Factors, fit_als
from musicrec.models.exact import FactorRanker
from musicrec.models.spark_als import fit_spark, spark_reg_param, spark_session
from musicrec.pipeline.evaluate import evaluate_ranker

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lastfm-2k"


def machine_info(master: str) -> str:
    import implicit
    import pyspark

    try:
        java = subprocess.run(
            ["java", "-version"], capture_output=True, text=True, check=False
        ).stderr.splitlines()[0]
    except (OSError, IndexError):
        java = "java: unknown"
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{mem_gib:.0f} GiB RAM; Python {platform.python_version()}, implicit "
        f"{implicit.__version__}, pyspark {pyspark.__version__} ({master}), {java}; "
        f"load average at start {os.getloadavg()[0]:.1f} (the machine may be shared)"
    )


def ndcg10(dataset: Dataset, factors: Factors) -> float:
    ranker = FactorRanker(factors.user_factors, factors.item_factors)
    metrics, _ = evaluate_ranker(ranker.rank, dataset.train, dataset.test, (10,))
    return metrics["ndcg@10"]


def timed(fit: Callable[[], Factors]) -> tuple[Factors, float]:
    started = time.perf_counter()
    factors = fit()
    return factors, time.perf_counter() - started


def synthetic_dataset(work: Path, n_users: int) -> Dataset:
    raw, out = work / f"raw-{n_users}", work / f"ds-{n_users}"
    synthesize(raw, n_users=n_users, n_artists=max(2500, n_users // 2), seed=0)
    prepare("lastfm360k", raw, out, PrepareConfig())
    return Dataset.load(out)


def scale(args: argparse.Namespace) -> None:
    config = TrainConfig(factors=args.factors, iterations=args.iterations)
    print(machine_info(args.master))
    print(
        f"config: factors {config.factors}, iterations {config.iterations}, weighting "
        f"{config.weighting}, alpha {config.alpha}, regularization {config.regularization} "
        "(Spark regParam = regularization / mean ratings per user)\n",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="musicrec-bench-spark-") as tmp:
        work = Path(tmp)
        datasets = [synthetic_dataset(work, n) for n in args.users]
        started = time.perf_counter()
        with spark_session(args.master) as spark:
            start_s = time.perf_counter() - started
            print(f"Spark session start-up: {start_s:.1f} s", flush=True)
            _, warm_s = timed(lambda: fit_spark(datasets[0], config))
            print(f"untimed warm-up fit (JIT) on the first size: {warm_s:.1f} s\n", flush=True)
            for dataset in datasets:
                implicit_f, implicit_s = timed(lambda ds=dataset: fit_als(ds.train, config))
                spark_f, spark_s = timed(lambda ds=dataset: fit_spark(ds, config))
                n_users, n_items = dataset.shape
                row = (
                    f"| {n_users:,} | {n_items:,} | {dataset.train.nnz:,} | {implicit_s:.1f} | "
                    f"{spark_s:.1f} | {spark_s / implicit_s:.0f}x | "
                    f"{ndcg10(dataset, implicit_f):.4f} | {ndcg10(dataset, spark_f):.4f} | "
                    f"{os.getloadavg()[0]:.1f} |"
                )
                rows.append(row)
                print(row, flush=True)
            master = spark.sparkContext.master
    print(f"\nsynthetic Last.fm-360K-format data, Spark master {master}\n")
    print(
        "| users | artists | train rows | implicit fit s | Spark fit s | Spark/implicit | "
        "NDCG@10 implicit | NDCG@10 Spark | load avg |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


def regmap(args: argparse.Namespace) -> None:
    print(machine_info(args.master))
    with tempfile.TemporaryDirectory(prefix="musicrec-bench-spark-") as tmp:
        prepare("hetrec2k", args.data, Path(tmp) / "ds", PrepareConfig())
        dataset = Dataset.load(Path(tmp) / "ds")
        n_users, n_items = dataset.shape
        nnz = dataset.train.nnz
        per_user, per_item = nnz / n_users, nnz / n_items
        print(
            f"HetRec Last.fm-2K, default split: {n_users:,} users, {n_items:,} artists, "
            f"{nnz:,} train rows ({per_user:.1f} per user, {per_item:.1f} per artist); "
            "weighting log1p, alpha 2, 64 factors, 15 iterations\n",
            flush=True,
        )
        seeds = [ndcg10(dataset, fit_als(dataset.train, TrainConfig(seed=s))) for s in (42, 1, 2)]
        print(
            "implicit, regularization 0.1, seeds 42/1/2: NDCG@10 "
            + " / ".join(f"{v:.4f}" for v in seeds)
            + "\n",
            flush=True,
        )
        rows = []
        with spark_session(args.master):
            fit_spark(dataset, TrainConfig(iterations=2))  # untimed JIT warm-up
            for reg in args.regs:
                config = TrainConfig(regularization=reg)
                implicit_ndcg = ndcg10(dataset, fit_als(dataset.train, config))
                mapped = spark_reg_param(reg, nnz, n_users)
                spark_ndcg = ndcg10(dataset, fit_spark(dataset, config))
                row = (
                    f"| {reg:g} | {implicit_ndcg:.4f} | {mapped:.4g} | {spark_ndcg:.4f} | "
                    f"{spark_ndcg / implicit_ndcg - 1:+.1%} |"
                )
                rows.append(row)
                print(row, flush=True)
            alternatives = {
                "regularization / mean ratings per user (default)": 0.1 / per_user,
                "regularization / mean ratings per artist": 0.1 / per_item,
                "regularization / geometric mean of both": 0.1 / math.sqrt(per_user * per_item),
                "regularization, unscaled": 0.1,
            }
            alt_rows = []
            for label, value in alternatives.items():
                factors = fit_spark(dataset, TrainConfig(), reg_param=value)
                alt_rows.append(f"| {label} | {value:.4g} | {ndcg10(dataset, factors):.4f} |")
                print(alt_rows[-1], flush=True)
    print("\nimplicit regularization vs Spark regParam = regularization / mean ratings per user\n")
    print(
        "| regularization | NDCG@10 implicit | Spark regParam | NDCG@10 Spark | Spark vs implicit |"
    )
    print("|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print("\nmappings of implicit's default regularization 0.1\n")
    print("| Spark regParam | value | NDCG@10 Spark |")
    print("|---|---:|---:|")
    print("\n".join(alt_rows))


def main() -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--master", default="local[*]", help="Spark master URL")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_scale = sub.add_parser("scale", parents=[common], help="time at several synthetic sizes")
    p_scale.add_argument("--users", type=int, nargs="+", default=[5_000, 20_000, 50_000])
    p_scale.add_argument("--factors", type=int, default=64)
    p_scale.add_argument("--iterations", type=int, default=15)
    p_reg = sub.add_parser("regmap", parents=[common], help="regParam mappings on Last.fm-2K")
    p_reg.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p_reg.add_argument("--regs", type=float, nargs="+", default=[0.1, 1.0, 3.0, 10.0, 30.0])
    args = parser.parse_args()
    if args.command == "scale":
        scale(args)
    else:
        regmap(args)


if __name__ == "__main__":
    main()
