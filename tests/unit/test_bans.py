"""Bans with ``until``: the schema accepts them; they hold until then and lift after."""

from __future__ import annotations

import pandas as pd
import pytest

from musicrec.errors import EventError
from musicrec.events.bans import active_bans, ban_notice, ineffective_bans
from musicrec.events.schema import validate_batch, validate_event

NOW = 1_700_000_000
DAY = 86_400


def ban(artist: str, until: float | None = None, **extra) -> dict:
    raw = {"user_id": "u", "artist": artist, "kind": "ban", "timestamp": NOW, **extra}
    if until is not None:
        raw["until"] = until
    return raw


def test_until_is_refused_where_the_caller_cannot_keep_it() -> None:
    with pytest.raises(EventError, match="unknown field"):
        validate_event(0, ban("a", NOW + DAY), now=NOW)


def test_a_ban_accepts_until_as_epoch_or_iso() -> None:
    event = validate_event(0, ban("a", NOW + DAY), now=NOW, accept_until=True)
    assert event.until == NOW + DAY
    iso = validate_event(0, ban("a", "2023-11-15T22:13:20Z"), now=NOW, accept_until=True)
    assert iso.until == NOW + DAY  # NOW is 2023-11-14T22:13:20Z
    assert validate_event(0, ban("a"), now=NOW, accept_until=True).until is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"user_id": "u", "artist": "a", "kind": "play", "until": NOW + DAY}, "only ban"),
        (ban("a", "next tuesday"), "epoch seconds or ISO-8601"),
        (ban("a", 12), "between 2000-01-01 and 3000-01-01"),
        (ban("a", 10**12), "between 2000-01-01 and 3000-01-01"),
    ],
)
def test_bad_until_names_the_field(raw: dict, reason: str) -> None:
    with pytest.raises(EventError, match=reason) as caught:
        validate_batch([raw], now=NOW, accept_until=True)
    assert caught.value.field == "until"


def test_an_until_in_the_past_is_accepted_and_said_to_do_nothing() -> None:
    events = validate_batch(
        [ban("a", NOW - DAY), ban("b", NOW + DAY), ban("c")], now=NOW, accept_until=True
    )
    assert [e.until for e in events] == [NOW - DAY, NOW + DAY, None]
    assert ineffective_bans(events, NOW) == [0]
    assert ban_notice(events, NOW) == (
        "1 ban(s) have an until that has already passed and have no effect (events 0)"
    )
    assert ban_notice(events[1:], NOW) is None


def frame(rows: list[tuple[str, str, float | None]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["kind", "artist", "until"])


def test_active_bans_on_a_frozen_clock() -> None:
    events = frame([("ban", "a", NOW + DAY), ("ban", "b", None), ("play", "c", None)])
    assert active_bans(events, NOW).to_dict("list") == {
        "artist": ["a", "b"],
        "until": [NOW + DAY, float("inf")],
    }
    assert active_bans(events, NOW + DAY - 1)["artist"].tolist() == ["a", "b"]
    assert active_bans(events, NOW + DAY)["artist"].tolist() == ["b"]  # lifted at until
    assert active_bans(events, NOW + 365 * DAY)["artist"].tolist() == ["b"]


def test_a_past_until_does_not_lift_an_earlier_ban() -> None:
    events = frame([("ban", "a", None), ("ban", "a", NOW - DAY), ("ban", "b", NOW + DAY)])
    events = pd.concat([events, frame([("ban", "b", NOW + 2 * DAY)])])
    held = active_bans(events, NOW + DAY)
    assert held.to_dict("list") == {"artist": ["a", "b"], "until": [float("inf"), NOW + 2 * DAY]}


def test_bans_group_by_the_artist_key_and_old_stores_mean_permanent() -> None:
    events = pd.DataFrame({"kind": ["ban", "ban"], "artist": ["Björk", "bjork"]})
    held = active_bans(events, NOW, key=lambda name: name.lower().replace("ö", "o"))
    assert held.to_dict("list") == {"artist": ["Björk"], "until": [float("inf")]}
    assert active_bans(pd.DataFrame(), NOW).empty
