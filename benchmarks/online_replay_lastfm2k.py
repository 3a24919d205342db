"""Off-policy replay against really served models, on HetRec 2011 Last.fm-2K, end to end.

Prepares the dataset (default split) and trains the target models (by default the default ALS,
ALS with alpha 8 and ALS with regularisation 50, variants a team would replay against it, and
two far from it: the worse ALS with 4 factors and 1 sweep, and the popularity baseline).
Then, each on a fresh real ``musicrec serve`` (one worker, its own SQLite event store,
exposure cool-down off so repeated lists do not change by themselves) on loopback:

- **logging**: an exploring experiment, the logging model (default ALS) in both arms at
  ``--temperature``; the simulator (:mod:`musicrec.online.simulate`) plays every test listener
  ``--log-lists`` times. Then ``musicrec online replay explore --model M --json`` (the CLI, as
  a user runs it) estimates each target's listen-through from those logs.
- **served**: for each target, a deterministic experiment with the target in both arms; the
  simulator plays every test listener ``--served-lists`` times; its listen-through (listened
  impressions at positions below k, per listener, averaged over listeners; bootstrap interval
  over listeners) is what replay should have said. Beside it: ``expected``, the same average
  of the simulated listener's play probabilities on the lists served (the rate without the
  noise of the drawn plays), and ``lists_as_replayed``, the share of served lists that are
  exactly the list replay scores for that listener (1.0: replay and serving agree).

The simulated listener holds its events until it has asked for all its lists
(``hold_events``): every list a listener gets comes from the same state, as replaying a fixed
model assumes. Without that, plays fold into later lists and the logged lists and the served
ones drift apart for reasons that are not the estimator's (``--fold-in`` runs it that way).

Within ±15 % and the order are judged over the targets replay trusts (support at least
``musicrec.online.replay.MIN_SUPPORT``); the others are listed as flagged. Prints a table per
target (replay with its interval, support and whether it is trusted, served with its interval,
relative error), a summary line, and a JSON summary last.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from loopback_server import Server, cli

from musicrec import stats
from musicrec.config import TrainConfig
from musicrec.data.dataset import Dataset
from musicrec.data.prepare import PrepareConfig, prepare
from musicrec.events.impressions import read_impressions
from musicrec.events.store import EventStore
from musicrec.online.arms import start_experiment
from musicrec.online.experiments import Arm, ExperimentSpec, ExperimentStore
from musicrec.online.readout import arm_counts
from musicrec.online.replay import model_ranker
from musicrec.online.simulate import ListenerModel, held_out, simulate
from musicrec.pipeline.train import train

K = 10
TOLERANCE = 0.15  # relative
REPO = Path(__file__).resolve().parents[1]
MODELS = {
    "default": TrainConfig(),
    "als32": TrainConfig(factors=32),
    "als16": TrainConfig(factors=16),
    "als8": TrainConfig(factors=8),
    "als4": TrainConfig(factors=4),
    "sweeps2": TrainConfig(iterations=2),
    "alpha8": TrainConfig(alpha=8.0),
    "alpha32": TrainConfig(alpha=32.0),
    "alpha0.5": TrainConfig(alpha=0.5),
    "reg10": TrainConfig(regularization=10.0),
    "reg50": TrainConfig(regularization=50.0),
    "sweeps5": TrainConfig(iterations=5),
    "bm25": TrainConfig(weighting="bm25"),
    "worse": TrainConfig(factors=4, iterations=1),
    "popularity": TrainConfig.for_kind("popularity"),
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_phase(
    name: str, model: Path, temperature: float | None, lists: int,
    args: argparse.Namespace, dataset: Dataset, work: Path,
) -> tuple[str, dict[str, Any]]:  # fmt: skip
    """``model`` in both arms of an experiment on a fresh server; the simulator's summary."""
    url = f"sqlite:///{work / f'{name}.db'}"
    arms = (Arm("a", str(model), 50), Arm("b", str(model), 50))
    start_experiment(EventStore(url), ExperimentSpec(name, arms, temperature=temperature))
    server = Server(model, url, work / f"{name}.log", env={"MUSICREC_COOLDOWN_SHOWS": "0"})
    started = time.perf_counter()
    try:
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            summary = simulate(
                client, dataset, args.listeners, seed=args.seed, k=K,
                lists_per_listener=lists, max_seconds=args.max_seconds,
                hold_events=not args.fold_in,
            )  # fmt: skip
    finally:
        server.stop()
    result = summary.to_dict() | {"wall_s": round(time.perf_counter() - started, 1)}
    return url, result


def served_rate(
    url: str, name: str, model: Path, dataset: Dataset, resamples: int
) -> dict[str, Any]:
    """Listen-through of both arms together: per listener, averaged, with its interval.

    Also ``expected``: the same average of what the simulated listener would play on
    average from the lists served (its click model's probabilities, without the noise of the
    drawn plays), and ``lists_as_replayed``: the share of served lists that are exactly the
    list replay scores for that listener (``model_ranker``): 1.0 when replay and serving see
    the same model state.
    """
    store = EventStore(url)
    counts = arm_counts(store, ExperimentStore(store).get(name), K)
    impressions = np.concatenate([c.impressions for c in counts.values()])
    listened = np.concatenate([c.listened for c in counts.values()])
    (estimate,) = stats.bootstrap_mean_ci(listened / np.maximum(impressions, 1), resamples)
    shown = read_impressions(store, experiment=name)
    truth, listener = held_out(dataset), ListenerModel()
    pairs = zip(shown["listener"].astype(str), shown["artist"].astype(str), strict=True)
    relevant = np.array([artist.casefold() in truth.get(who, set()) for who, artist in pairs])
    chance = np.where(relevant, listener.play_relevant, listener.play_other)
    shown = shown.assign(expected=listener.examine(K)[shown["position"]] * chance)
    rank = model_ranker(str(model))
    same = [list(rows.sort_values("position")["artist"]) == list(rank(str(who), K) or [])
            for (who, _), rows in shown.groupby(["listener", "request_id"])]  # fmt: skip
    return {"value": estimate.value, "low": estimate.low, "high": estimate.high,
            "expected": float(shown.groupby("listener")["expected"].mean().mean()),
            "lists_as_replayed": float(np.mean(same)),
            "listeners": len(impressions), "impressions": int(impressions.sum())}  # fmt: skip


def replay_rate(url: str, model: Path, resamples: int) -> dict[str, Any]:
    """``musicrec online replay explore --model MODEL --json``, as a user runs it."""
    cmd = [*cli(), "online", "replay", "explore", "--model", str(model), "--k", str(K)]
    cmd += ["--json", "--resamples", str(resamples), "--events-url", url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"replay failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def compare(
    replayed: dict[str, dict[str, Any]], served: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Relative errors; the order (and ±15 %) judged over the targets replay trusts; for each
    pair of neighbours in the served order, whether their served intervals overlap."""
    rows = {}
    for name in replayed:
        value, truth = replayed[name]["value"], served[name]["value"]
        error = value / truth - 1.0 if value is not None and truth > 0 else None
        rows[name] = {"relative_error": error, "trusted": bool(replayed[name].get("trusted")),
                      "within": error is not None and abs(error) <= TOLERANCE}  # fmt: skip
    trusted = [name for name in replayed if rows[name]["trusted"]]
    by_replay = sorted(trusted, key=lambda n: replayed[n]["value"])
    by_served = sorted(trusted, key=lambda n: served[n]["value"])
    overlaps = {f"{a}<{b}": served[a]["high"] >= served[b]["low"]
                for a, b in itertools.pairwise(by_served)}  # fmt: skip
    return {"per_model": rows, "trusted": trusted,
            "all_within": bool(trusted) and all(rows[n]["within"] for n in trusted),
            "flagged": [name for name in replayed if name not in trusted],
            "order_replay": by_replay, "order_served": by_served,
            "order_correct": by_replay == by_served, "served_overlaps": overlaps}  # fmt: skip


def table(result: dict[str, Any]) -> str:
    lines = ["| model | replay (95 % interval) | support | trusted | matched / ESS "
             "| served (95 % interval) | served, expected | relative error |",
             "|---|---|---:|---|---:|---|---:|---:|"]  # fmt: skip
    for name, rep in result["replay"].items():
        srv, row = result["served"][name], result["comparison"]["per_model"][name]
        error = row["relative_error"]
        lines.append(
            f"| {name} | {rep['value']:.4f} ({rep['low']:.4f}-{rep['high']:.4f}) "
            f"| {rep['support']:.0%} | {'yes' if row['trusted'] else 'no'} "
            f"| {rep['matched']:,} / {rep['effective_size']:,.0f} "
            f"| {srv['value']:.4f} ({srv['low']:.4f}-{srv['high']:.4f}) | {srv['expected']:.4f} "
            f"| {'n/a' if error is None else f'{error:+.1%}'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "../shared/data/lastfm-2k")
    parser.add_argument("--models", default="default,alpha8,reg50,worse,popularity",
                        help=f"targets, of {', '.join(MODELS)}")  # fmt: skip
    parser.add_argument("--listeners", type=int, default=0, help="0: every test listener")
    parser.add_argument("--log-lists", type=int, default=10)
    parser.add_argument("--served-lists", type=int, default=1)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--fold-in", action="store_true", help="post events after each list")
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    targets = args.models.split(",")
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[:3]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="musicrec-replay-") as tmp:
        work = Path(tmp)
        log("preparing HetRec-2K and training the models")
        prepare("hetrec2k", args.data, work / "dataset", PrepareConfig())
        dataset = Dataset.load(work / "dataset")
        args.listeners = args.listeners or int(dataset.test_frame["user_idx"].nunique())
        paths = {name: work / name for name in {"default", *targets}}
        for name, path in paths.items():
            train(work / "dataset", path, MODELS[name])
        result: dict[str, Any] = {"listeners": args.listeners, "k": K, "args": vars(args)}
        log(f"logging: default ALS at temperature {args.temperature}, "
            f"{args.listeners} listeners x {args.log_lists} lists")  # fmt: skip
        url, result["logging"] = run_phase("explore", paths["default"], args.temperature,
                                           args.log_lists, args, dataset, work)  # fmt: skip
        result["replay"] = {}
        for name in targets:
            log(f"replay {name}")
            result["replay"][name] = replay_rate(url, paths[name], args.resamples)
        result["served"] = {}
        for name in targets:
            log(f"served {name}: {args.listeners} listeners x {args.served_lists} lists")
            served_url, summary = run_phase(f"served-{name}", paths[name], None,
                                            args.served_lists, args, dataset, work)  # fmt: skip
            result["served"][name] = served_rate(served_url, f"served-{name}", paths[name],
                                                 dataset, args.resamples)  # fmt: skip
            result["served"][name]["simulator"] = summary
    result["comparison"] = compare(result["replay"], result["served"])
    with open("/proc/loadavg") as f:
        result["loadavg"] = {"before": load_before, "after": f.read().split()[:3]}
    result["cpus"], result["seconds"] = os.cpu_count(), round(time.perf_counter() - started, 1)
    log("\n" + table(result))
    comparison = result["comparison"]
    log(
        f"trusted: {', '.join(comparison['trusted']) or 'none'}; within ±{TOLERANCE:.0%}: "
        f"{comparison['all_within']}; order correct: {comparison['order_correct']} "
        f"({' < '.join(comparison['order_replay'])}); flagged: "
        f"{', '.join(comparison['flagged']) or 'none'}; served lists as replayed: "
        + ", ".join(f"{n} {v['lists_as_replayed']:.0%}" for n, v in result["served"].items())
    )
    log(
        f"load average {' '.join(result['loadavg']['before'])} before, "
        f"{' '.join(result['loadavg']['after'])} after; {result['seconds']:.0f} s"
    )
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
