"""Model kinds at scale: train, evaluate every test user, and answer requests, per kind.

    python benchmarks/bench_kinds.py --data DATASET_DIR [--kinds itemknn,als] [--requests 500]

For each kind (default parameters; ALS with ``--factors``): the training time of ``musicrec
train``'s stage function, the time to evaluate every test user (NDCG@10 printed with it), the
serving runtime's load time and the in-process latency (p50/p99, ms) of user recommendations,
similar artists, a new listener's fold-in and a mood, over ``--requests`` distinct queries each.
Server-side latency: no HTTP; see benchmarks/bench_api.py and the wrk benchmark for that.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

from musicrec.config import TrainConfig
from musicrec.data.dataset import Dataset
from musicrec.models.artifact import ModelArtifact
from musicrec.pipeline.evaluate import evaluate_model
from musicrec.pipeline.train import train_model
from musicrec.serving.recommender import Recommender


def percentiles(samples: list[float]) -> str:
    ms = np.asarray(samples) * 1000
    return f"{np.percentile(ms, 50):.2f} / {np.percentile(ms, 99):.2f}"


def timed(calls: list) -> list[float]:  # type: ignore[type-arg]
    out = []
    for call in calls:
        started = time.perf_counter()
        call()
        out.append(time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--kinds", default="itemknn,als")
    parser.add_argument("--factors", type=int, default=128)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--out", type=Path, default=None, help="Keep the models here.")
    parser.add_argument(
        "--serve-only",
        action="store_true",
        help="reuse OUT/model-KIND from an earlier run: no training, no evaluation",
    )
    args = parser.parse_args()
    dataset = Dataset.load(args.data)
    n_users, n_items = dataset.shape
    pairs = dataset.train.nnz
    print(f"dataset {args.data}: {n_users:,} users x {n_items:,} items, {pairs:,} train pairs")
    print()
    print(
        "| kind | train s | evaluate s | NDCG@10 | load s "
        "| user p50/p99 ms | similar | listener | mood |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        for kind in args.kinds.split(","):
            config = TrainConfig.for_kind(kind)
            if kind == "als":
                config = config.override(factors=args.factors)
            model_dir = root / f"model-{kind}"
            train_s = eval_s = float("nan")
            if args.serve_only:
                ndcg = float(ModelArtifact.load(model_dir).manifest["metrics"]["ndcg@10"])
            else:
                started = time.perf_counter()
                train_model(dataset, model_dir, config)
                train_s = time.perf_counter() - started
                started = time.perf_counter()
                report = evaluate_model(args.data, model_dir, baselines=[], record=True)
                eval_s = time.perf_counter() - started
                ndcg = report.model["ndcg@10"]
            started = time.perf_counter()
            rec = Recommender.load(model_dir)
            load_s = time.perf_counter() - started
            users = rec.sample_users(args.requests)
            popular = rec.catalogue.by_popularity[: max(args.requests, 1000)]
            names = [str(rec.catalogue.names[i]) for i in rng.choice(popular, args.requests)]
            moods = [m for m, v in rec.moods.items() if v.available] or [None]
            for user in users[:50]:  # first touch of memory-mapped files
                rec.recommend_user(user, 10)
            user = timed([partial(rec.recommend_user, u, 10) for u in users])
            similar = timed([partial(rec.similar, n, 10) for n in names])
            listener = timed(
                [
                    partial(rec.recommend_listener, names[i : i + 5], None, 10)
                    for i in range(len(names) - 5)
                ]
            )
            mood = timed(
                [
                    partial(rec.recommend_mood, moods[i % len(moods)], 10)
                    for i in range(args.requests)
                ]
            )
            print(
                f"| {kind} | {train_s:.1f} | {eval_s:.1f} | {ndcg:.4f} | "
                f"{load_s:.1f} | {percentiles(user)} | {percentiles(similar)} | "
                f"{percentiles(listener)} | {percentiles(mood)} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
