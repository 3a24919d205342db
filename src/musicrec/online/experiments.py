"""Experiment definitions, kept in the event store so every worker and replica agrees.

An experiment has a name, two or more arms (each a name and a model reference: an artifact
path or a ``models:/`` URI), the share of listeners each arm gets (percent, summing to 100),
a mode (``ab``: each listener sees one arm; ``interleave``: two arms merged by team draft),
the salt of its assignment (default: its name), the population it covers (a percentage range
of listeners, default all of them), guardrail thresholds, and an optional exploration
temperature. It runs until stopped, with a reason; an arm can be stopped alone (guardrails).

Two running experiments never cover the same listener: starting one whose population overlaps
a running one's is refused, checked inside the transaction that writes it, after taking the
store's experiment lock row, so two concurrent starts cannot both pass. Names are unique for
good (a report of a stopped experiment stays readable).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import sqlalchemy as sa

from musicrec.errors import ExperimentError, StoreError, UnknownExperimentError
from musicrec.events.impressions import ensure_tables
from musicrec.events.store import EventStore
from musicrec.online.assign import Split, in_population, overlaps, share_buckets

MODES = ("ab", "interleave")
GUARDRAILS = {  # name -> what it bounds (an arm is stopped when its value exceeds it)
    "p99_ms": "99th-percentile latency of the arm's lists, milliseconds",
    "error_rate": "share of the arm's requests that failed",
    "ban_rate": "bans per impression",
    "skip_rate": "skips per impression",
}
RATE_GUARDRAILS = ("error_rate", "ban_rate", "skip_rate")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MODEL_MAX = 1000

metadata = sa.MetaData()
experiments_table = sa.Table(
    "experiments",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("salt", sa.String(200), nullable=False),
    sa.Column("population_low", sa.Float, nullable=False),
    sa.Column("population_high", sa.Float, nullable=False),
    sa.Column("temperature", sa.Float, nullable=True),
    sa.Column("guardrails", sa.Text, nullable=False),  # JSON object
    sa.Column("status", sa.String(16), nullable=False),  # running | stopped
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("stopped_at", sa.Float, nullable=True),
    sa.Column("stop_reason", sa.Text, nullable=True),
)
arms_table = sa.Table(
    "experiment_arms",
    metadata,
    sa.Column("experiment", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("ordinal", sa.Integer, nullable=False),
    sa.Column("model", sa.String(MODEL_MAX), nullable=False),
    sa.Column("share", sa.Float, nullable=False),
    sa.Column("version", sa.String(200), nullable=True),  # the model version when started
    sa.Column("stopped_at", sa.Float, nullable=True),
    sa.Column("stop_reason", sa.Text, nullable=True),
)
lock_table = sa.Table(  # one row; updating it serialises experiment starts on every database
    "experiment_lock",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("generation", sa.Integer, nullable=False),
)


@dataclass(frozen=True)
class Arm:
    name: str
    model: str
    share: float
    version: str | None = None
    stopped_at: float | None = None
    stop_reason: str | None = None


@dataclass(frozen=True)
class ExperimentSpec:
    """What ``musicrec online start`` (or the admin API) asks for, validated on creation."""

    name: str
    arms: tuple[Arm, ...]
    mode: str = "ab"
    salt: str | None = None  # default: the name
    population: tuple[float, float] = (0.0, 100.0)
    guardrails: dict[str, float] = field(default_factory=dict)
    temperature: float | None = None

    def validate(self) -> None:
        """Raise :class:`ExperimentError` naming the first thing wrong."""
        _check_name(self.name, "experiment")
        if self.mode not in MODES:
            raise ExperimentError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        if len(self.arms) < 2:
            raise ExperimentError("an experiment needs at least two arms (--arm NAME=MODEL)")
        names = [arm.name for arm in self.arms]
        for arm in self.arms:
            _check_name(arm.name, "arm")
            if not arm.model.strip() or len(arm.model) > MODEL_MAX:
                raise ExperimentError(f"arm {arm.name!r} needs a model (a path or models:/ URI)")
        if len(set(names)) != len(names):
            raise ExperimentError(f"arm names must differ: {', '.join(names)}")
        share_buckets([arm.share for arm in self.arms])
        if self.mode == "interleave" and len(self.arms) != 2:
            raise ExperimentError("interleave mode merges exactly two arms")
        if self.mode == "interleave" and self.temperature is not None:
            raise ExperimentError("exploration (a temperature) applies to ab mode only")
        if self.temperature is not None and not 0 < self.temperature <= 100:
            raise ExperimentError(f"temperature must be in (0, 100], not {self.temperature:g}")
        if self.salt is not None and not 0 < len(self.salt) <= 200:
            raise ExperimentError("the salt must be 1 to 200 characters")
        for key, value in self.guardrails.items():
            if key not in GUARDRAILS:
                raise ExperimentError(
                    f"unknown guardrail {key!r}; known: {', '.join(sorted(GUARDRAILS))}"
                )
            if not value > 0 or (key in RATE_GUARDRAILS and value > 1):
                bound = "in (0, 1]" if key in RATE_GUARDRAILS else "positive"
                raise ExperimentError(f"guardrail {key} must be {bound}, not {value:g}")


def _check_name(name: str, what: str) -> None:
    if not NAME_PATTERN.fullmatch(name or ""):
        raise ExperimentError(
            f"{what} name {name!r} must be 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )


@dataclass(frozen=True)
class Experiment:
    """A stored experiment."""

    name: str
    mode: str
    salt: str
    population: tuple[float, float]
    arms: tuple[Arm, ...]
    guardrails: dict[str, float]
    temperature: float | None
    status: str
    started_at: float
    stopped_at: float | None = None
    stop_reason: str | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"

    @cached_property
    def split(self) -> Split:
        return Split.from_shares(
            [a.name for a in self.arms], [a.share for a in self.arms], self.salt
        )

    def covers(self, listener: str) -> bool:
        """Whether the listener is in this experiment's population."""
        return in_population(listener, *self.population)

    def arm_for(self, listener: str) -> str | None:
        """The listener's arm in ab mode (None outside the population)."""
        return self.split.arm(listener) if self.covers(listener) else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mode": self.mode,
            "salt": self.salt,
            "population": list(self.population),
            "arms": [vars(arm) for arm in self.arms],
            "guardrails": self.guardrails,
            "temperature": self.temperature,
            "status": self.status,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "stop_reason": self.stop_reason,
        }


class ExperimentStore:
    """Create, read and stop experiments in an event store's database."""

    def __init__(self, store: EventStore):
        self.store = store

    def _ready(self) -> None:
        ensure_tables(self.store, metadata)
        try:
            with self.store.writes.begin() as conn:
                if conn.execute(sa.select(lock_table.c.id)).first() is None:
                    conn.execute(sa.insert(lock_table).values(id=1, generation=0))
        except sa.exc.IntegrityError:
            pass  # another process inserted it first

    def create(self, spec: ExperimentSpec, now: float | None = None) -> Experiment:
        """Store a running experiment, or raise :class:`ExperimentError` and store nothing."""
        spec.validate()
        self._ready()
        now = time.time() if now is None else now
        try:
            with self.store.writes.begin() as conn:
                conn.execute(sa.update(lock_table).values(generation=lock_table.c.generation + 1))
                self._check_free(conn, spec)
                conn.execute(
                    sa.insert(experiments_table).values(
                        name=spec.name,
                        mode=spec.mode,
                        salt=spec.salt or spec.name,
                        population_low=spec.population[0],
                        population_high=spec.population[1],
                        temperature=spec.temperature,
                        guardrails=json.dumps(spec.guardrails, sort_keys=True),
                        status="running",
                        started_at=now,
                    )
                )
                conn.execute(
                    sa.insert(arms_table),
                    [
                        {
                            "experiment": spec.name,
                            "name": arm.name,
                            "ordinal": i,
                            "model": arm.model,
                            "share": float(arm.share),
                            "version": arm.version,
                        }
                        for i, arm in enumerate(spec.arms)
                    ],
                )
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(
                f"cannot store experiment {spec.name!r} in {self.store}: {exc}"
            ) from exc
        return self.get(spec.name)

    @staticmethod
    def _check_free(conn: sa.Connection, spec: ExperimentSpec) -> None:
        e = experiments_table
        status = conn.execute(sa.select(e.c.status).where(e.c.name == spec.name)).scalar()
        if status is not None:
            raise ExperimentError(
                f"an experiment named {spec.name!r} exists ({status}); choose another name"
            )
        rows = conn.execute(
            sa.select(e.c.name, e.c.population_low, e.c.population_high).where(
                e.c.status == "running"
            )
        ).all()
        for name, low, high in rows:
            if overlaps((low, high), spec.population):
                raise ExperimentError(
                    f"experiment {name!r} already runs on listeners {low:g}-{high:g} %; "
                    "stop it or give a population that does not overlap"
                )

    def get(self, name: str) -> Experiment:
        """The experiment called ``name``, or :class:`UnknownExperimentError`."""
        found = self._load(experiments_table.c.name == name)
        if not found:
            known = ", ".join(e.name for e in self.experiments()) or "none yet"
            raise UnknownExperimentError(f"no experiment named {name!r} (known: {known})")
        return found[0]

    def experiments(self, running_only: bool = False) -> list[Experiment]:
        """Experiments, oldest first."""
        return self._load(experiments_table.c.status == "running" if running_only else None)

    def running_for(self, listener: str) -> Experiment | None:
        """The running experiment whose population holds ``listener``, if any."""
        return next((e for e in self.experiments(running_only=True) if e.covers(listener)), None)

    def _load(self, where: Any) -> list[Experiment]:
        if not self.store.exists:
            return []
        self._ready()
        query = sa.select(experiments_table).order_by(experiments_table.c.started_at)
        if where is not None:
            query = query.where(where)
        arms_query = sa.select(arms_table).order_by(arms_table.c.experiment, arms_table.c.ordinal)
        with self.store.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
            arms_rows = (
                conn.execute(
                    arms_query.where(arms_table.c.experiment.in_([r["name"] for r in rows]))
                )
                .mappings()
                .all()
            )
        arms: dict[str, list[Arm]] = {}
        for a in arms_rows:
            arms.setdefault(a["experiment"], []).append(
                Arm(
                    a["name"],
                    a["model"],
                    a["share"],
                    a["version"],
                    a["stopped_at"],
                    a["stop_reason"],
                )
            )
        return [
            Experiment(
                name=r["name"],
                mode=r["mode"],
                salt=r["salt"],
                population=(r["population_low"], r["population_high"]),
                arms=tuple(arms.get(r["name"], [])),
                guardrails=json.loads(r["guardrails"]),
                temperature=r["temperature"],
                status=r["status"],
                started_at=r["started_at"],
                stopped_at=r["stopped_at"],
                stop_reason=r["stop_reason"],
            )
            for r in rows
        ]

    def stop(self, name: str, reason: str, now: float | None = None) -> Experiment:
        """Stop a running experiment, recording why."""
        if not reason.strip():
            raise ExperimentError("say why the experiment stops (--reason)")
        experiment = self.get(name)
        if not experiment.running:
            raise ExperimentError(
                f"experiment {name!r} already stopped: {experiment.stop_reason or 'no reason'}"
            )
        e = experiments_table
        with self.store.writes.begin() as conn:
            conn.execute(
                sa.update(e)
                .where(e.c.name == name, e.c.status == "running")
                .values(
                    status="stopped",
                    stopped_at=time.time() if now is None else now,
                    stop_reason=reason.strip(),
                )
            )
        return self.get(name)

    def stop_arm(self, name: str, arm: str, reason: str, now: float | None = None) -> Experiment:
        """Stop one arm (a guardrail breach): its listeners go back to the default model."""
        self.stop_arm_once(name, arm, reason, now)
        return self.get(name)

    def stop_arm_once(self, name: str, arm: str, reason: str, now: float | None = None) -> bool:
        """Stop one arm unless it is stopped already; True when this call stopped it.

        The update only touches an arm without a stop time, so when several workers see the
        same breach at once exactly one records it (and its reason).
        """
        experiment = self.get(name)
        if arm not in {a.name for a in experiment.arms}:
            raise ExperimentError(f"experiment {name!r} has no arm {arm!r}")
        a = arms_table
        with self.store.writes.begin() as conn:
            result = conn.execute(
                sa.update(a)
                .where(a.c.experiment == name, a.c.name == arm, a.c.stopped_at.is_(None))
                .values(stopped_at=time.time() if now is None else now, stop_reason=reason)
            )
        return bool(result.rowcount)
