"""Moods: pick how you feel and get artists for it."""

from __future__ import annotations

import streamlit as st

from musicrec.api.schemas import MoodInfo
from musicrec.ui.client import ApiError
from musicrec.ui.components import get_client, recommendation_cards, show_api_error
from musicrec.ui.dials import dial_controls
from musicrec.ui.listener import current_listener, listener_cards, listener_list

MOODS_PER_ROW = 6
MOOD_STATE = "mood"


def _pick(name: str) -> None:
    st.session_state[MOOD_STATE] = name


def mood_grid(moods: list[MoodInfo], selected: str | None) -> None:
    """One card per mood: a button with emoji and name, the description underneath."""
    for start in range(0, len(moods), MOODS_PER_ROW):
        columns = st.columns(MOODS_PER_ROW)
        for column, mood in zip(columns, moods[start : start + MOODS_PER_ROW], strict=False):
            with column, st.container(border=True):
                st.button(
                    f"{mood.emoji} {mood.display_name}",
                    key=f"mood_{mood.name}",
                    on_click=_pick,
                    args=(mood.name,),
                    disabled=not mood.available,
                    type="primary" if mood.name == selected else "secondary",
                    width="stretch",
                    help=mood.reason if not mood.available else None,
                )
                st.caption(mood.description)


def render() -> None:
    """The Moods page."""
    heading, how_many = st.columns([3, 1], vertical_alignment="bottom")
    heading.title("🎭 Moods")
    heading.caption("How do you feel? Each mood is a direction in the model's taste space.")
    k = how_many.slider(
        "How many artists", min_value=3, max_value=48, value=12, step=3, key="mood_k"
    )
    client = get_client()
    try:
        moods = client.moods().moods
    except ApiError as err:
        show_api_error(err)
    by_name = {mood.name: mood for mood in moods}
    selected = st.session_state.get(MOOD_STATE)
    if selected not in by_name:
        selected = None
    mood_grid(moods, selected)
    if selected is None:
        st.info("Pick a mood above to get recommendations.")
        return
    mood = by_name[selected]
    st.subheader(f"{mood.emoji} {mood.display_name}")
    built_from = []
    if mood.seed_artists:
        built_from.append("seed artists: " + ", ".join(mood.seed_artists))
    if mood.tags:
        built_from.append("tags: " + ", ".join(mood.tags))
    if built_from:
        st.caption("Built from " + " · ".join(built_from))
    dials = dial_controls("mood")
    listener = current_listener()
    empty = "No artists for this mood on this model."
    try:
        if listener:
            result = listener_list(client, "mood", listener, k, mood.name, dials)
        else:
            result = client.recommend_mood(mood.name, k=k, **dials)
    except ApiError as err:
        show_api_error(err, retry_key="retry_mood")
    if listener:
        st.caption(
            f"For listener {listener}: the mood blended with their taste; artists they "
            "played or hid are left out."
        )
        listener_cards(client, "mood", listener, result, empty)
    else:
        recommendation_cards(result.recommendations, empty=empty)


if __name__ == "__main__":
    render()
