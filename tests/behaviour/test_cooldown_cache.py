"""The exposure cool-down's kept per-listener state gives what a read from scratch gives.

Each worker counts a listener's impressions incrementally (:mod:`musicrec.serving.exposure`);
these tests hold it against :func:`~musicrec.serving.exposure.read_resting`, which reads the
log afresh on every call, over random sequences of shows (some committed late), plays and
waits, seen by two workers that each keep their own state over one database.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from musicrec.events.impressions import pack, write_impressions
from musicrec.events.schema import Event
from musicrec.events.store import EventStore
from musicrec.rules import CoolDown
from musicrec.serving import exposure
from musicrec.serving.exposure import LATE_S, read_resting, resting
from musicrec.serving.recommender import Recommender

DAY = 86_400
POLICY = CoolDown(shows=3, days=7)


@pytest.fixture(scope="module")
def model_dir(synth_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exposure-model") / "model"
    shutil.copytree(synth_model, out)
    return out


@pytest.fixture(scope="module")
def workers(model_dir: Path) -> tuple[Recommender, Recommender]:
    """Two workers: each its own loaded model, so each keeps its own exposure state."""
    return Recommender.load(model_dir), Recommender.load(model_dir)


def pool(rec: Recommender) -> list[str]:
    names = rec.catalogue.names
    return [str(names[i]) for i in rec.catalogue.by_popularity[:4]] + ["Nobody Knows This"]


show = st.tuples(
    st.just("show"),
    st.lists(st.integers(0, 4), min_size=1, max_size=4),
    st.floats(0, LATE_S * 0.9),  # committed this long after it was shown
)
play = st.tuples(st.just("play"), st.lists(st.integers(0, 4), min_size=1, max_size=1), st.just(0.0))
wait = st.tuples(st.just("wait"), st.just([]), st.sampled_from([1.0, 60.0, DAY, 3 * DAY, 8 * DAY]))
steps = st.lists(st.one_of(show, show, play, wait), min_size=1, max_size=30)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps, both=st.lists(st.booleans(), min_size=30, max_size=30))
def test_kept_state_matches_a_read_from_scratch(
    workers: tuple[Recommender, Recommender],
    steps: list[tuple[str, list[int], float]],
    both: list[bool],
) -> None:
    artists, user = pool(workers[0]), workers[0].sample_users(3)[1]
    clock, served = time.time() - 60 * DAY, 0
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setattr(exposure, "REFRESH_S", math.inf)  # only the incremental path
        url = f"sqlite:///{Path(tmp) / 'events.db'}"
        writer, first, second = EventStore(url), EventStore(url), EventStore(url)
        for n, (kind, which, amount) in enumerate(steps):
            if kind == "show":
                shown = [artists[i] for i in which]
                at = clock - amount
                served += 1
                rows = [pack(f"r{served}", user, shown, [1.0] * len(shown), "v", at=at)]
                write_impressions(writer, rows)
            elif kind == "play":
                writer.append([Event(user, artists[which[0]], "play", timestamp=int(clock))])
            else:
                clock += amount
            clock += 1.0
            expected = read_resting(EventStore(url), workers[0], user, POLICY, clock)
            asked = [(workers[0], first)] + ([(workers[1], second)] if both[n] else [])
            for rec, store in asked:  # the second worker skips some steps, then catches up
                got = resting(store, rec, user, POLICY, clock)
                assert got.held == expected.held
                assert got.exposure.items.tolist() == expected.exposure.items.tolist()
                assert got.exposure.shown.tolist() == expected.exposure.shown.tolist()
                assert got.exposure.last_shown.tolist() == expected.exposure.last_shown.tolist()


def test_a_row_committed_later_than_late_s_counts_from_the_next_refresh(
    workers: tuple[Recommender, Recommender], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec, store = workers[0], EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    user, artist = rec.sample_users(3)[1], pool(rec)[0]
    item, now = rec.catalogue.resolve(artist), time.time()
    monkeypatch.setattr(exposure, "REFRESH_S", 600.0)

    def shown(request: str, at: float) -> None:
        write_impressions(store, [pack(request, user, [artist], [1.0], "v", at=at)])

    shown("a", now - 10)
    shown("b", now - 5)
    assert resting(store, rec, user, POLICY, now).held == ()
    shown("late", now - 5 - 2 * LATE_S)  # committed long after it was shown: not seen yet
    assert resting(store, rec, user, POLICY, now + 1).held == ()
    assert read_resting(store, rec, user, POLICY, now + 1).held == (item,)
    assert resting(store, rec, user, POLICY, now + 601).held == (item,)  # read afresh
