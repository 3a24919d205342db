"""For You: pick a few favourite artists, get personal recommendations with reasons."""

from __future__ import annotations

import streamlit as st

from musicrec.ui.client import ApiError
from musicrec.ui.components import (
    get_client,
    merge_options,
    popular_artists,
    recommendation_cards,
    search_choices,
    show_api_error,
)
from musicrec.ui.dials import dial_controls
from musicrec.ui.listener import current_listener, listener_cards, listener_list

FAVOURITES = "favourites"
MAX_FAVOURITES = 20
SUGGESTIONS_SHOWN = 8


def _add(name: str) -> None:
    chosen = list(st.session_state.get(FAVOURITES, []))
    if name not in chosen and len(chosen) < MAX_FAVOURITES:
        st.session_state[FAVOURITES] = [*chosen, name]


def render_listener(listener: str) -> None:
    """A known listener's own list, with "Hide for a month" on every artist."""
    st.caption(
        f"What the model recommends to listener {listener}, from everything they played; "
        "artists they played or hid are left out. Choose *nobody* under *Listening as* to "
        "start from a few favourite artists instead."
    )
    client = get_client()
    k = st.slider("How many artists", min_value=3, max_value=48, value=12, step=3, key="for_you_k")
    dials = dial_controls("for_you")
    try:
        result = listener_list(client, "for_you", listener, k, None, dials)
    except ApiError as err:
        show_api_error(err, retry_key="retry_for_you")
    st.subheader(f"Recommended for {listener}")
    listener_cards(client, "for_you", listener, result, "Nothing left to recommend.")


def render() -> None:
    """The For You page."""
    st.title("💿 For You")
    listener = current_listener()
    if listener:
        render_listener(listener)
        return
    st.caption(
        "Tell us a few artists you love; the model finds what you are missing. (Pick a "
        "listener under *Listening as* to see their own list and hide artists for a month.)"
    )
    client = get_client()
    query = st.text_input(
        "Search the catalogue", key="artist_search", placeholder="Type part of a name, e.g. radio"
    )
    try:
        found = search_choices(client, query)
        popular = popular_artists(client)
    except ApiError as err:
        show_api_error(err)
    chosen: list[str] = list(st.session_state.get(FAVOURITES, []))
    if query.strip():
        if found:
            st.caption("Matches — click to add:")
            columns = st.columns(4)
            for index, name in enumerate(found[:SUGGESTIONS_SHOWN]):
                columns[index % 4].button(
                    f"➕ {name}",
                    key=f"add_{index}_{name}",
                    on_click=_add,
                    args=(name,),
                    disabled=name in chosen,
                    width="stretch",
                )
        else:
            st.caption(f"No artist matches “{query.strip()}”.")
    favourites = st.multiselect(
        "Your favourite artists",
        merge_options(chosen, found, popular),
        key=FAVOURITES,
        max_selections=MAX_FAVOURITES,
        accept_new_options=True,
        placeholder="Choose or type artists",
    )
    k = st.slider("How many artists", min_value=3, max_value=48, value=12, step=3, key="for_you_k")
    dials = dial_controls("for_you")
    if not favourites:
        st.info("Add a few artists to get recommendations.")
        return
    try:
        result = client.listener(favourites, k=k, **dials)
    except ApiError as err:
        show_api_error(err, retry_key="retry_for_you")
    if result.unknown_artists:
        st.caption("Not in the catalogue, skipped: " + ", ".join(result.unknown_artists))
    st.subheader("Recommended for you")
    recommendation_cards(
        result.recommendations,
        show_because=True,
        empty="None of these artists are in the catalogue; try the search above.",
    )


if __name__ == "__main__":
    render()
