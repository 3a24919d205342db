"""The listener the UI acts for, their own lists, and "hide this artist for a month".

A listener is chosen in the sidebar ("Listening as": a sample of the ids the model knows, or
any id typed in; ``?listener=ID`` in the address preselects one). With a listener, For You
and Moods show that listener's list (``GET /users/{id}/recommendations``, their stored
events folded in, so a ban holds), and each card can hide its artist: a ban event with
``until`` 30 days ahead (``POST /events``, the UI key's ``events`` scope), sent with the
list's ``request_id`` and the artist's position so it counts as that list's outcome. The list
is then fetched again, without the artist.

Lists are kept per page for the session until the listener, the mood, the length, a dial or
a hide changes them, so a click elsewhere on the page does not ask (and log) a new list.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import streamlit as st

from musicrec.api.schemas import Recommendation, RecommendResponse
from musicrec.ui.client import ApiClient, ApiError
from musicrec.ui.components import get_client, merge_options, recommendation_cards

LISTENER = "listener"
LISTENER_PARAM = "listener"  # ?listener=ID preselects one
NOBODY = ""
SAMPLE = 50
HIDE_DAYS = 30
DAY_S = 86_400
_LISTS = "listener_lists"
_GENERATION = "listener_generation"
_NOTICE = "hide_notice"


@st.cache_data(ttl=300, show_spinner=False)
def _sample(base_url: str, limit: int) -> list[str]:
    return get_client().users(limit).users


def listener_picker() -> None:
    """The sidebar's "Listening as" choice (nobody by default)."""
    client = get_client()
    try:
        sample = _sample(client.base_url, SAMPLE)
    except ApiError:  # the sidebar's status line already says the service is unreachable
        sample = []
    wanted = st.query_params.get(LISTENER_PARAM)
    if wanted and LISTENER not in st.session_state:
        st.session_state[LISTENER] = wanted
    chosen = st.session_state.get(LISTENER) or NOBODY
    st.sidebar.selectbox(
        "Listening as",
        merge_options([NOBODY, chosen], sample),
        key=LISTENER,
        format_func=lambda value: value or "nobody (just browsing)",
        accept_new_options=True,
        help="A listener id the service knows. For You and Moods then show that listener's "
        "own list, where an artist can be hidden for a month.",
    )


def current_listener() -> str | None:
    """The listener chosen in the sidebar, if any."""
    return st.session_state.get(LISTENER) or None


def listener_list(
    client: ApiClient, page: str, listener: str, k: int, mood: str | None, dials: dict[str, Any]
) -> RecommendResponse:
    """The listener's list for ``page``, asked again only when something it depends on
    changed (raises :class:`ApiError`)."""
    key = (listener, mood, k, tuple(sorted(dials.items())), st.session_state.get(_GENERATION, 0))
    kept: dict[str, tuple[Any, RecommendResponse]] = st.session_state.setdefault(_LISTS, {})
    if page in kept and kept[page][0] == key:
        return kept[page][1]
    result = client.for_listener(listener, k=k, mood=mood, **dials)
    kept[page] = (key, result)
    return result


def _hide(client: ApiClient, listener: str, request_id: str | None, rec: Recommendation) -> None:
    until = int(time.time()) + HIDE_DAYS * DAY_S
    try:
        client.ban(listener, rec.artist, until, request_id, rec.rank - 1)
    except ApiError as err:
        st.session_state[_NOTICE] = ("warning", f"Could not hide {rec.artist}: {err.message}")
        return
    day = datetime.fromtimestamp(until, tz=timezone.utc).strftime("%d %B %Y")
    st.session_state[_NOTICE] = ("success", f"{rec.artist} is hidden for {listener} until {day}.")
    st.session_state[_GENERATION] = st.session_state.get(_GENERATION, 0) + 1


def listener_cards(
    client: ApiClient, page: str, listener: str, result: RecommendResponse, empty: str
) -> None:
    """The listener's list as cards, each with "Hide for a month"; the last hide's outcome
    above them."""
    notice = st.session_state.pop(_NOTICE, None)
    if notice is not None:
        kind, text = notice
        (st.success if kind == "success" else st.warning)(text)
    recommendation_cards(
        result.recommendations,
        show_because=True,
        empty=empty,
        hide=(page, lambda rec: _hide(client, listener, result.request_id, rec)),
    )
