"""Replay's defaults, measured on HetRec 2011 Last.fm-2K without a server.

The end-to-end benchmark (``online_replay_lastfm2k.py``) serves every list through a real
``musicrec serve`` and takes minutes per setting; this one replays the same exploration in
process, so many settings and seeds fit in a few minutes. Prepares the dataset (default
split), trains the targets, and for every test listener takes the logging model's (default
ALS) top ``exploration_depth(10)`` = 50 candidates with their scores, as an exploring arm does
(``Recommender.recommend_user``, the ranking ``model_ranker`` replays). Then, for each
``--temperatures`` value and each of ``--seeds`` seeds, it samples ``max(--lists)`` lists of 10
per listener with :func:`musicrec.online.explore.sample_list` and draws plays from the
simulator's listener (:class:`musicrec.online.simulate.ListenerModel`: position ``i`` examined
with probability ``0.95 * 0.85**i``, a held-out artist played with probability 0.8, any other
with 0.02). For each number of lists in ``--lists`` (the first lists of each listener) it
replays every target with both estimators of :mod:`musicrec.online.explore`:

- ``pooled``: :func:`~musicrec.online.explore.snips` over all matched impressions;
- ``by-position``: :func:`~musicrec.online.explore.snips_by_position`, the SNIPS rate at
  each position, averaged over positions,

each on two logged propensities of the same lists: ``mc``, the Monte-Carlo marginals over
``--marginal-samples`` prefixes (:func:`~musicrec.online.explore.position_marginals`, the
former default), and ``exact`` (:func:`~musicrec.online.explore.position_matrix`),
and compares each with the target's exact expected listen-through under that listener model
(its own top 10 for each listener: the rate it would get served, without the noise of the
served plays). ``support`` is the share of the target's listed artists inside the logging
candidates.

Prints one Markdown table (per temperature, lists, estimator and target: the mean relative
error over seeds, i.e. the bias, and the largest absolute one), then a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from online_replay_lastfm2k import MODELS

from musicrec.data.dataset import Dataset
from musicrec.data.prepare import PrepareConfig, prepare
from musicrec.online.explore import (
    MARGINAL_SAMPLES,
    exploration_depth,
    log_weights,
    position_matrix,
    sample_list,
    sampling_scores,
    snips,
    snips_by_position,
)
from musicrec.online.simulate import ListenerModel, held_out
from musicrec.pipeline.train import train
from musicrec.serving.recommender import Recommender

K = 10
ESTIMATORS = ("pooled mc", "pooled exact", "by-position mc", "by-position exact")
REPO = Path(__file__).resolve().parents[1]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def expected_rates(lists: np.ndarray, relevant: np.ndarray, listener: ListenerModel) -> float:
    """Exact expected listen-through of ``lists`` (listeners x k item ids, -1 for none)."""
    chance = np.where(relevant, listener.play_relevant, listener.play_other)
    per_position = listener.examine(lists.shape[1])[None, :] * chance
    shown = lists >= 0
    return float((np.where(shown, per_position, 0).sum(1) / np.maximum(shown.sum(1), 1)).mean())


def log_lists(
    candidates: list[np.ndarray], scores: list[np.ndarray], relevant: list[set[int]], n_lists: int,
    temperature: float, seed: int, samples: int, listener: ListenerModel,
) -> dict[str, np.ndarray]:  # fmt: skip
    """``n_lists`` sampled lists per listener with their marginals and drawn plays."""
    rng = np.random.default_rng(seed)
    examine = listener.examine(K)
    fields = ("who", "list", "position", "item", "p", "exact", "reward")
    rows: dict[str, list[np.ndarray]] = {k: [] for k in fields}
    for who, (pool, score) in enumerate(zip(candidates, scores, strict=True)):
        order_scores = sampling_scores(score)
        matrix = position_matrix(log_weights(order_scores, temperature), np.arange(len(pool)), K)
        for n in range(n_lists):
            shown = sample_list(order_scores, K, temperature, rng, samples)
            items = pool[shown.order]
            chance = np.array([listener.play_relevant if i in relevant[who]
                               else listener.play_other for i in items])  # fmt: skip
            plays = rng.random(len(items)) < examine[: len(items)] * chance
            rows["who"].append(np.full(len(items), who))
            rows["list"].append(np.full(len(items), n))
            rows["position"].append(np.arange(len(items)))
            rows["item"].append(items)
            rows["p"].append(shown.marginal)
            rows["exact"].append(matrix[shown.order, np.arange(len(items))])
            rows["reward"].append(plays.astype(np.float64))
    return {k: np.concatenate(v) for k, v in rows.items()}


def estimates(logged: dict[str, np.ndarray], target: np.ndarray) -> dict[str, float]:
    """Both estimators, on the sampled (Monte-Carlo) and on the exact marginals."""
    out = {}
    for kind, column in (("mc", "p"), ("exact", "exact")):
        out[f"pooled {kind}"] = snips(logged["reward"], logged[column], target)
        out[f"by-position {kind}"] = snips_by_position(
            logged["position"], logged["reward"], logged[column], target
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "../shared/data/lastfm-2k")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--temperatures", default="0.5,1,2")
    parser.add_argument("--lists", default="3,5,10")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--marginal-samples", type=int, default=MARGINAL_SAMPLES)
    parser.add_argument("--listeners", type=int, default=0, help="0: every test listener")
    args = parser.parse_args()
    targets = args.models.split(",")
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[:3]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="musicrec-replay-defaults-") as tmp:
        work = Path(tmp)
        log("preparing HetRec-2K and training the models")
        prepare("hetrec2k", args.data, work / "dataset", PrepareConfig())
        dataset = Dataset.load(work / "dataset")
        truth = held_out(dataset)
        recommenders = {}
        for name in {"default", *targets}:
            train(work / "dataset", work / name, MODELS[name])
            recommenders[name] = Recommender.load(work / name)
        result = study(args, dataset, truth, recommenders)
    with open("/proc/loadavg") as f:
        result["loadavg"] = {"before": load_before, "after": f.read().split()[:3]}
    result["cpus"], result["seconds"] = os.cpu_count(), round(time.perf_counter() - started, 1)
    truths = [f"{name} {v['truth']:.4f}" for name, v in result["targets"].items()]
    log(f"expected listen-through: {', '.join(truths)}")
    log("relative error, mean over seeds / largest absolute (support in the header)\n"
        + table(result))  # fmt: skip
    print(json.dumps(result, default=str))


def study(
    args: argparse.Namespace, dataset: Dataset, truth: dict[str, set[str]],
    recommenders: dict[str, Recommender],
) -> dict[str, Any]:  # fmt: skip
    """Every (temperature, seed, lists, estimator, target) replayed against its truth."""
    targets = args.models.split(",")
    temperatures = [float(t) for t in args.temperatures.split(",")]
    list_counts = sorted(int(n) for n in args.lists.split(","))
    listener = ListenerModel()
    users = sorted(truth)[: args.listeners or None]
    logging = recommenders["default"]
    depth = exploration_depth(K)
    pools, scores = [], []
    for user in users:
        recs = logging.recommend_user(user, depth)
        pools.append(np.array([r.item for r in recs], dtype=np.int64))
        scores.append(np.array([r.score for r in recs], dtype=np.float64))
    names = dataset.items.set_index("item_idx")["artist_name"].astype(str).str.casefold()
    by_name = {name: int(i) for i, name in names.items()}
    relevant = [{by_name[a] for a in truth[u] if a in by_name} for u in users]
    result: dict[str, Any] = {"listeners": len(users), "k": K, "args": vars(args), "targets": {}}
    lists_of = {}
    for name in targets:
        lists = np.full((len(users), K), -1, dtype=np.int64)
        for row, user in enumerate(users):
            items = [r.item for r in recommenders[name].recommend_user(user, K)]
            lists[row, : len(items)] = items
        rel = np.array([[i in relevant[r] for i in row] for r, row in enumerate(lists)])
        inside = np.array([[i in set(pools[r]) for i in row] for r, row in enumerate(lists)])
        result["targets"][name] = {"truth": expected_rates(lists, rel, listener),
                                   "support": float(inside[lists >= 0].mean())}  # fmt: skip
        lists_of[name] = lists
    runs = []
    for temperature in temperatures:
        for seed in range(args.seeds):
            log(f"temperature {temperature}, seed {seed}")
            logged = log_lists(pools, scores, relevant, max(list_counts),
                               temperature, seed, args.marginal_samples, listener)  # fmt: skip
            for n_lists in list_counts:
                keep = logged["list"] < n_lists
                part = {k: v[keep] for k, v in logged.items()}
                for name in targets:
                    target = lists_of[name][part["who"], part["position"]] == part["item"]
                    target = target.astype(np.float64)
                    truth_rate = result["targets"][name]["truth"]
                    for estimator, value in estimates(part, target).items():
                        runs.append({"temperature": temperature, "seed": seed,
                                     "lists": n_lists, "estimator": estimator, "target": name,
                                     "value": value, "error": value / truth_rate - 1})  # fmt: skip
    result["runs"] = runs
    return result


def table(result: dict[str, Any]) -> str:
    args, runs, targets = result["args"], result["runs"], list(result["targets"])
    lines = ["| temperature | lists | estimator | " + " | ".join(
        f"{n} ({result['targets'][n]['support']:.0%})" for n in targets) + " |",
        "|---:|---:|---|" + "---:|" * len(targets)]  # fmt: skip
    for temperature in sorted({r["temperature"] for r in runs}):
        for n_lists in sorted({r["lists"] for r in runs}):
            for estimator in ESTIMATORS:
                cells = []
                for name in targets:
                    errors = np.array([r["error"] for r in runs if r["target"] == name
                                       and r["temperature"] == temperature
                                       and r["lists"] == n_lists
                                       and r["estimator"] == estimator])  # fmt: skip
                    cells.append(f"{errors.mean():+.1%} / {np.abs(errors).max():.1%}")
                lines.append(f"| {temperature:g} | {n_lists} | {estimator} | "
                             + " | ".join(cells) + " |")  # fmt: skip
    del args
    return "\n".join(lines)


if __name__ == "__main__":
    main()
