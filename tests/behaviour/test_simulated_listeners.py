"""Simulated listeners against an in-process API: alike, or differing in activity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from musicrec.api.app import create_app
from musicrec.api.settings import Settings
from musicrec.data.dataset import Dataset
from musicrec.events.store import EventStore
from musicrec.online.simulate import ListenerModel, simulate


def _run(
    model_dir: Path, dataset: Path, db: Path, model: ListenerModel | None
) -> tuple[dict[str, Any], np.ndarray]:
    """30 listeners, 4 lists each, on a fresh API: the summary and plays per listener.
    Events are held and nothing cools down, so every list comes from the model alone and a
    seeded run repeats exactly (fold-in and impression writes run off the request path)."""
    url = f"sqlite:///{db}"
    settings = Settings(_env_file=None, model=str(model_dir), events_url=url, cooldown_shows=0)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as client:
        summary = simulate(
            client,
            Dataset.load(dataset),
            30,
            seed=9,
            lists_per_listener=4,
            model=model,
            hold_events=True,
        )
    assert (summary.listeners, summary.requests, summary.errors) == (30, 120, 0)
    events = EventStore(url).read()
    plays = (events["kind"] == "play").groupby(events["user_id"]).sum()  # 0 for skips only
    found = summary.to_dict()
    found.pop("seconds"), found.pop("url")
    return found, plays.to_numpy()


def test_listeners_alike_by_default_and_differing_with_a_spread(
    synth_model: Path, synth_dataset: Path, tmp_path: Path
) -> None:
    default, _ = _run(synth_model, synth_dataset, tmp_path / "a.db", None)
    alike, alike_plays = _run(
        synth_model, synth_dataset, tmp_path / "b.db", ListenerModel(activity_sd=0.0)
    )
    assert default == alike  # a spread of 0 is the simulator as it always was
    spread, spread_plays = _run(
        synth_model, synth_dataset, tmp_path / "c.db", ListenerModel(activity_sd=3.0)
    )
    again, _ = _run(synth_model, synth_dataset, tmp_path / "d.db", ListenerModel(activity_sd=3.0))
    assert spread == again  # seeded: the same listeners play the same
    # the same 30 listeners and lists, but some now play almost nothing and some almost all
    assert spread != alike and spread_plays.var() > 1.5 * alike_plays.var()
