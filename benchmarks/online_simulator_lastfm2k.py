"""Online experiments on HetRec 2011 Last.fm-2K, end to end: simulated listeners, real server.

Prepares the dataset (default split), trains the default ALS, a clearly worse model (4 factors,
1 sweep) and a closer one (``--closer-factors``, ``--closer-iterations``: by default 4 factors
and the default 15 sweeps; the offline NDCG@10 of both comes from ``musicrec compare``'s code),
and for each phase starts a real ``musicrec serve`` (one worker, a fresh SQLite event store,
watch interval 0.25 s) on loopback. The simulator (:mod:`musicrec.online.simulate`) plays test
users of the dataset against it: it asks for ``--lists`` lists of 10 artists (posting each
list's events before the next, so they fold in), plays shown held-out artists with a
position-dependent probability (rarely others), skips the rest, and posts the events with the
list's request id and position. ``--activity-sd``: the spread of the listeners' log-odds of
playing (0: every listener alike); the JSON's ``data_activity`` is the spread of log total
plays per listener in the raw data, which the default copies.

- ab: default vs worse, 50/50, ``--ab-listeners`` listeners;
- interleave: the two merged by team draft, ``--il-listeners`` listeners;
- closer: default vs the closer model, A/B and interleaving, each with
  ``--closer-listeners`` listeners (default: every test listener);
- aa: the default model in both arms, one experiment after another (a new name, salt and
  listener sample each), ``--aa-listeners`` listeners each, until ``--aa-experiments`` ran or
  ``--aa-seconds`` passed (``--seed`` picks another series of names, salts and samples).
  The false-positive rate is the share of A/A experiments whose listen-through difference
  has p < 0.05 (with its Wilson interval, and the one-sided binomial p-value of that many
  or more if the true rate were 5 %). Then
  ``--aa-resampled`` A/A readouts without a server: listeners drawn with replacement from
  all served A/A listeners, arms by a fair coin.

Listeners needed: every served listener's outcome is kept (its arm and listen-through, or
its interleaving win, loss or tie), and ``--repeats`` experiments of each size n are resampled
from them with replacement (:func:`musicrec.stats.resampled_power`). Power is the share whose
readout (the report's own: ``ab_readout``, Welch's t over listeners; ``interleave_readout``,
binomial test) names the default ALS the winner, with its Wilson interval; the repeats share
the served lists, and sizes above the served count repeat listeners. Where each mode reaches
``--power`` is interpolated (:func:`musicrec.stats.units_for_power`). The p-value on the first
n listeners served is kept as ``curve``. Plot: ``--plot``. Prints a JSON summary last.

How sure the served run makes those sizes: ``planned`` is the size the usual normal-
approximation formula gives from the served effect and spread (A/B: a two-sided 5 % test of
the listen-through difference, 50/50; interleaving: a two-sided 5 % binomial test on the
listeners that do not tie), with a 95 % percentile interval from ``--planned-draws``
bootstrap draws of the served listeners; ``ratio`` carries the same for A/B over interleaving
(the two modes are separate runs, drawn independently).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from loopback_server import Server
from scipy.stats import binomtest, kstest, norm, ttest_1samp

from musicrec import stats
from musicrec.config import TrainConfig
from musicrec.data.dataset import Dataset
from musicrec.data.prepare import PrepareConfig, prepare
from musicrec.events.impressions import read_impressions
from musicrec.events.store import EventStore
from musicrec.online.arms import start_experiment
from musicrec.online.experiments import Arm, ExperimentSpec, ExperimentStore
from musicrec.online.interleave import Preferences
from musicrec.online.readout import ArmCounts, arm_counts, interleave_preferences
from musicrec.online.report import ab_readout, interleave_readout, per_listener_rates
from musicrec.online.simulate import DEFAULT_ACTIVITY_SD, ListenerModel, simulate
from musicrec.pipeline.compare import compare_models
from musicrec.pipeline.train import train

K = 10
REQUIRED_SIZES = [10, 20, 30, 40, 50, 75, 100, 150, 200, 300]
CLOSER_SIZES = [50, 100, 150, 200, 300, 400, 500, 600, 800, 1000, 1250, 1500, 2000, 2500, 3000,
                4000, 5000, 6000]  # fmt: skip
WATCH_S = 0.25
WATCH = {"MUSICREC_WATCH_INTERVAL_S": str(WATCH_S)}
REPO = Path(__file__).resolve().parents[1]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def order_of_listeners(store: EventStore, experiment: str) -> np.ndarray:
    """Listeners in the order they were first shown a list."""
    shown = read_impressions(store, experiment=experiment)
    first = shown.groupby("listener")["time"].min().sort_values()
    return first.index.to_numpy(dtype=object)


COUNT_FIELDS = ("listeners", "impressions", "listened", "plays", "skips", "loves", "bans")


def take(counts: ArmCounts, rows: np.ndarray) -> ArmCounts:
    """The listeners at ``rows`` (a listener may repeat: a resample)."""
    return replace(counts, **{name: getattr(counts, name)[rows] for name in COUNT_FIELDS})


def pool(parts: list[ArmCounts]) -> ArmCounts:
    """Many arms' listeners as one arm."""
    joined = {name: np.concatenate([getattr(c, name) for c in parts]) for name in COUNT_FIELDS}
    return ArmCounts(arm="pool", **joined)


def take_prefs(prefs: Preferences, rows: np.ndarray) -> Preferences:
    return Preferences(prefs.listeners[rows], prefs.first[rows], prefs.second[rows])


def ab_p(counts: dict[str, ArmCounts], resamples: int) -> tuple[float | None, str | None, bool]:
    """The readout's listen-through p-value, winner, and whether the interval excludes 0."""
    readout = ab_readout(counts, [50.0, 50.0], resamples)
    found = readout["differences"][0]["listen_through"]
    interval = found["difference"] or {}
    low, high = interval.get("low"), interval.get("high")
    excludes = low is not None and high is not None and (low > 0 or high < 0)
    return found["p_value"], readout["winner"], excludes


def ab_power(counts: dict[str, ArmCounts], better: str, sizes: list[int],
             args: argparse.Namespace) -> list[stats.Power]:  # fmt: skip
    """Power of the A/B readout: experiments of n listeners resampled from the served ones
    (each keeps its arm and outcome); decided when the readout names ``better``."""
    names = list(counts)
    arm_of = np.concatenate([np.full(len(counts[n].listeners), i) for i, n in enumerate(names)])
    row_in_arm = np.concatenate([np.arange(len(counts[n].listeners)) for n in names])

    def decide(rows: np.ndarray) -> tuple[bool, float]:
        parts = {n: take(counts[n], row_in_arm[rows[arm_of[rows] == i]])
                 for i, n in enumerate(names)}  # fmt: skip
        readout = ab_readout(parts, [50.0, 50.0], 0)
        p = readout["differences"][0]["listen_through"]["p_value"]
        return readout["winner"] == better, float("nan") if p is None else p

    return stats.resampled_power(decide, len(arm_of), sizes, args.repeats, args.seed)


def il_power(prefs: Preferences, arms: tuple[str, str], sizes: list[int],
             args: argparse.Namespace) -> list[stats.Power]:  # fmt: skip
    """Power of the interleaving readout, resampled alike; decided when it names arms[0]."""

    def decide(rows: np.ndarray) -> tuple[bool, float]:
        readout = interleave_readout(take_prefs(prefs, rows), arms[0], arms[1], 0)
        p = readout["p_value"]
        return readout["winner"] == arms[0], float("nan") if p is None else p

    return stats.resampled_power(decide, len(prefs.listeners), sizes, args.repeats, args.seed)


Z_ALPHA = float(norm.ppf(0.975))  # two-sided 5 %


def planned_ab(better: np.ndarray, other: np.ndarray, power: float) -> float:
    """Listeners (both arms, 50/50) for ``power`` at the served listen-through gap."""
    gap = better.mean() - other.mean()
    if gap <= 0:
        return math.inf
    spread = better.var(ddof=1) + other.var(ddof=1)
    return float(2 * spread * (Z_ALPHA + norm.ppf(power)) ** 2 / gap**2)


def planned_il(outcome: np.ndarray, power: float) -> float:
    """Listeners for ``power`` at the served share of wins among listeners who do not tie."""
    wins, losses = float((outcome > 0).mean()), float((outcome < 0).mean())
    if wins <= losses:
        return math.inf
    q = wins / (wins + losses)
    decided = ((Z_ALPHA * 0.5 + norm.ppf(power) * math.sqrt(q * (1 - q))) / (q - 0.5)) ** 2
    return float(decided / (wins + losses))


def planned(size: Any, samples: tuple[np.ndarray, ...], args: argparse.Namespace,
            stream: int) -> dict[str, Any]:  # fmt: skip
    """``size(*samples)`` and its bootstrap draws (listeners resampled within each sample)."""
    rng = np.random.default_rng([args.seed, stream])
    draws = np.array([size(*(rng.choice(x, len(x)) for x in samples), args.power)
                      for _ in range(args.planned_draws)])  # fmt: skip
    return {"listeners": size(*samples, args.power), "interval": percentile_interval(draws),
            "draws": draws}  # fmt: skip


def percentile_interval(draws: np.ndarray) -> list[float]:
    """95 % percentile interval; no interpolation, so an infinite draw stays infinite."""
    return [float(np.percentile(draws, 2.5, method="lower")),
            float(np.percentile(draws, 97.5, method="higher"))]  # fmt: skip


def ratio(ab: dict[str, Any], il: dict[str, Any]) -> dict[str, Any]:
    """A/B over interleaving: from the resampled power, and planned with its interval."""
    needed = [ab["listeners_for_power"], il["listeners_for_power"]]
    a, b = ab["planned"]["draws"], il["planned"]["draws"]
    with np.errstate(invalid="ignore"):
        draws = np.where(np.isinf(a) & np.isinf(b), np.inf, a / b)
    return {"power": needed[0] / needed[1] if None not in needed else None,
            "planned": ab["planned"]["listeners"] / il["planned"]["listeners"],
            "planned_interval": percentile_interval(draws)}  # fmt: skip


def drop_draws(found: Any) -> None:
    """The bootstrap draws stay out of the printed summary."""
    if isinstance(found, dict):
        found.pop("draws", None)
        for value in found.values():
            drop_draws(value)


def power_summary(power: list[stats.Power], target: float) -> dict[str, Any]:
    return {"power": [p.to_dict() for p in power],
            "listeners_for_power": stats.units_for_power(power, target)}  # fmt: skip


def data_activity(data: Path) -> dict[str, Any]:
    """How much the raw data's listeners differ in activity: log total plays per listener."""
    raw = pd.read_csv(data / "user_artists.dat", sep="\t")
    plays = np.log(raw.groupby("userID")["weight"].sum().to_numpy(dtype=float))
    p10, p50, p90 = np.percentile(plays, [10, 50, 90])
    return {"listeners": len(plays), "sd_log_plays": round(float(plays.std()), 3),
            "plays_p10_p50_p90": [round(float(np.exp(v))) for v in (p10, p50, p90)]}  # fmt: skip


def listener_means(args: argparse.Namespace, draws: int = 20_000) -> dict[str, Any]:
    """The simulated population's mean play probabilities (held-out artists, others)."""
    model, rng = ListenerModel(activity_sd=args.activity_sd), np.random.default_rng(args.seed)
    listeners = [model.for_listener(rng) for _ in range(draws)]
    relevant = np.mean([m.play_relevant for m in listeners])
    other = np.mean([m.play_other for m in listeners])
    return {"lists": args.lists, "activity_sd": args.activity_sd,
            "mean_play_relevant": round(float(relevant), 4),
            "mean_play_other": round(float(other), 4)}  # fmt: skip


def listener_options(args: argparse.Namespace) -> dict[str, Any]:
    """The simulator's options shared by every phase."""
    return {"k": K, "lists_per_listener": args.lists,
            "model": ListenerModel(activity_sd=args.activity_sd)}  # fmt: skip


def run_phase(
    name: str, mode: str, arms: tuple[Arm, ...], listeners: int, seed: int,
    dataset: Dataset, model: Path, work: Path, args: argparse.Namespace,
) -> tuple[EventStore, dict[str, Any]]:  # fmt: skip
    """One experiment on a fresh server and store; the simulator's summary."""
    url = f"sqlite:///{work / f'{name}.db'}"
    store = EventStore(url)
    start_experiment(store, ExperimentSpec(name, arms, mode=mode))  # picked up at start
    server = Server(model, url, work / f"{name}.log", env=WATCH)
    try:
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            summary = simulate(client, dataset, listeners, seed=seed, max_seconds=900,
                               **listener_options(args))  # fmt: skip
    finally:
        server.stop()
    ExperimentStore(store).stop(name, "benchmark done")
    return store, summary.to_dict()


def curve_points(total: int) -> list[int]:
    grid = [50, 100, 150, 200, 300, 400, 600, 800, 1000, 1250, 1500, 2000]
    return [n for n in grid if n < total] + [total]


class Pair:
    """The default ALS against ``other``: which phase, how many listeners, which sizes."""

    def __init__(self, other: str, listeners: int, sizes: list[int], seed: int):
        self.other, self.listeners, self.sizes, self.seed = other, listeners, sizes, seed

    def arms(self, models: dict[str, Path]) -> tuple[Arm, Arm]:
        return (Arm("default", str(models["default"]), 50),
                Arm(self.other, str(models[self.other]), 50))  # fmt: skip


def ab_phase(name: str, pair: Pair, args: argparse.Namespace, dataset: Dataset,
             models: dict[str, Path], work: Path) -> dict[str, Any]:  # fmt: skip
    started = time.perf_counter()
    store, summary = run_phase(name, "ab", pair.arms(models), pair.listeners, pair.seed,
                               dataset, models["default"], work, args)  # fmt: skip
    seconds = time.perf_counter() - started
    counts = arm_counts(store, ExperimentStore(store).get(name), K)
    order = order_of_listeners(store, name)
    curve = []
    for n in curve_points(len(order)):
        keep = set(order[:n])
        rows = {a: np.flatnonzero([x in keep for x in c.listeners]) for a, c in counts.items()}
        p, _, _ = ab_p({a: take(c, rows[a]) for a, c in counts.items()}, args.resamples)
        curve.append((n, p))
    p, winner, _ = ab_p(counts, args.resamples)
    rates = {a: float(c.listened.sum() / max(c.impressions.sum(), 1)) for a, c in counts.items()}
    power = ab_power(counts, "default", pair.sizes, args)
    served = tuple(counts[a].listened / np.maximum(counts[a].impressions, 1)
                   for a in ("default", pair.other))  # fmt: skip
    return {"planned": planned(planned_ab, served, args, 1),
            "listeners": len(order), "p_value": p, "winner": winner, "seconds": round(seconds, 1),
            "listen_through": rates, "curve": curve, **power_summary(power, args.power),
            "simulator": summary}  # fmt: skip


def interleave_phase(name: str, pair: Pair, args: argparse.Namespace, dataset: Dataset,
                     models: dict[str, Path], work: Path) -> dict[str, Any]:  # fmt: skip
    started = time.perf_counter()
    store, summary = run_phase(name, "interleave", pair.arms(models), pair.listeners,
                               pair.seed + 1, dataset, models["default"], work, args)  # fmt: skip
    seconds = time.perf_counter() - started
    prefs = interleave_preferences(store, ExperimentStore(store).get(name), K)
    order = order_of_listeners(store, name)
    position = {listener: i for i, listener in enumerate(order)}
    rank = np.array([position.get(listener, len(order)) for listener in prefs.listeners])
    curve = []
    for n in curve_points(len(order)):
        part = take_prefs(prefs, np.flatnonzero(rank < n))
        curve.append(
            (n, interleave_readout(part, "default", pair.other, args.resamples)["p_value"])
        )
    readout = interleave_readout(prefs, "default", pair.other, args.resamples)
    power = il_power(prefs, ("default", pair.other), pair.sizes, args)
    return {"planned": planned(planned_il, (prefs.outcome,), args, 2),
            "listeners": len(order), "p_value": readout["p_value"], "winner": readout["winner"],
            "wins": readout["wins"], "ties": readout["ties"], "seconds": round(seconds, 1),
            "curve": curve, **power_summary(power, args.power),
            "simulator": summary}  # fmt: skip


def offline_ndcg(dataset_dir: Path, models: dict[str, Path], other: str,
                 args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    """``musicrec compare``'s NDCG@10 of the default ALS and ``other`` on the test split."""
    compared = compare_models(dataset_dir, models["default"], models[other], ks=[10],
                              metrics=["ndcg@10"], n_resamples=args.resamples)  # fmt: skip
    found = compared.metrics["ndcg@10"]
    return {"default": found.a, other: found.b, "difference": found.difference,
            "low": found.low, "high": found.high, "p_t": found.p_value_t,
            "p_randomization": found.p_value_randomization}  # fmt: skip


def closer_phase(args: argparse.Namespace, dataset: Dataset, models: dict[str, Path],
                 work: Path) -> dict[str, Any]:  # fmt: skip
    """The default ALS against the closer model, both modes, every listener kept."""
    total = args.closer_listeners or int(dataset.test_frame["user_idx"].nunique())
    pair = Pair("closer", total, CLOSER_SIZES, args.seed + 10)
    result: dict[str, Any] = {
        "model": {"factors": args.closer_factors, "iterations": args.closer_iterations},
        "ndcg@10": offline_ndcg(work / "dataset", models, "closer", args),
    }
    log(f"closer pair: A/B with {total} listeners")
    result["ab"] = ab_phase("closer_ab", pair, args, dataset, models, work)
    log(f"closer pair: interleaving with {total} listeners")
    result["interleave"] = interleave_phase("closer_il", pair, args, dataset, models, work)
    result["ratio"] = ratio(result["ab"], result["interleave"])
    return result


def aa_served(args: argparse.Namespace, dataset: Dataset, models: dict[str, Path],
              store: EventStore, log_path: Path) -> tuple[list[str], int, float]:  # fmt: skip
    """A/A experiments one after another on one server, each picked up by its watcher."""
    experiments = ExperimentStore(store)
    model = str(models["default"])
    server = Server(models["default"], store.url, log_path, env=WATCH)
    started = time.perf_counter()
    names, not_picked_up = [], 0
    try:
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            for i in range(args.aa_experiments):
                if time.perf_counter() - started > args.aa_seconds:
                    break
                name = f"aa{i}" if not args.seed else f"aa{args.seed}-{i}"
                start_experiment(store, ExperimentSpec(name, (Arm("a", model, 50),
                                                              Arm("b", model, 50))))  # fmt: skip
                time.sleep(2.5 * WATCH_S)  # the watcher picks it up within one interval
                sample = 1000 * (args.seed + 1) + i
                summary = simulate(client, dataset, args.aa_listeners, seed=sample,
                                   **listener_options(args))  # fmt: skip
                not_picked_up += summary.arms.get("-", None) is not None
                experiments.stop(name, "benchmark done")  # the next refresh drops it
                names.append(name)
    finally:
        server.stop()
    return names, not_picked_up, time.perf_counter() - started


def aa_phase(args: argparse.Namespace, dataset: Dataset, models: dict[str, Path],
             work: Path) -> dict[str, Any]:  # fmt: skip
    """Served A/A false positives, and A/A readouts resampled from their listeners."""
    store = EventStore(f"sqlite:///{work / 'aa.db'}")
    names, not_picked_up, seconds = aa_served(args, dataset, models, store, work / "aa.log")
    experiments = ExperimentStore(store)
    p_values: list[float | None] = []
    differences: list[float] = []
    listeners: list[ArmCounts] = []
    excludes = 0
    for name in names:
        counts = arm_counts(store, experiments.get(name), K)
        p, _, outside = ab_p(counts, args.resamples)
        p_values.append(p)
        excludes += outside
        listeners.extend(counts.values())
        a, b = (per_listener_rates(c)[:, 0].mean() for c in counts.values())
        differences.append(float(b - a))
    positives = sum(p is not None and p < 0.05 for p in p_values)
    low, high = stats.proportion_interval(positives, len(names)) if names else (float("nan"),) * 2
    served: dict[str, Any] = {"experiments": len(names), "listeners_each": args.aa_listeners,
              "false_positives": positives, "rate": positives / max(len(names), 1),
              "interval": [low, high], "interval_excludes_zero": excludes,
              "p_above_5_percent": binomtest(positives, max(len(names), 1), 0.05,
                                             alternative="greater").pvalue,
              "seconds": round(seconds, 1), "lists_not_from_an_arm": not_picked_up,
              **aa_shape(p_values, differences)}  # fmt: skip
    if listeners and args.aa_resampled:
        served["resampled"] = aa_resampled(pool(listeners), args)
    return served


def aa_shape(p_values: list[float | None], differences: list[float]) -> dict[str, Any]:
    """What the served A/A p-values look like beyond the count below 0.05: how far they are
    from uniform (Kolmogorov-Smirnov), and whether one arm tends to come out ahead (the mean
    b - a listen-through difference over experiments, one-sample t; the experiments share
    listeners, so this is approximate)."""
    found = np.array([p for p in p_values if p is not None], dtype=float)
    if len(found) < 2:
        return {}
    diffs = np.asarray(differences, dtype=float)
    return {"p_values": [round(float(p), 4) for p in found],
            "uniform_ks_p": float(kstest(found, "uniform").pvalue),
            "mean_difference": float(diffs.mean()),
            "mean_difference_p": float(ttest_1samp(diffs, 0.0).pvalue)}  # fmt: skip


def aa_resampled(rows: ArmCounts, args: argparse.Namespace) -> dict[str, Any]:
    """A/A readouts without a server: ``aa_listeners`` of the served A/A listeners drawn
    with replacement, arms by a fair coin; the share with p < 0.05."""
    coin = np.random.default_rng([args.seed, 0xAA])

    def decide(picked: np.ndarray) -> tuple[bool, float]:
        heads = coin.random(len(picked)) < 0.5
        parts = {"a": take(rows, picked[heads]), "b": take(rows, picked[~heads])}
        p = ab_readout(parts, [50.0, 50.0], 0)["differences"][0]["listen_through"]["p_value"]
        return p is not None and p < 0.05, float("nan") if p is None else p

    (found,) = stats.resampled_power(decide, len(rows.listeners), [args.aa_listeners],
                                     args.aa_resampled, args.seed)  # fmt: skip
    return {"readouts": found.repeats, "pool": len(rows.listeners), "listeners_each": found.units,
            "false_positives": found.decided, "rate": found.value,
            "interval": [found.low, found.high]}  # fmt: skip


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    listener = result["listener"]
    lists = "one list" if listener["lists"] == 1 else f"{listener['lists']} lists"

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = []
    if "ab" in result and "interleave" in result:
        pairs.append(("default ALS vs 4 factors / 1 sweep", result))
    if "closer" in result:
        model = result["closer"]["model"]
        label = f"default ALS vs {model['factors']} factors / {model['iterations']} sweeps"
        pairs.append((label, result["closer"]))
    fig, axes = plt.subplots(2, len(pairs), figsize=(6.5 * len(pairs), 7.5), squeeze=False)
    for column, (title, pair) in enumerate(pairs):
        top, bottom = axes[0][column], axes[1][column]
        for key, label in (("ab", "A/B (Welch t over listeners)"),
                           ("interleave", "interleaving (binomial test)")):  # fmt: skip
            points = pair[key]["power"]
            n = [p["units"] for p in points]
            line = top.plot(n, [p["power"] for p in points], "o-", label=label)[0]
            top.fill_between(n, [p["low"] for p in points], [p["high"] for p in points],
                             color=line.get_color(), alpha=0.2)  # fmt: skip
            needed = pair[key]["listeners_for_power"]
            if needed is not None:
                top.axvline(needed, color=line.get_color(), linestyle=":")
            bottom.plot(n, [max(p["median_p"], 1e-300) for p in points], "o-", label=label)
        top.axhline(result["power_target"], color="grey", linestyle="--")
        top.set(xscale="log", ylim=(0, 1.02), title=title,
                ylabel="power (share of resamples naming default ALS)")  # fmt: skip
        bottom.axhline(0.05, color="grey", linestyle="--", label="p = 0.05")
        bottom.set(xscale="log", yscale="log", ylabel="median p-value",
                   xlabel=f"simulated listeners ({lists} of 10 each)")  # fmt: skip
        top.legend(fontsize=8)
        bottom.legend(fontsize=8)
    fig.suptitle("HetRec-2K: simulated listeners against musicrec serve, resampled experiments"
                 f" (activity spread {listener['activity_sd']:g})")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "../shared/data/lastfm-2k")
    parser.add_argument("--ab-listeners", type=int, default=1500)
    parser.add_argument("--il-listeners", type=int, default=1500, help="curve; read at 300")
    parser.add_argument("--closer-factors", type=int, default=4)
    parser.add_argument("--closer-iterations", type=int, default=15)
    parser.add_argument("--closer-listeners", type=int, default=0, help="0: every test listener")
    parser.add_argument("--repeats", type=int, default=500, help="resampled experiments per size")
    parser.add_argument("--power", type=float, default=0.8, help="the power to find sizes for")
    parser.add_argument("--aa-listeners", type=int, default=300)
    parser.add_argument("--aa-experiments", type=int, default=300)
    parser.add_argument("--aa-seconds", type=float, default=1000.0)
    parser.add_argument("--aa-resampled", type=int, default=4000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lists", type=int, default=1, help="lists per listener")
    parser.add_argument("--planned-draws", type=int, default=2000)
    parser.add_argument("--activity-sd", type=float, default=DEFAULT_ACTIVITY_SD,
                        help="SD of the listeners' log-odds of playing; 0: all alike")  # fmt: skip
    parser.add_argument("--phases", default="ab,interleave,closer,aa")
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    phases = set(args.phases.split(","))
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[:3]
    with tempfile.TemporaryDirectory(prefix="musicrec-online-") as tmp:
        work = Path(tmp)
        log("preparing HetRec-2K and training the models")
        prepare("hetrec2k", args.data, work / "dataset", PrepareConfig())
        dataset = Dataset.load(work / "dataset")
        models = {"default": work / "default", "worse": work / "worse", "closer": work / "closer"}
        train(work / "dataset", models["default"], TrainConfig())
        train(work / "dataset", models["worse"], TrainConfig(factors=4, iterations=1))
        if "closer" in phases:
            closer = TrainConfig(factors=args.closer_factors, iterations=args.closer_iterations)
            train(work / "dataset", models["closer"], closer)
        result: dict[str, Any] = {"test_listeners": dataset.test_frame["user_idx"].nunique(),
                                  "power_target": args.power, "repeats": args.repeats,
                                  "listener": listener_means(args),
                                  "data_activity": data_activity(args.data)}  # fmt: skip
        if "ab" in phases:
            log(f"A/B with {args.ab_listeners} listeners")
            pair = Pair("worse", args.ab_listeners, REQUIRED_SIZES, args.seed)
            result["ab"] = ab_phase("ab", pair, args, dataset, models, work)
        if "interleave" in phases:
            log(f"interleaving with {args.il_listeners} listeners")
            pair = Pair("worse", args.il_listeners, REQUIRED_SIZES, args.seed)
            result["interleave"] = interleave_phase("il", pair, args, dataset, models, work)
            at = [p for n, p in result["interleave"]["curve"] if n == min(300, args.il_listeners)]
            result["interleave"]["p_value_at_300"] = at[0] if at else None
        if "ab" in result and "interleave" in result:
            result["ratio"] = ratio(result["ab"], result["interleave"])
        if "closer" in phases:
            result["closer"] = closer_phase(args, dataset, models, work)
        if "aa" in phases:
            log(f"A/A: up to {args.aa_experiments} experiments or {args.aa_seconds:.0f} s")
            result["aa"] = aa_phase(args, dataset, models, work)
    drop_draws(result)
    with open("/proc/loadavg") as f:
        result["loadavg"] = {"before": load_before, "after": f.read().split()[:3]}
    result["cpus"] = os.cpu_count()
    if args.plot is not None:
        plot(result, args.plot)
    closer = result.get("closer", {})
    for key, found in (("ab", result.get("ab")), ("interleave", result.get("interleave")),
                       ("closer ab", closer.get("ab")),
                       ("closer interleave", closer.get("interleave"))):  # fmt: skip
        if found:
            log(
                f"{key}: "
                + str({k: v for k, v in found.items() if k not in ("simulator", "power")})
            )
    if "ratio" in result:
        log(f"first pair: ratio {result['ratio']}")
    if "closer" in result:
        log(f"closer: ndcg@10 {result['closer']['ndcg@10']}, ratio {result['closer']['ratio']}")
    if "aa" in result:
        log(f"aa: {result['aa']}")
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
