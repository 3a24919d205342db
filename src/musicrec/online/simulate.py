"""Simulated listeners: the harness that proves experiments before real listeners see them.

Each simulated listener is a test user of a prepared dataset, whose held-out test artists
stand for what they would really play. For every list the API shows them, they look down it
(position ``i`` is examined with probability ``examine_top * examine_decay**i``), play an
examined artist that is in their held-out set with probability ``play_relevant`` and any
other examined artist with the small probability ``play_other``, and skip the examined artists
they do not play; artists they never looked at get no event.

Listeners are not alike: with ``activity_sd`` > 0 each listener's odds of playing an artist
it looked at (held-out or not) are multiplied by ``exp(u)``, ``u ~ Normal(0, activity_sd**2)``
drawn once per listener (a random intercept on the log-odds, as in a mixed-effects click
model), so some listeners play almost everything they like and others almost nothing.
:data:`DEFAULT_ACTIVITY_SD` is the spread of log total plays per listener in HetRec 2011
Last.fm-2K (``benchmarks/online_simulator_lastfm2k.py`` prints it); ``0`` makes every
listener the same, as before. The events go back to the API
with the list's request id and position when the API gave one (a ``request_id`` field or an
``X-Request-ID`` header), else bare (attributed by the time window).

A listener asking for several lists posts each list's events before asking for the next (so
the API folds them in: later lists change), or, with ``hold_events``, asks for all its lists
first and then posts everything: every list comes from the same listener state, which is what
an off-policy replay of a fixed model assumes.

Runs are bounded in listeners, lists per listener and seconds, and only ever target a
loopback address.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
from scipy.special import expit, logit

from musicrec.data.dataset import Dataset
from musicrec.errors import DataError, TrafficError
from musicrec.ops.traffic import check_target, is_loopback

REQUEST_ID_HEADER = "X-Request-ID"
MAX_FAILURES_IN_A_ROW = 20  # the API has gone away: stop rather than spin
POST_CHUNK = 100  # held events per POST /events (well under its batch and body limits)
# Standard deviation of log(total plays per listener) over the 1,892 listeners of HetRec 2011
# Last.fm-2K (user_artists.dat): 1.52, i.e. the middle 80 % of listeners span 23x in plays.
# The experiment benchmark and `musicrec simulate` use it as the listeners' activity spread.
DEFAULT_ACTIVITY_SD = 1.52
MAX_ACTIVITY_SD = 10.0  # beyond this nearly every listener plays all or nothing
ACTIVITY_STREAM = 0xAC  # the listeners' activity draws: a stream apart from their reactions


@dataclass(frozen=True)
class ListenerModel:
    """How a simulated listener reacts to a list (a position-based click model)."""

    examine_top: float = 0.95
    examine_decay: float = 0.85
    play_relevant: float = 0.8
    play_other: float = 0.02
    activity_sd: float = 0.0  # spread of the listeners' log-odds of playing (0: all alike)

    def __post_init__(self) -> None:
        if not 0 <= self.activity_sd <= MAX_ACTIVITY_SD:
            raise DataError(f"the activity spread must be between 0 and {MAX_ACTIVITY_SD}")

    def examine(self, k: int) -> np.ndarray:
        """Probability of looking at each of ``k`` positions."""
        return self.examine_top * self.examine_decay ** np.arange(k)

    def for_listener(self, rng: np.random.Generator) -> ListenerModel:
        """One listener's model: its play odds times ``exp(u)``, ``u ~ N(0, activity_sd**2)``."""
        if self.activity_sd == 0:
            return self
        shift = rng.normal(0.0, self.activity_sd)
        return replace(
            self,
            play_relevant=float(expit(logit(self.play_relevant) + shift)),
            play_other=float(expit(logit(self.play_other) + shift)),
            activity_sd=0.0,
        )


@dataclass
class ArmTally:
    """What one arm (or no arm) showed and what the simulated listeners did with it."""

    lists: int = 0
    shown: int = 0
    relevant: int = 0  # shown artists that were in the listener's held-out set
    plays: int = 0
    skips: int = 0


@dataclass
class SimulationSummary:
    url: str
    listeners: int = 0
    requests: int = 0
    errors: int = 0
    events_posted: int = 0
    with_request_id: int = 0
    seconds: float = 0.0
    stopped_early: bool = False
    failures_in_a_row: int = 0
    arms: dict[str, ArmTally] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if k not in ("arms", "failures_in_a_row")}
        out["arms"] = {name: vars(tally) for name, tally in sorted(self.arms.items())}
        return out


def held_out(dataset: Dataset) -> dict[str, set[str]]:
    """Each test user's held-out artists (case-folded names)."""
    test = dataset.test_frame[["user_idx", "item_idx"]]
    users = dataset.users.set_index("user_idx")["user_id"].astype(str)
    names = dataset.items.set_index("item_idx")["artist_name"].astype(str).str.casefold()
    frame = test.assign(user=users.reindex(test["user_idx"]).to_numpy())
    frame = frame.assign(artist=names.reindex(test["item_idx"]).to_numpy())
    return {str(user): set(group) for user, group in frame.groupby("user")["artist"]}


def react(
    artists: list[str], relevant: set[str], model: ListenerModel, rng: np.random.Generator
) -> list[tuple[int, str]]:
    """``(position, kind)`` for every examined position: ``play`` or ``skip``."""
    looked = rng.random(len(artists)) < model.examine(len(artists))
    chance = np.array(
        [model.play_relevant if a.casefold() in relevant else model.play_other for a in artists]
    )
    played = rng.random(len(artists)) < chance
    return [(int(i), "play" if played[i] else "skip") for i in np.flatnonzero(looked)]


def _one_list(
    client: httpx.Client,
    user: str,
    relevant: set[str],
    k: int,
    model: ListenerModel,
    rng: np.random.Generator,
    summary: SimulationSummary,
) -> list[dict[str, Any]]:
    """Ask for one list and react to it: the events to post."""
    summary.requests += 1
    try:
        response = client.get(f"/users/{quote(user, safe='')}/recommendations", params={"k": k})
    except httpx.TransportError:
        summary.errors += 1
        summary.failures_in_a_row += 1
        return []
    summary.failures_in_a_row = 0
    if response.status_code != 200:
        summary.errors += 1
        return []
    body = response.json()
    artists = [rec["artist"] for rec in body.get("recommendations", [])]
    request_id = body.get("request_id") or response.headers.get(REQUEST_ID_HEADER)
    summary.with_request_id += bool(request_id)
    tally = summary.arms.setdefault(str(body.get("arm") or "-"), ArmTally())
    tally.lists += 1
    tally.shown += len(artists)
    tally.relevant += sum(a.casefold() in relevant for a in artists)
    reactions = react(artists, relevant, model, rng)
    events = []
    for position, kind in reactions:
        event: dict[str, Any] = {"user_id": user, "artist": artists[position], "kind": kind}
        if request_id:
            event |= {"request_id": request_id, "position": position}
        events.append(event)
        tally.plays += kind == "play"
        tally.skips += kind == "skip"
    return events


def _post(client: httpx.Client, events: list[dict[str, Any]], summary: SimulationSummary) -> None:
    if not events:
        return
    try:
        posted = client.post("/events", json={"events": events})
    except httpx.TransportError:
        summary.errors += 1
        return
    if posted.status_code == 201:
        summary.events_posted += len(events)
    else:
        summary.errors += 1


def simulate(
    client: httpx.Client,
    dataset: Dataset,
    listeners: int,
    seed: int = 0,
    k: int = 10,
    lists_per_listener: int = 1,
    max_seconds: float = 600.0,
    model: ListenerModel | None = None,
    progress: Callable[[int], None] | None = None,
    hold_events: bool = False,
) -> SimulationSummary:
    """Play ``listeners`` test users of ``dataset`` against the API behind ``client``
    (``hold_events``: post a listener's events after all its lists, see the module doc)."""
    if listeners < 1 or lists_per_listener < 1 or k < 1 or max_seconds <= 0:
        raise DataError("listeners, lists per listener, k and the time limit must be positive")
    model = model or ListenerModel()
    truth = held_out(dataset)
    if listeners > len(truth):
        raise DataError(f"{dataset.path} has {len(truth)} test listeners, not {listeners}")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(np.array(sorted(truth), dtype=object), size=listeners, replace=False)
    activity = np.random.default_rng([seed, ACTIVITY_STREAM])
    summary = SimulationSummary(url=str(client.base_url))
    started = time.monotonic()
    for n, user in enumerate(chosen, start=1):
        listener = model.for_listener(activity)
        held: list[dict[str, Any]] = []
        for _ in range(lists_per_listener):
            if time.monotonic() - started > max_seconds:
                summary.stopped_early = True
                break
            events = _one_list(client, str(user), truth[str(user)], k, listener, rng, summary)
            if hold_events:
                held += events
            else:
                _post(client, events, summary)
            if summary.failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                raise TrafficError(
                    f"{summary.url} stopped answering "
                    f"({summary.failures_in_a_row} failures in a row)"
                )
        for i in range(0, len(held), POST_CHUNK):
            _post(client, held[i : i + POST_CHUNK], summary)
        if summary.stopped_early:
            break
        summary.listeners = n
        if progress is not None:
            progress(n)
    summary.seconds = round(time.monotonic() - started, 3)
    return summary


def simulate_url(url: str, dataset_path: str, listeners: int, **options: Any) -> SimulationSummary:
    """:func:`simulate` against a loopback URL (any other host is refused)."""
    base = check_target(url, allow_remote=True)  # a well-formed http(s) URL
    host = httpx.URL(base).host
    if not is_loopback(host):
        raise TrafficError(
            f"{host} is not a loopback address; the simulator only targets this machine"
        )
    dataset = Dataset.load(dataset_path)
    with httpx.Client(base_url=base, timeout=30.0) as client:
        try:
            client.get("/health").raise_for_status()
        except httpx.HTTPError as exc:
            raise TrafficError(f"no API answering at {base}: {exc}") from None
        return simulate(client, dataset, listeners, **options)
