"""The list dials where a listener shapes a list: diversity, discovery and a tag filter."""

from __future__ import annotations

from typing import Any

import streamlit as st

STEPS = (0.0, 0.25, 0.5, 0.75, 1.0)


def dial_controls(prefix: str) -> dict[str, Any]:
    """Two sliders and a tag filter in a row; only the dials moved from neutral are returned
    (the request then is exactly the plain one)."""
    diversity, discovery, tags = st.columns([1, 1, 2], vertical_alignment="bottom")
    dials: dict[str, Any] = {
        "diversity": diversity.select_slider(
            "Variety",
            options=STEPS,
            value=0.0,
            key=f"{prefix}_diversity",
            help="0: as the model ranks; 1: artists as unlike each other as it allows.",
        ),
        "discovery": discovery.select_slider(
            "Discovery",
            options=STEPS,
            value=0.0,
            key=f"{prefix}_discovery",
            help="0: as the model ranks; 1: strongly favours artists with few listeners.",
        ),
        "include_tags": tags.text_input(
            "Only these tags",
            key=f"{prefix}_tags",
            placeholder="e.g. jazz, soul",
            help="Comma-separated; artists carrying any of them among their top tags.",
        ).strip(),
    }
    return {name: value for name, value in dials.items() if value}
