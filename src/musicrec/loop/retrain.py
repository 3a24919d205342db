"""Continuous training: base data + events -> prepare -> train -> evaluate -> gate -> promote.

One call of :func:`retrain` is one cycle, and it is safe to repeat:

- **Idempotent.** The cycle's key hashes the base input (paths, sizes, mtimes), the event
  watermark (highest event id read) and every parameter. A key that already completed returns
  its earlier outcome without work, so cron may call it as often as it likes. A file lock in
  the work directory keeps two cycles on one host from overlapping.
- **Events counted once.** The model's manifest records ``events_watermark``; serving folds in
  only what came after it (see :mod:`musicrec.serving.profile`).
- **Same stages as by hand.** :func:`~musicrec.data.prepare.build_dataset`, then
  :func:`~musicrec.pipeline.sequence.train_and_evaluate` observed by MLflow (one run: the
  training, then the evaluation with its per-user values; the item index is built once here,
  not in every API worker), then :func:`~musicrec.tracking.registry.promote`, called once.
- **A fair gate, for every kind.** New events change the dataset, so the champion's recorded
  metric (on the old dataset) is not comparable. Both are scored on the new split's test pairs
  that neither was trained on, the champion the way serving would use it
  (:mod:`musicrec.loop.champion`), and the paired gate (:mod:`musicrec.pipeline.gate`,
  non-inferiority by default) decides on those per-user values.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from musicrec import layout
from musicrec.config import TrainConfig
from musicrec.data.dataset import Dataset
from musicrec.data.prepare import PrepareConfig, build_dataset
from musicrec.data.sources import RawInteractions, load
from musicrec.errors import RetrainError
from musicrec.events.forget import forget_key, without_forgotten
from musicrec.events.schema import WATERMARK_KEY, interactions
from musicrec.events.store import DEFAULT_URL, EventStore
from musicrec.fsutil import atomic_dir, read_json, write_json_atomic
from musicrec.loop.champion import unseen_judge
from musicrec.models.artifact import ModelArtifact
from musicrec.pipeline.gate import GateConfig, GateResult
from musicrec.pipeline.sequence import train_and_evaluate
from musicrec.text import normalize_name
from musicrec.tracking import MlflowObserver, default_model_name, get_client
from musicrec.tracking.registry import promote

log = logging.getLogger(__name__)

STATE_FILE = "retrain-state.json"
LOCK_FILE = ".retrain.lock"
KEY_TAG = "retrain_key"


@dataclass(frozen=True)
class RetrainConfig:
    """Everything one cycle depends on; its hash (with the inputs) is the cycle's key."""

    source: str
    input: Path
    workdir: Path
    events_url: str = DEFAULT_URL
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    model_name: str | None = None  # None: the store's default registered model
    experiment: str = "musicrec"
    gate: GateConfig = field(default_factory=lambda: GateConfig(mode="non-inferiority"))
    ks: tuple[int, ...] = (10, 20)


@dataclass
class RetrainResult:
    """What a cycle did: ``promoted``, ``kept`` (gate refused) or ``up_to_date`` (no work)."""

    status: str
    key: str
    watermark: int
    events: int
    reason: str
    version: str | None = None
    champion: str | None = None
    fingerprint: str | None = None
    model_dir: str | None = None
    candidate_ndcg: float | None = None
    champion_ndcg: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- merge


def merge_events(
    raw: RawInteractions, events: pd.DataFrame, now: float | None = None
) -> RawInteractions:
    """``raw`` plus the plays of ``events`` (same identities: user id, normalized artist name).

    (user, artist) pairs banned at ``now`` (default: the time of the call) are removed from the
    base rows as well; a ban whose ``until`` has passed removes nothing. Events carry their
    timestamps only when the base source has timestamps (a split must not mix the two).
    """
    if events.empty:
        return raw
    reduced = interactions(events, key=normalize_name, now=now)
    items = raw.items
    item_index = pd.Index(items["artist_key"])
    plays = reduced.plays
    new_keys = pd.unique(plays.loc[item_index.get_indexer(plays["artist_key"]) < 0, "artist_key"])
    if len(new_keys):
        first = plays.drop_duplicates("artist_key").set_index("artist_key")["artist"]
        added = pd.DataFrame(
            {"artist_key": new_keys, "artist_name": first.loc[new_keys].to_numpy(), "mbid": None}
        )
        items = pd.concat([items, added[items.columns]], ignore_index=True)
        item_index = pd.Index(items["artist_key"])
    user_index = pd.Index(raw.user_ids.astype(str))
    new_users = pd.unique(plays.loc[user_index.get_indexer(plays["user_id"]) < 0, "user_id"])
    user_ids = np.concatenate([raw.user_ids.astype(object), np.asarray(new_users, dtype=object)])
    user_index = pd.Index(user_ids.astype(str))

    user_codes = raw.user_codes.astype(np.int64)
    item_codes = raw.item_codes.astype(np.int64)
    keep = np.ones(len(user_codes), dtype=bool)
    bans = reduced.bans
    if len(bans):
        ban_users = user_index.get_indexer(bans["user_id"])
        ban_items = item_index.get_indexer(bans["artist_key"])
        known = (ban_users >= 0) & (ban_items >= 0)
        banned = ban_users[known] * len(items) + ban_items[known]
        keep = ~np.isin(user_codes * len(items) + item_codes, banned)
    event_users = user_index.get_indexer(plays["user_id"])
    event_items = item_index.get_indexer(plays["artist_key"])
    timestamps = None
    if raw.timestamps is not None:
        timestamps = np.concatenate(
            [raw.timestamps[keep], plays["timestamp"].to_numpy(dtype=np.int64)]
        )
    return RawInteractions(
        user_codes=np.concatenate([user_codes[keep], event_users]).astype(np.int32),
        item_codes=np.concatenate([item_codes[keep], event_items]).astype(np.int32),
        plays=np.concatenate([raw.plays[keep], plays["plays"].to_numpy(dtype=raw.plays.dtype)]),
        user_ids=user_ids,
        items=items,
        timestamps=timestamps,
        tags=raw.tags,
        rows_read=raw.rows_read + len(events),
        rejected=raw.rejected,
        missing_artist=raw.missing_artist,
    )


# ----------------------------------------------------------------------------- the cycle


def input_stamp(path: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime_ns) of every file of the base input."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [(str(p.relative_to(path) if p != path else p.name), *_stat(p)) for p in files]


def _stat(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_size, info.st_mtime_ns


def cycle_key(config: RetrainConfig, watermark: int) -> str:
    """Hash of everything the cycle's output depends on."""
    payload = {
        "source": config.source,
        "input": input_stamp(config.input),
        "events_url": config.events_url,
        "watermark": watermark,
        "prepare": asdict(config.prepare),
        "train": config.train.to_dict(),
        "model_name": config.model_name,
        "gate": config.gate.to_dict(),
        "ks": list(config.ks),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def exclusive(workdir: Path) -> Iterator[None]:
    """One cycle per work directory at a time (another one waiting would redo the same work)."""
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / LOCK_FILE, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RetrainError(f"another retrain holds {workdir / LOCK_FILE}") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def publish(model_dir: str | Path, target: str | Path) -> bool:
    """Copy a model (with its HNSW graphs built) to ``target`` atomically; False if it is there.

    ``target`` is the model pointer of path-configured API workers: they watch its manifest
    and hot-swap when it changes.
    """
    model_dir, target = Path(model_dir), Path(target)
    mine = read_json(model_dir / layout.MANIFEST)
    if (target / layout.MANIFEST).exists():
        theirs = read_json(target / layout.MANIFEST)
        if (theirs.get(KEY_TAG), theirs.get("created_at")) == (
            mine.get(KEY_TAG),
            mine.get("created_at"),
        ):
            return False
    model = ModelArtifact.load(model_dir).model
    if not all((model_dir / name).exists() for name in model.index_files()):
        model.build_index(model_dir)  # once here, not in every worker that loads it
    with atomic_dir(target, marker=layout.MANIFEST) as tmp:
        for path in model_dir.iterdir():
            if path.is_file():
                shutil.copyfile(path, tmp / path.name)
    return True


def retrain(
    config: RetrainConfig, force: bool = False, publish_to: str | Path | None = None
) -> RetrainResult:
    """Run one cycle (or return the completed one with the same key unless ``force``).

    With ``publish_to``, the champion this cycle produced is also copied there (again when
    an earlier run of the same cycle was interrupted before publishing).
    """
    if not config.input.exists():
        raise RetrainError(f"{config.input}: no such file or directory")
    with exclusive(config.workdir):
        store = EventStore(config.events_url)
        watermark = store.training_watermark()
        key = forget_key(cycle_key(config, watermark), store)  # a new tombstone: a new cycle
        state_path = config.workdir / STATE_FILE
        state = read_json(state_path) if state_path.exists() else {}
        if not force and state.get("key") == key:
            result = RetrainResult(**state["result"])
            result.status = "up_to_date"
            result.reason = f"cycle {key} already ran: {result.reason}"
        else:
            result = _cycle(config, store, watermark, key)
            write_json_atomic(state_path, {"key": key, "result": result.to_dict()})
        champion_is_ours = result.version is not None and result.champion == result.version
        if publish_to is not None and champion_is_ours and result.model_dir:
            published = publish(result.model_dir, publish_to)
            log.info("champion %s %s", result.version, "published" if published else "in place")
        return result


def _cycle(config: RetrainConfig, store: EventStore, watermark: int, key: str) -> RetrainResult:
    seconds: dict[str, float] = {}
    run_dir = config.workdir / "runs" / key
    data_dir, model_dir = run_dir / "dataset", run_dir / "model"

    started = time.perf_counter()
    events = store.read(after=0, upto=watermark)
    raw = without_forgotten(merge_events(load(config.source, config.input), events), store)
    summary = build_dataset(raw, data_dir, config.prepare, source=f"{config.source}+events")
    seconds["prepare"] = time.perf_counter() - started

    started = time.perf_counter()
    client = get_client()
    name = config.model_name or default_model_name(client)
    stamp = {WATERMARK_KEY: watermark, "events_included": len(events), KEY_TAG: key}
    observer = MlflowObserver(
        client,
        config.experiment,
        run_name=f"retrain-{key}",
        model_name=name,
        version_tags={WATERMARK_KEY: str(watermark), KEY_TAG: key},
    )
    # One run: training, evaluation, the item index (built once here, not in every worker).
    train_and_evaluate(
        Dataset.load(data_dir),
        model_dir,
        config.train,
        observer,
        config.ks,
        ("popularity",),
        extra=stamp,
        build_index=True,
    )
    seconds["train"] = time.perf_counter() - started

    started = time.perf_counter()
    version = str(observer.version)
    judge = unseen_judge(name, model_dir, data_dir, config.gate)
    decision = promote(name, version, client=client, judge=judge)
    seconds["gate"] = time.perf_counter() - started
    log.info("retrain %s: %s", key, decision.reason)
    champion, candidate_ndcg = decision.champion, decision.candidate.ndcg
    evidence = decision.evidence if isinstance(decision.evidence, GateResult) else None
    return RetrainResult(
        status="promoted" if decision.promoted else "kept",
        key=key,
        watermark=watermark,
        events=len(events),
        reason=decision.reason,
        version=version,
        champion=version if decision.promoted else (champion.version if champion else None),
        fingerprint=summary.fingerprint,
        model_dir=str(model_dir),
        candidate_ndcg=evidence.comparison.metrics["ndcg@10"].b if evidence else candidate_ndcg,
        champion_ndcg=evidence.comparison.metrics["ndcg@10"].a if evidence else None,
        seconds={k: round(v, 3) for k, v in seconds.items()},
    )
