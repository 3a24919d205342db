"""Every worker follows the champion: a thread that re-resolves the served model and swaps.

At each interval a worker resolves its target (the model pointer set by ``/admin/reload`` when
there is one, else the configured path or ``models:/name@alias``) and loads it in the
background when it differs from what it serves: another version behind the alias, or an
artifact directory that was replaced. The swap is one reference assignment, so requests
in flight finish on the old model and none fails. Each check also writes a heartbeat (worker,
version) to the event store, which ``GET /model/workers`` lists.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from musicrec import layout
from musicrec.api import experiments_runtime
from musicrec.api.loader import load_recommender
from musicrec.api.settings import Settings
from musicrec.errors import ModelLoadError, MusicrecError
from musicrec.events.store import EventStore, worker_id
from musicrec.tracking.registry import resolve_model_path

log = logging.getLogger(__name__)


def pointer_name(settings: Settings) -> str:
    """Replicas configured with the same model share one pointer."""
    return hashlib.sha256((settings.model or "").encode()).hexdigest()[:16]


def artifact_stamp(path: Path) -> tuple[str, int, int] | None:
    """Identity of the artifact at ``path``: a replaced directory has a new manifest file
    (every kind has one; artifacts are written whole and renamed into place).

    (Version strings repeat: two models trained on one dataset on one day share one.)
    """
    try:
        info = (path / layout.MANIFEST).stat()
    except OSError:
        return None
    return str(path.resolve()), info.st_ino, info.st_mtime_ns


def remember(app: FastAPI, target: str, path: Path) -> None:
    """Record what the served model was loaded from, for the next check to compare."""
    app.state.served_target = target
    app.state.served_stamp = artifact_stamp(path)


def swap(app: FastAPI, target: str, trigger: str, blocking: bool = True) -> Any:
    """Load ``target`` and swap it in under the reload lock; the previous model (or ``None``).

    Raises :class:`ModelLoadError`; returns ``False`` when another swap holds the lock and
    ``blocking`` is false.
    """
    settings: Settings = app.state.settings
    lock: threading.Lock = app.state.reload_lock
    if not lock.acquire(blocking=blocking):
        return False
    try:
        recommender = load_recommender(target, settings)
        previous = app.state.recommender
        app.state.recommender = recommender
        app.state.metrics.set_model(recommender)
        app.state.live_metrics.set_model(recommender)
        app.state.live_metrics.swaps.labels(trigger=trigger).inc()
        remember(app, target, Path(recommender.artifact.path))
    finally:
        lock.release()
    log.info(
        "serving model %s (%s, was %s)",
        recommender.version,
        trigger,
        previous.version if previous is not None else None,
    )
    return previous


class ModelWatcher:
    """A daemon thread checking every ``interval`` seconds whether to swap models."""

    def __init__(self, app: FastAPI, interval: float):
        self.app = app
        self.interval = interval
        self.worker = worker_id()
        self.generation = 0  # model pointer generation applied by this worker
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)

    @property
    def store(self) -> EventStore | None:
        store: EventStore | None = self.app.state.event_store
        return store

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self.store is not None:
            try:
                self.store.forget_worker(self.worker)
            except Exception as exc:  # shutting down: report, never raise
                log.warning("could not remove worker heartbeat: %s", exc)

    def _run(self) -> None:
        while True:
            try:
                self.check()
            except Exception:  # a watcher must survive anything; the next check retries
                log.exception("model watch check failed")
            if self._stop.wait(self.interval):
                return

    def target(self) -> str | None:
        """The pointer's target when it moved since this worker last applied it, else config."""
        store = self.store
        settings: Settings = self.app.state.settings
        if store is not None:
            pointer = store.pointer(pointer_name(settings))
            if pointer is not None:
                if pointer.generation != self.generation:
                    self.generation = pointer.generation
                    self.app.state.served_target = None  # a new generation always reloads
                return pointer.target
        return settings.model

    def check(self) -> bool:
        """One check: swap when the target resolves to something else; True if swapped."""
        target = self.target()
        current = self.app.state.recommender
        swapped = False
        if target:
            try:
                path = resolve_model_path(target)
            except ModelLoadError as exc:
                log.warning("cannot resolve %s: %s", target, exc)
                path = None
            if path is not None and self._differs(target, path, current):
                try:
                    swapped = swap(self.app, target, "watch", blocking=False) is not False
                except (ModelLoadError, MusicrecError) as exc:
                    log.warning("keeping model %s: %s", getattr(current, "version", None), exc)
        self.app.state.live_metrics.refresh_age()
        experiments_runtime.check(self.app)  # started / stopped experiments, guardrails
        if self.store is not None:
            served = self.app.state.recommender
            self.store.heartbeat(
                self.worker,
                served.version if served is not None else None,
                str(served.artifact.path) if served is not None else None,
            )
        return swapped

    def _differs(self, target: str, path: Path, current: Any) -> bool:
        if current is None or self.app.state.served_target != target:
            return True
        stamp = artifact_stamp(path)  # None while a directory is being replaced: wait
        return stamp is not None and stamp != self.app.state.served_stamp
