"""Music Twins: what the model recommends to a listener with a ready-made taste profile."""

from __future__ import annotations

import streamlit as st

from musicrec.ui.client import ApiError
from musicrec.ui.components import get_client, recommendation_cards, show_api_error
from musicrec.ui.profiles import PROFILES, Profile, profile_by_key

PROFILES_PER_ROW = 5
TWIN_STATE = "twin"


def _pick(key: str) -> None:
    st.session_state[TWIN_STATE] = key


def profile_grid(selected: str | None) -> None:
    """One card per profile: a button with emoji and name, the favourite artists underneath."""
    for start in range(0, len(PROFILES), PROFILES_PER_ROW):
        columns = st.columns(PROFILES_PER_ROW)
        for column, profile in zip(
            columns, PROFILES[start : start + PROFILES_PER_ROW], strict=False
        ):
            with column, st.container(border=True):
                st.button(
                    f"{profile.emoji} {profile.name}",
                    key=f"twin_{profile.key}",
                    on_click=_pick,
                    args=(profile.key,),
                    type="primary" if profile.key == selected else "secondary",
                    width="stretch",
                )
                st.caption(profile.description)


def show_twin(profile: Profile, k: int) -> None:
    """The profile's favourite artists, then what the model recommends to them."""
    st.subheader(f"{profile.emoji} {profile.name}")
    st.caption("Listens most to " + ", ".join(profile.artists))
    try:
        result = get_client().listener(profile.artists, profile.plays, k=k)
    except ApiError as err:
        show_api_error(err, retry_key="retry_twin")
    if result.unknown_artists:
        st.caption("Not in this model's catalogue: " + ", ".join(result.unknown_artists))
    recommendation_cards(
        result.recommendations,
        show_because=True,
        empty="None of this profile's artists are in this model's catalogue.",
    )


def render() -> None:
    """The Music Twins page."""
    heading, how_many = st.columns([3, 1], vertical_alignment="bottom")
    heading.title("👯 Music Twins")
    heading.caption(
        "Listener profiles defined by a few favourite artists. The model has never seen these "
        "listeners: it places them in its taste space from their artists alone."
    )
    k = how_many.slider(
        "How many artists", min_value=3, max_value=48, value=12, step=3, key="twin_k"
    )
    selected = st.session_state.get(TWIN_STATE)
    profile_grid(selected)
    if selected is None:
        st.info("Pick a profile above to meet its music twins.")
        return
    show_twin(profile_by_key(selected), k)


if __name__ == "__main__":
    render()
