"""Building blocks shared by the UI pages: the API client, error panels, recommendation cards."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NoReturn

import streamlit as st

from musicrec.access.keys import client_key
from musicrec.api.schemas import Recommendation
from musicrec.errors import ConfigError
from musicrec.ui.client import (
    ApiClient,
    ApiError,
    ApiRequestError,
    admin_key_from_env,
    api_url_from_env,
    timeout_from_env,
)

CARDS_PER_ROW = 3
POPULAR_OPTIONS = 100


@st.cache_resource(show_spinner=False)
def _client(base_url: str, timeout: float, api_key: str | None) -> ApiClient:
    return ApiClient(base_url, timeout, api_key=api_key)


def _key(read: Callable[[], str | None]) -> str | None:
    """A key from the environment; an unreadable key file stops the page with the reason."""
    try:
        return read()
    except ConfigError as exc:
        st.error(str(exc), icon="🔑")
        st.stop()


def get_client() -> ApiClient:
    """The API client for ``$MUSICREC_API_URL`` with the UI's key (``$MUSICREC_API_KEY`` or
    ``$MUSICREC_API_KEY_FILE``; none for an open API): one pooled connection per address."""
    return _client(api_url_from_env(), timeout_from_env(), _key(client_key))


def get_admin_client() -> ApiClient | None:
    """A client with the UI's admin key (``$MUSICREC_UI_ADMIN_KEY`` or its ``_FILE``), or
    ``None`` when the UI has none."""
    key = _key(admin_key_from_env)
    return _client(api_url_from_env(), timeout_from_env(), key) if key else None


def show_api_error(err: ApiError, *, retry_key: str = "retry") -> NoReturn:
    """Explain what went wrong and stop rendering this page.

    An unavailable service gets a Retry button; a refused request (e.g. an unknown name) gets
    the service's suggestions instead, since retrying it would not help.
    """
    if isinstance(err, ApiRequestError):
        show_inline_error(err)
    else:
        st.error(err.message, icon="📡")
        st.button("Retry", key=retry_key, type="primary")
    st.stop()


def show_inline_error(err: ApiError) -> None:
    """Explain a failed request in place, without stopping the rest of the page."""
    st.warning(err.message, icon="⚠️")
    if err.suggestions:
        st.caption("Did you mean: " + ", ".join(err.suggestions))


Hide = tuple[str, Callable[[Recommendation], None]]  # (key prefix, what the button does)


def _card(rec: Recommendation, show_because: bool, hide: Hide | None) -> None:
    with st.container(border=True):
        st.markdown(f"**{rec.rank}. {rec.artist}**")
        facts = [f"{rec.listeners:,} listeners"]
        if rec.tags:
            facts.append(" · ".join(rec.tags[:3]))
        st.caption(" — ".join(facts))
        if show_because and rec.because:
            st.markdown(
                f"<small>because you like {', '.join(rec.because)}</small>", unsafe_allow_html=True
            )
        if hide is not None:
            prefix, action = hide
            st.button(
                "🙈 Hide for a month",
                key=f"hide_{prefix}_{rec.rank}",
                on_click=action,
                args=(rec,),
                help=f"Leave {rec.artist} out of this listener's lists for 30 days (a ban "
                "that lifts by itself).",
            )


def recommendation_cards(
    recs: Sequence[Recommendation],
    *,
    show_because: bool = False,
    empty: str = "Nothing found.",
    hide: Hide | None = None,
) -> None:
    """Recommendations as a grid of cards, best first; with ``hide``, each card has a
    "Hide for a month" button (keys ``hide_<prefix>_<rank>``) that calls its action."""
    if not recs:
        st.info(empty)
        return
    for start in range(0, len(recs), CARDS_PER_ROW):
        columns = st.columns(CARDS_PER_ROW)
        for column, rec in zip(columns, recs[start : start + CARDS_PER_ROW], strict=False):
            with column:
                _card(rec, show_because, hide)


def popular_artists(client: ApiClient, limit: int = POPULAR_OPTIONS) -> list[str]:
    """Most listened artists, used as the default choices of artist pickers."""
    return [rec.artist for rec in client.charts(k=limit).recommendations]


def search_choices(client: ApiClient, query: str, limit: int = 15) -> list[str]:
    """Catalogue artists matching ``query`` (empty for a blank query)."""
    query = query.strip()
    if not query:
        return []
    return [hit.artist for hit in client.search_artists(query, limit=limit).results]


def merge_options(*groups: Sequence[str]) -> list[str]:
    """Concatenate name lists, keeping the first occurrence of each name."""
    seen: set[str] = set()
    merged = []
    for group in groups:
        for name in group:
            if name not in seen:
                seen.add(name)
                merged.append(name)
    return merged
