"""What the intervals cost: evaluate with and without 1,000 bootstrap resamples of test users.

    python benchmarks/bench_evaluate.py [--data PATH_TO_hetrec2011-lastfm-2k] [--repeats 5]
    python benchmarks/bench_evaluate.py --dataset DATASET_DIR --model MODEL_DIR [--repeats 1]

HetRec Last.fm-2K (default): prepares the default split, trains the default ALS, then times
``evaluate_model`` (ranking every test user, every metric, the segments and the popularity
baseline) with ``bootstrap=0`` and ``bootstrap=1000``, alternating, and prints the medians and
their ratio. With ``--dataset`` / ``--model`` (e.g. the full-scale synthetic data) it evaluates
that model once and times the bootstrap summary on its per-user values (1,000 resamples against
none): the seconds the intervals add. ``--scipy`` also times ``scipy.stats.bootstrap`` on one
metric (NDCG@10) for comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from musicrec.config import TrainConfig
from musicrec.data.prepare import PrepareConfig, prepare
from musicrec.pipeline.evaluate import evaluate_model
from musicrec.pipeline.summary import columns, summarize
from musicrec.pipeline.train import train

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lastfm-2k"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def timed(function, *args, **kwargs) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - started


def scipy_seconds(values: np.ndarray) -> float:
    from scipy import stats

    return timed(
        stats.bootstrap,
        (values,),
        np.mean,
        n_resamples=1000,
        method="percentile",
        random_state=0,
        batch=max(1, (1 << 24) // len(values)),
    )


def hetrec(data: Path, repeats: int, with_scipy: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        dataset, model = Path(tmp) / "ds", Path(tmp) / "model"
        prepare("hetrec2k", data, dataset, PrepareConfig())
        train(dataset, model, TrainConfig())
        evaluate_model(dataset, model, record=False, bootstrap=0)  # warm caches and imports
        plain, boot = [], []
        for _ in range(repeats):
            plain.append(timed(evaluate_model, dataset, model, record=False, bootstrap=0))
            boot.append(timed(evaluate_model, dataset, model, record=False, bootstrap=1000))
        report = evaluate_model(dataset, model, record=False, bootstrap=0)
    a, b = statistics.median(plain), statistics.median(boot)
    print(f"HetRec Last.fm-2K, {report.n_users:,} test users, {repeats} runs each, {load()}")
    print(f"evaluate, no intervals:          median {a:.3f} s  (runs {_runs(plain)})")
    print(f"evaluate, 1,000 resamples:       median {b:.3f} s  (runs {_runs(boot)})")
    print(f"ratio: {b / a:.2f}x")
    if with_scipy and report.scores is not None:
        seconds = scipy_seconds(report.scores.values["ndcg@10"])
        print(f"scipy.stats.bootstrap, NDCG@10 alone, 1,000 resamples: {seconds:.3f} s")


def at_scale(dataset: Path, model: Path, repeats: int, with_scipy: bool) -> None:
    started = time.perf_counter()
    report = evaluate_model(dataset, model, record=False, bootstrap=0)
    evaluate_seconds = time.perf_counter() - started
    scores = report.scores
    assert scores is not None
    n_columns = len(columns(scores))
    none = [timed(summarize, scores, 0) for _ in range(repeats)]
    full = [timed(summarize, scores, 1000) for _ in range(repeats)]
    print(f"{dataset}: {len(scores.users):,} test users, {scores.n_items:,} artists, {load()}")
    print(f"evaluate without intervals: {evaluate_seconds:.1f} s")
    print(
        f"summary of {n_columns} per-user columns + coverage and Gini at K = {list(scores.ks)}: "
        f"no resamples {statistics.median(none):.2f} s, 1,000 resamples "
        f"{statistics.median(full):.2f} s (runs {_runs(full)})"
    )
    print(f"the bootstrap adds {statistics.median(full) - statistics.median(none):.1f} s")
    if with_scipy:
        seconds = scipy_seconds(scores.values["ndcg@10"])
        print(f"scipy.stats.bootstrap, NDCG@10 alone, 1,000 resamples: {seconds:.1f} s")


def _runs(values: list[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--dataset", type=Path)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scipy", action="store_true")
    args = parser.parse_args()
    if args.dataset and args.model:
        at_scale(args.dataset, args.model, args.repeats, args.scipy)
    else:
        hetrec(args.data, args.repeats, args.scipy)


if __name__ == "__main__":
    main()
