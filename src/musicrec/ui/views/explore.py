"""Explore: artists similar to one you name, the charts, and random discovery."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from musicrec.api.schemas import Recommendation
from musicrec.ui.charts import charts_chart
from musicrec.ui.client import ApiClient, ApiError, ApiRequestError
from musicrec.ui.components import (
    get_client,
    merge_options,
    popular_artists,
    recommendation_cards,
    search_choices,
    show_api_error,
    show_inline_error,
)

DISCOVERED = "discovered"


def similar_tab(client: ApiClient, popular: list[str]) -> None:
    """Pick an artist (search or choose), see its nearest neighbours in taste space."""
    query = st.text_input(
        "Search the catalogue", key="similar_search", placeholder="Type part of a name"
    )
    try:
        found = search_choices(client, query)
    except ApiRequestError as err:
        show_inline_error(err)
        found = []
    if query.strip() and not found:
        st.caption(f"No artist matches “{query.strip()}”.")
    options = merge_options(found, popular)
    artist = st.selectbox(
        "Artist",
        options,
        index=0 if found else None,
        key=f"similar_artist_{query.strip().casefold()}",
        accept_new_options=True,
        placeholder="Choose or type an artist",
    )
    k = st.slider("How many", min_value=3, max_value=48, value=12, step=3, key="similar_k")
    if not artist:
        st.info("Choose an artist to see who sounds alike.")
        return
    try:
        result = client.similar(artist, k=k)
    except ApiRequestError as err:
        show_inline_error(err)
        return
    st.subheader(f"Similar to {result.artist}")
    recommendation_cards(result.recommendations)


def charts_tab(client: ApiClient) -> None:
    """The most listened artists, as a bar chart and a table."""
    k = st.slider("Top", min_value=5, max_value=100, value=20, step=5, key="charts_k")
    try:
        recs = client.charts(k=k).recommendations
    except ApiError as err:
        show_api_error(err, retry_key="retry_charts")
    if not recs:
        st.info("The catalogue is empty.")
        return
    st.altair_chart(charts_chart(recs), width="stretch")
    table = pd.DataFrame(
        [
            {"#": r.rank, "artist": r.artist, "listeners": r.listeners, "plays": r.plays}
            for r in recs
        ]
    )
    st.dataframe(table, hide_index=True)


def discover_tab(client: ApiClient) -> None:
    """A random handful of artists, new on every click."""
    k = st.slider("How many", min_value=3, max_value=48, value=9, step=3, key="discover_k")
    if st.button("🎲 Surprise me", key="discover", type="primary"):
        try:
            st.session_state[DISCOVERED] = client.recommend_random(k=k).recommendations
        except ApiError as err:
            show_inline_error(err)
    found: list[Recommendation] = st.session_state.get(DISCOVERED, [])
    if found:
        recommendation_cards(found)
    else:
        st.caption("Press the button for a random selection from the catalogue.")


def render() -> None:
    """The Explore page."""
    st.title("🔭 Explore")
    client = get_client()
    try:
        popular = popular_artists(client)
    except ApiError as err:
        show_api_error(err)
    similar, charts, discover = st.tabs(["Similar artists", "Top charts", "Discover"])
    with similar:
        similar_tab(client, popular)
    with charts:
        charts_tab(client)
    with discover:
        discover_tab(client)


if __name__ == "__main__":
    render()
