"""Experiments in serving: which model answers a listener, and what each answer showed.

:class:`ExperimentRuntime` is the per-process view of the running experiments. The API's
watcher calls :meth:`ExperimentRuntime.refresh` at every watch interval: it reads the running
experiments from the store, loads each running arm's model in that background thread (an
artifact path or a ``models:/`` URI, once per distinct reference) and swaps the new set in
with one reference assignment, as the champion is swapped; requests in flight finish on the
set they started with. A stopped experiment (or arm) drops out at the next refresh.

A request asks :meth:`ExperimentRuntime.serve` for its list, handing it ``make(model, n)``:
that model's list of ``n`` under the request's rules. A listener covered by a running
experiment (:mod:`musicrec.online.assign`) gets, in ``ab`` mode, their arm's answer (when the
experiment explores, ``k`` artists sampled Plackett-Luce style from the arm's top
:func:`exploration_depth` listable artists, seeded from the request id, each with its
propensity, see :mod:`musicrec.online.explore`); in
``interleave`` mode both arms' answers merged by team draft (:mod:`musicrec.online.interleave`,
seeded from the request id, so a list is reproducible), each position credited to the arm
that contributed it. A listener of a stopped arm, of an arm whose model did not load, or
outside every experiment gets the champion's answer and no experiment fields.

:meth:`ExperimentRuntime.log` packs every served list into an impression log row for the batched
:class:`~musicrec.events.impression_writer.ImpressionWriter` (never blocking the request).
Per-arm latency, errors, impressions and outcomes go to
:class:`~musicrec.online.metrics.ExperimentMetrics` and, in this process, to the counts
:meth:`ExperimentRuntime.enforce` hands to :func:`~musicrec.online.guardrails.enforce_guardrails`.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from musicrec.errors import MusicrecError
from musicrec.events.impression_writer import ImpressionWriter
from musicrec.events.impressions import pack
from musicrec.events.outcomes import REQUEST_ID
from musicrec.events.store import EventStore
from musicrec.online.experiments import Experiment, ExperimentStore
from musicrec.online.explore import exploration_depth, sample_list, sampling_scores
from musicrec.online.guardrails import ArmObservation, Breach, enforce_guardrails
from musicrec.online.interleave import team_draft
from musicrec.online.metrics import ExperimentMetrics
from musicrec.serving.recommender import Rec, Recommender

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_PATTERN = re.compile(REQUEST_ID)  # fits the impression log
LATENCY_WINDOW = 10_000  # recent list latencies per arm behind the p99 guardrail
REMEMBERED_REQUESTS = 100_000  # recent experiment requests, to credit outcomes per arm
Make = Callable[[Recommender, int], list[Rec]]  # model, n -> its list of n under the rules


def request_id(supplied: str | None) -> str:
    """The client's id when it is valid (1-64 of ``A-Z a-z 0-9 . _ : -``), else a new one."""
    if supplied and REQUEST_ID_PATTERN.fullmatch(supplied):
        return supplied
    return uuid.uuid4().hex


def request_seed(rid: str) -> int:
    """A random seed from a request id: a sampled list is reproducible from its log."""
    return int.from_bytes(hashlib.blake2b(rid.encode(), digest_size=8).digest(), "big")


def explore(
    recs: Sequence[Rec], k: int, temperature: float, rid: str
) -> tuple[list[Rec], tuple[float, ...]]:
    """``k`` of ``recs`` (an arm's ranked candidates) sampled Plackett-Luce at ``temperature``,
    seeded from the request id; with each, P(that artist at that position)."""
    if not recs:
        return [], ()
    scores = sampling_scores(np.array([rec.score for rec in recs], dtype=np.float64))
    sampled = sample_list(scores, k, temperature, np.random.default_rng(request_seed(rid)))
    return [recs[i] for i in sampled.order], tuple(float(p) for p in sampled.marginal)


@dataclass(frozen=True)
class Served:
    """One answered list and what it is logged and labelled with."""

    request_id: str
    recs: list[Rec]
    model_version: str
    experiment: str | None = None
    arm: str | None = None  # ab mode: the listener's arm
    teams: tuple[str, ...] | None = None  # interleave mode: the arm of each position
    versions: tuple[str, ...] | None = None  # interleave mode: the model of each position
    propensities: tuple[float, ...] | None = None  # exploring arm: P(artist at its position)

    def envelope(self) -> dict[str, Any]:
        """The response fields beside the list (the last ones of every list response)."""
        return {
            "request_id": self.request_id,
            "experiment": self.experiment,
            "arm": self.arm,
            "teams": list(self.teams) if self.teams is not None else None,
        }


@dataclass
class ArmSeen:
    """What this process saw of one arm (the guardrails' in-process evidence)."""

    requests: int = 0
    errors: int = 0
    impressions: int = 0
    bans: int = 0
    skips: int = 0
    latencies: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW)
    )

    def observation(self) -> ArmObservation:
        p99 = float(np.percentile(np.fromiter(self.latencies, float), 99)) * 1000.0
        return ArmObservation(
            requests=self.requests,
            errors=self.errors,
            p99_ms=p99 if self.latencies else None,
            impressions=self.impressions,
            bans=self.bans,
            skips=self.skips,
        )


@dataclass(frozen=True)
class Active:
    """A running experiment and the loaded models of its running arms."""

    experiment: Experiment
    models: Mapping[str, Recommender]


class ExperimentRuntime:
    """Running experiments, their loaded arms, the impression writer and per-arm counts."""

    def __init__(
        self,
        store: EventStore | None,
        loader: Callable[[str], Recommender],
        metrics: ExperimentMetrics | None = None,
        writer: ImpressionWriter | None = None,
    ):
        self.store = store
        self.loader = loader
        self.metrics = metrics
        self.writer = writer
        self.active: tuple[Active, ...] = ()
        self.seen: dict[tuple[str, str], ArmSeen] = {}
        self._loaded: dict[str, Recommender] = {}  # model reference -> runtime
        self._failed: set[tuple[str, str, str]] = set()  # (experiment, arm, model) not loaded
        self._requests: collections.OrderedDict[str, tuple[str, tuple[str, ...]]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the watcher's side

    def refresh(self) -> bool:
        """Apply the store's running experiments; True when the served set changed."""
        if self.store is None:
            return False
        running = ExperimentStore(self.store).experiments(running_only=True)
        loaded: dict[str, Recommender] = {}
        active = []
        for experiment in running:
            models = {}
            for arm in experiment.arms:
                if arm.stopped_at is not None:
                    if self.metrics is not None:
                        self.metrics.set_stopped(experiment.name, arm.name)
                    continue
                model = self._load(experiment.name, arm.name, arm.model, loaded)
                if model is not None:
                    models[arm.name] = model
            active.append(Active(experiment, models))
        changed = _signature(active) != _signature(self.active)
        self._loaded = loaded  # models no experiment uses any more are released
        self.active = tuple(active)  # one assignment: requests read the old or the new set
        if changed:
            log.info("experiments served: %s", _signature(active) or "none")
        return changed

    def _load(
        self, experiment: str, arm: str, model: str, loaded: dict[str, Recommender]
    ) -> Recommender | None:
        if model in loaded:
            return loaded[model]
        if model in self._loaded:
            loaded[model] = self._loaded[model]
            return loaded[model]
        if (experiment, arm, model) in self._failed:
            return None
        try:
            loaded[model] = self.loader(model)
        except (MusicrecError, OSError, ValueError) as exc:
            log.error(
                "experiment %s arm %s: %s; its listeners get the champion", experiment, arm, exc
            )
            self._failed.add((experiment, arm, model))
            return None
        log.info("experiment %s arm %s: loaded %s", experiment, arm, loaded[model].version)
        return loaded[model]

    def enforce(self) -> list[Breach]:
        """Stop every arm whose guardrails this process's counts breach (see guardrails)."""
        if self.store is None:
            return []
        recorded: list[Breach] = []
        for active in self.active:
            experiment = active.experiment
            if not experiment.guardrails:
                continue
            observations = {
                arm: seen.observation()
                for (name, arm), seen in list(self.seen.items())
                if name == experiment.name
            }
            breaches = enforce_guardrails(self.store, experiment.name, observations)
            for breach in breaches:
                log.warning("experiment %s arm %s stopped: %s", experiment.name, breach.arm,
                            breach.reason)  # fmt: skip
                if self.metrics is not None:
                    self.metrics.set_stopped(experiment.name, breach.arm)
            recorded += breaches
        return recorded

    # ------------------------------------------------------------------ the request's side

    def assignment(self, listener: str) -> tuple[Active, str | None] | None:
        """The listener's running experiment and arm (None in interleave mode), if served."""
        for active in self.active:
            experiment = active.experiment
            if not experiment.covers(listener):
                continue
            if experiment.mode == "interleave":
                return (active, None) if len(active.models) == 2 else None
            arm = experiment.split.arm(listener)
            return (active, arm) if arm in active.models else None
        return None

    def serve(
        self,
        rid: str,
        listener: str,
        champion: Recommender,
        make: Make,
        k: int,
    ) -> Served:
        """The list for ``listener``: from their arm, both arms interleaved, or the champion."""
        found = self.assignment(listener) if self.active else None
        if found is None:
            return Served(rid, make(champion, k), champion.version)
        active, arm = found
        name = active.experiment.name
        arms = (arm,) if arm is not None else tuple(active.models)
        started = time.perf_counter()
        try:
            if arm is not None:
                served = self._arm(rid, active, arm, make, k)
            else:
                served = self._interleave(rid, active, make, k)
        except MusicrecError:  # a client error (unknown user, mood): not the arm's fault
            raise
        except Exception:
            self._observe(name, arms, time.perf_counter() - started, None, error=True)
            raise
        self._observe(name, arms, time.perf_counter() - started, served)
        return served

    def _arm(self, rid: str, active: Active, arm: str, make: Make, k: int) -> Served:
        """The arm's list: its top ``k``, or ``k`` sampled from its top candidates (explore)."""
        model, name = active.models[arm], active.experiment.name
        temperature = active.experiment.temperature
        if not temperature:  # None (0 is refused at start): the deterministic list
            return Served(rid, make(model, k), model.version, name, arm)
        recs, propensities = explore(make(model, exploration_depth(k)), k, temperature, rid)
        return Served(rid, recs, model.version, name, arm, propensities=propensities)

    def _interleave(self, rid: str, active: Active, make: Make, k: int) -> Served:
        (first, a), (second, b) = active.models.items()
        lists = {first: make(a, k), second: make(b, k)}
        merged = team_draft(
            [r.artist for r in lists[first]],
            [r.artist for r in lists[second]],
            k,
            np.random.default_rng(request_seed(rid)),
            teams=(first, second),
        )
        by_artist = {team: {r.artist: r for r in recs} for team, recs in lists.items()}
        recs = [
            by_artist[t][artist] for artist, t in zip(merged.artists, merged.teams, strict=True)
        ]
        versions = {first: a.version, second: b.version}
        version = a.version if a.version == b.version else f"{a.version}+{b.version}"
        return Served(
            rid,
            recs,
            version,
            active.experiment.name,
            None,
            merged.teams,
            tuple(versions[t] for t in merged.teams),
        )

    def _observe(
        self, name: str, arms: Sequence[str], seconds: float, served: Served | None,
        error: bool = False,
    ) -> None:  # fmt: skip
        for arm in arms:
            if served is None:
                shown = 0
            elif served.teams is None:
                shown = len(served.recs)
            else:
                shown = served.teams.count(arm)
            if self.metrics is not None:
                self.metrics.observe_list(name, arm, seconds, shown, error=error)
            seen = self.seen.get((name, arm))
            if seen is None:
                seen = self.seen.setdefault((name, arm), ArmSeen())
            seen.requests += 1
            seen.errors += error
            seen.impressions += shown
            seen.latencies.append(seconds)
        if served is not None:
            teams = served.teams or (str(served.arm),) * len(served.recs)
            with self._lock:
                self._requests[served.request_id] = (name, teams)
                if len(self._requests) > REMEMBERED_REQUESTS:
                    self._requests.popitem(last=False)

    def log(self, served: Served, listener: str | None) -> None:
        """Queue the list's impressions (dropped, counted, when the queue is full)."""
        if self.writer is None or not served.recs:
            return
        self.writer.write(
            [
                pack(
                    served.request_id,
                    listener or "",
                    [rec.artist for rec in served.recs],
                    [rec.score for rec in served.recs],
                    served.versions or served.model_version,
                    served.experiment,
                    served.teams or served.arm,
                    served.propensities,
                )
            ]
        )

    def outcome(self, rid: str, position: int | None, kind: str) -> None:
        """Credit an event answering request ``rid`` to its arm (this process's metrics).

        Only requests this process served are known here; the report joins every event
        with every impression in the store.
        """
        with self._lock:
            known = self._requests.get(rid)
        if known is None:
            return
        name, teams = known
        if position is not None and 0 <= position < len(teams):
            arm = teams[position]
        elif len(set(teams)) == 1:
            arm = teams[0]
        else:
            return
        if self.metrics is not None:
            self.metrics.observe_outcome(name, arm, kind)
        seen = self.seen.setdefault((name, arm), ArmSeen())
        seen.bans += kind == "ban"
        seen.skips += kind == "skip"

    def close(self) -> None:
        """Commit every queued impression (a clean stop loses none)."""
        if self.writer is not None:
            stats = self.writer.stop()
            log.info("impressions: %d written, %d dropped", stats.written, stats.dropped)


def _signature(active: Sequence[Active]) -> list[tuple[str, tuple[str, ...]]]:
    return [(a.experiment.name, tuple(sorted(a.models))) for a in active]
