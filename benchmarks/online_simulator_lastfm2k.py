"""Online experiments on HetRec 2011 Last.fm-2K, end to end: simulated listeners, real server.

Prepares the dataset (default split), trains the default ALS and a clearly worse model
(4 factors, 1 sweep), and for each phase starts a real ``musicrec serve`` (one worker, a fresh
SQLite event store, watch interval 0.25 s) on loopback. The simulator
(:mod:`musicrec.online.simulate`) plays test users of the dataset against it: it asks for 10
artists, plays shown held-out artists with a position-dependent probability (rarely others),
skips the rest, and posts the events with the list's request id and position.

- A/B: default vs worse, 50/50, ``--ab-listeners`` listeners (one list each);
- interleave: the two merged by team draft, ``--il-listeners`` listeners;
- A/A: the default model in both arms, one experiment after another (a new name, salt and
  listener sample each), ``--aa-listeners`` listeners each, until ``--aa-experiments`` ran or
  ``--aa-seconds`` passed. The false-positive rate is the share of A/A experiments whose
  listen-through difference has p < 0.05 (with its 95 % interval).

The p-value against listeners (both modes) re-reads each run's first n listeners (in the
order they were served) with the report's own functions; the plot goes to ``--plot``.
The readouts are the ones ``musicrec online report`` prints (bootstrap over listeners for
A/B, binomial test for interleaving). Prints a JSON summary last.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from musicrec.config import TrainConfig
from musicrec.data.dataset import Dataset
from musicrec.data.prepare import PrepareConfig, prepare
from musicrec.events.impressions import read_impressions
from musicrec.events.store import EventStore
from musicrec.online.arms import start_experiment
from musicrec.online.experiments import Arm, ExperimentSpec, ExperimentStore
from musicrec.online.readout import ArmCounts, arm_counts, interleave_preferences
from musicrec.online.report import ab_readout, interleave_readout
from musicrec.online.simulate import simulate
from musicrec.pipeline.train import train
from musicrec.stats import proportion_interval

K = 10
WATCH_S = 0.25
REPO = Path(__file__).resolve().parents[1]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``musicrec serve`` on loopback with its own event store; a clean stop flushes."""

    def __init__(self, model: Path, events_url: str, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MUSICREC_")}
        env |= {"MUSICREC_EVENTS_URL": events_url, "MUSICREC_WATCH_INTERVAL_S": str(WATCH_S)}
        cmd = [sys.executable, "-c", "from musicrec.cli import app; app()", "serve"]
        cmd += ["--model", str(model), "--port", str(self.port), "--log-level", "warning"]
        self.log = log_path.open("w")
        self.process = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited; see {log_path}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("server did not become ready")

    def stop(self) -> None:
        self.process.terminate()  # SIGTERM: uvicorn shuts down, the impressions are committed
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.log.close()


def order_of_listeners(store: EventStore, experiment: str) -> np.ndarray:
    """Listeners in the order they were first shown a list."""
    shown = read_impressions(store, experiment=experiment)
    first = shown.groupby("listener")["time"].min().sort_values()
    return first.index.to_numpy(dtype=object)


def subset(counts: ArmCounts, keep: set[str]) -> ArmCounts:
    mask = np.array([listener in keep for listener in counts.listeners], dtype=bool)
    fields = ("impressions", "listened", "plays", "skips", "loves", "bans")
    return replace(
        counts,
        listeners=counts.listeners[mask],
        **{name: getattr(counts, name)[mask] for name in fields},
    )


def ab_p(counts: dict[str, ArmCounts], resamples: int) -> tuple[float | None, str | None]:
    readout = ab_readout(counts, [50.0, 50.0], resamples)
    return readout["differences"][0]["listen_through"]["p_value"], readout["winner"]


def run_phase(
    name: str, mode: str, arms: tuple[Arm, ...], listeners: int, seed: int,
    dataset: Dataset, model: Path, work: Path,
) -> tuple[EventStore, dict[str, Any]]:  # fmt: skip
    """One experiment on a fresh server and store; the simulator's summary."""
    url = f"sqlite:///{work / f'{name}.db'}"
    store = EventStore(url)
    start_experiment(store, ExperimentSpec(name, arms, mode=mode))  # picked up at start
    server = Server(model, url, work / f"{name}.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            summary = simulate(client, dataset, listeners, seed=seed, k=K, max_seconds=900)
    finally:
        server.stop()
    ExperimentStore(store).stop(name, "benchmark done")
    return store, summary.to_dict()


def curve_points(total: int) -> list[int]:
    grid = [50, 100, 150, 200, 300, 400, 600, 800, 1000, 1250, 1500, 2000]
    return [n for n in grid if n < total] + [total]


def ab_phase(args: argparse.Namespace, dataset: Dataset, models: dict[str, Path], work: Path):  # type: ignore[no-untyped-def]
    arms = (Arm("default", str(models["default"]), 50), Arm("worse", str(models["worse"]), 50))
    started = time.perf_counter()
    store, summary = run_phase("ab", "ab", arms, args.ab_listeners, args.seed, dataset,
                               models["default"], work)  # fmt: skip
    seconds = time.perf_counter() - started
    experiment = ExperimentStore(store).get("ab")
    counts = arm_counts(store, experiment, K)
    order = order_of_listeners(store, "ab")
    curve = []
    for n in curve_points(len(order)):
        keep = set(order[:n])
        p, _ = ab_p({a: subset(c, keep) for a, c in counts.items()}, args.resamples)
        curve.append((n, p))
    p, winner = ab_p(counts, args.resamples)
    rates = {a: float(c.listened.sum() / max(c.impressions.sum(), 1)) for a, c in counts.items()}
    return {"listeners": len(order), "p_value": p, "winner": winner, "seconds": round(seconds, 1),
            "listen_through": rates, "curve": curve, "simulator": summary}  # fmt: skip


def interleave_phase(args: argparse.Namespace, dataset: Dataset, models: dict[str, Path],
                     work: Path):  # type: ignore[no-untyped-def]  # fmt: skip
    arms = (Arm("default", str(models["default"]), 50), Arm("worse", str(models["worse"]), 50))
    started = time.perf_counter()
    store, summary = run_phase("il", "interleave", arms, args.il_listeners, args.seed + 1,
                               dataset, models["default"], work)  # fmt: skip
    seconds = time.perf_counter() - started
    experiment = ExperimentStore(store).get("il")
    prefs = interleave_preferences(store, experiment, K)
    order = order_of_listeners(store, "il")
    position = {listener: i for i, listener in enumerate(order)}
    rank = np.array([position.get(listener, len(order)) for listener in prefs.listeners])
    curve = []
    for n in curve_points(len(order)):
        mask = rank < n
        part = replace(prefs, listeners=prefs.listeners[mask], first=prefs.first[mask],
                       second=prefs.second[mask])  # fmt: skip
        curve.append((n, interleave_readout(part, "default", "worse", args.resamples)["p_value"]))
    readout = interleave_readout(prefs, "default", "worse", args.resamples)
    return {"listeners": len(order), "p_value": readout["p_value"], "winner": readout["winner"],
            "wins": readout["wins"], "ties": readout["ties"], "seconds": round(seconds, 1),
            "curve": curve, "simulator": summary}  # fmt: skip


def aa_phase(args: argparse.Namespace, dataset: Dataset, models: dict[str, Path], work: Path):  # type: ignore[no-untyped-def]
    """A/A experiments one after another on one server, each picked up by its watcher."""
    url = f"sqlite:///{work / 'aa.db'}"
    store = EventStore(url)
    experiments = ExperimentStore(store)
    model = str(models["default"])
    server = Server(models["default"], url, work / "aa.log")
    started = time.perf_counter()
    names, not_picked_up = [], 0
    try:
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            for i in range(args.aa_experiments):
                if time.perf_counter() - started > args.aa_seconds:
                    break
                name = f"aa{i}"
                start_experiment(store, ExperimentSpec(name, (Arm("a", model, 50),
                                                              Arm("b", model, 50))))  # fmt: skip
                time.sleep(2.5 * WATCH_S)  # the watcher picks it up within one interval
                summary = simulate(client, dataset, args.aa_listeners, seed=1000 + i, k=K)
                not_picked_up += summary.arms.get("-", None) is not None
                experiments.stop(name, "benchmark done")  # the next refresh drops it
                names.append(name)
    finally:
        server.stop()
    seconds = time.perf_counter() - started
    p_values = []
    for name in names:
        p, _ = ab_p(arm_counts(store, experiments.get(name), K), args.resamples)
        p_values.append(p)
    positives = sum(p is not None and p < 0.05 for p in p_values)
    low, high = proportion_interval(positives, len(names)) if names else (float("nan"),) * 2
    return {"experiments": len(names), "listeners_each": args.aa_listeners,
            "false_positives": positives, "rate": positives / max(len(names), 1),
            "interval": [low, high], "seconds": round(seconds, 1),
            "lists_not_from_an_arm": not_picked_up}  # fmt: skip


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (("ab", "A/B (bootstrap over listeners)"),
                       ("interleave", "interleaving (binomial test)")):  # fmt: skip
        if key in result:
            points = [(n, p) for n, p in result[key]["curve"] if p is not None]
            ax.plot([n for n, _ in points], [max(p, 1e-300) for _, p in points], "o-", label=label)
    ax.axhline(0.05, color="grey", linestyle="--", label="p = 0.05")
    ax.set_yscale("log")
    ax.set_xlabel("simulated listeners (one list of 10 each)")
    ax.set_ylabel("p-value, default ALS vs 4 factors / 1 sweep")
    ax.set_title("HetRec-2K, simulated listeners against musicrec serve")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "../shared/data/lastfm-2k")
    parser.add_argument("--ab-listeners", type=int, default=1500)
    parser.add_argument("--il-listeners", type=int, default=1500, help="curve; read at 300")
    parser.add_argument("--aa-listeners", type=int, default=300)
    parser.add_argument("--aa-experiments", type=int, default=100)
    parser.add_argument("--aa-seconds", type=float, default=300.0)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--phases", default="ab,interleave,aa")
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    phases = set(args.phases.split(","))
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[:3]
    with tempfile.TemporaryDirectory(prefix="musicrec-online-") as tmp:
        work = Path(tmp)
        log("preparing HetRec-2K and training the two models")
        prepare("hetrec2k", args.data, work / "dataset", PrepareConfig())
        dataset = Dataset.load(work / "dataset")
        models = {"default": work / "default", "worse": work / "worse"}
        train(work / "dataset", models["default"], TrainConfig())
        train(work / "dataset", models["worse"], TrainConfig(factors=4, iterations=1))
        result: dict[str, Any] = {"test_listeners": dataset.test_frame["user_idx"].nunique()}
        if "ab" in phases:
            log(f"A/B with {args.ab_listeners} listeners")
            result["ab"] = ab_phase(args, dataset, models, work)
        if "interleave" in phases:
            log(f"interleaving with {args.il_listeners} listeners")
            result["interleave"] = interleave_phase(args, dataset, models, work)
            at = [p for n, p in result["interleave"]["curve"] if n == min(300, args.il_listeners)]
            result["interleave"]["p_value_at_300"] = at[0] if at else None
        if "aa" in phases:
            log(f"A/A: up to {args.aa_experiments} experiments or {args.aa_seconds:.0f} s")
            result["aa"] = aa_phase(args, dataset, models, work)
    with open("/proc/loadavg") as f:
        result["loadavg"] = {"before": load_before, "after": f.read().split()[:3]}
    result["cpus"] = os.cpu_count()
    if args.plot is not None:
        plot(result, args.plot)
    for key in ("ab", "interleave"):
        if key in result:
            summary = {k: v for k, v in result[key].items() if k not in ("simulator",)}
            log(f"{key}: {summary}")
    if "aa" in result:
        log(f"aa: {result['aa']}")
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
