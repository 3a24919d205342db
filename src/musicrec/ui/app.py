"""Streamlit entry point of the listener UI: ``streamlit run`` this file, or ``musicrec ui``.

The pages live in ``views/``; each talks to the recommendation API through
:func:`musicrec.ui.components.get_client` (address from ``$MUSICREC_API_URL``).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from musicrec.ui.client import ApiError
from musicrec.ui.components import get_client
from musicrec.ui.listener import listener_picker

PAGES_DIR = Path(__file__).resolve().parent / "views"

PAGES: tuple[tuple[str, str, str], ...] = (
    ("moods.py", "Moods", "🎭"),
    ("twins.py", "Music Twins", "👯"),
    ("for_you.py", "For You", "💿"),
    ("explore.py", "Explore", "🔭"),
    ("about.py", "About the model", "📊"),
    ("experiments.py", "Experiments", "🧪"),
)


def sidebar_status() -> None:
    """Which service the UI talks to and whether it answers."""
    client = get_client()
    with st.sidebar:
        try:
            health = client.health()
        except ApiError:
            st.caption(f"🔴 Service unreachable at {client.base_url}")
            return
        if health.model_loaded:
            st.caption(
                f"🟢 Model {health.model_version} · {health.n_artists:,} artists · "
                f"{health.n_users:,} listeners"
            )
        else:
            st.caption(f"🟠 Service at {client.base_url} is up, no model loaded yet")


def main() -> None:
    """Configure the page, register the navigation and run the selected page."""
    st.set_page_config(page_title="musicrec", page_icon="🎵", layout="wide")
    pages = [
        st.Page(PAGES_DIR / name, title=title, icon=icon, default=index == 0)
        for index, (name, title, icon) in enumerate(PAGES)
    ]
    navigation = st.navigation(pages)
    sidebar_status()
    listener_picker()
    navigation.run()


if __name__ == "__main__":
    main()
