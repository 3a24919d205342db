"""About the model: the served model card, its metrics against a baseline, and a map of artists."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from musicrec.api.schemas import ModelCard
from musicrec.ui.charts import map_chart, map_frame, metrics_chart, metrics_frame
from musicrec.ui.client import ApiClient, ApiError, ApiRequestError
from musicrec.ui.components import get_client, show_api_error, show_inline_error

MAP_ARTISTS = 300


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def overview(card: ModelCard) -> None:
    """Version and size at a glance."""
    st.markdown(f"**Model version:** `{card.version}` · engine `{card.engine}`")
    details = [f"index {card.index}"]
    if card.created_at:
        details.append(f"trained {card.created_at}")
    if card.code_version:
        details.append(f"code {card.code_version}")
    st.caption(" · ".join(details))
    listeners, artists, factors = st.columns(3)
    listeners.metric("Listeners", f"{card.n_users:,}")
    artists.metric("Artists", f"{card.n_artists:,}")
    factors.metric("Latent factors", f"{card.n_factors:,}")


def metrics_section(card: ModelCard) -> None:
    """The evaluation next to the popularity baseline: a table and a bar chart."""
    st.subheader("How good is it?")
    frame = metrics_frame(card.metrics, card.baseline)
    if frame.empty:
        st.info("This model has not been evaluated yet: run `musicrec evaluate` on its dataset.")
        return
    evaluated = card.metrics.get("users_evaluated")
    st.caption(
        "Held-out plays of "
        + (f"{evaluated:,} test listeners" if isinstance(evaluated, int) else "the test split")
        + "; the popularity baseline recommends the most listened artists to everyone. "
        "Lift = model / popularity; low and high bound the model's 95 % interval (bootstrap "
        "over test listeners), drawn as error bars."
    )
    table, chart = st.columns([1, 1])
    with table:
        st.dataframe(
            frame,
            hide_index=True,
            column_config={
                "model": st.column_config.NumberColumn(format="%.4f"),
                "low": st.column_config.NumberColumn("95 % low", format="%.4f"),
                "high": st.column_config.NumberColumn("95 % high", format="%.4f"),
                "popularity": st.column_config.NumberColumn(format="%.4f"),
                "lift": st.column_config.NumberColumn(format="%.1f×"),
            },
        )
    with chart:
        st.altair_chart(metrics_chart(frame), width="stretch")


def parameters_section(card: ModelCard) -> None:
    """Training parameters and dataset statistics, side by side."""
    params, data = st.columns(2)
    with params:
        st.subheader("Parameters")
        rows = [{"parameter": k, "value": _fmt(v)} for k, v in sorted(card.params.items())]
        st.table(pd.DataFrame(rows, columns=["parameter", "value"]))
    with data:
        st.subheader("Dataset")
        dataset = dict(card.dataset)
        kept = dataset.pop("kept", {})
        rows = [{"statistic": k, "value": _fmt(v)} for k, v in dataset.items() if v is not None]
        if isinstance(kept, dict):
            rows += [{"statistic": f"kept {k}", "value": _fmt(v)} for k, v in kept.items()]
        st.table(pd.DataFrame(rows, columns=["statistic", "value"]))


def map_section(client: ApiClient) -> None:
    """The most listened artists in the first two principal components of the item factors."""
    st.subheader("A map of taste")
    try:
        artist_map = client.artist_map(limit=MAP_ARTISTS)
    except ApiRequestError as err:
        if err.status == 404:
            st.info("This service does not publish an artist map.")
        else:
            show_inline_error(err)
        return
    frame = map_frame(artist_map)
    if frame.empty:
        st.info("No artists to place on the map.")
        return
    variance = artist_map.explained_variance
    share = f" (together {sum(variance[:2]):.0%} of the variance)" if len(variance) >= 2 else ""
    st.caption(
        f"The {len(frame)} most listened artists, projected from the model's latent factors onto "
        f"their two main directions{share}. Close artists tend to share listeners; "
        "the artists that seed a mood are coloured by it."
    )
    st.altair_chart(map_chart(frame), width="stretch")


def render() -> None:
    """The About page."""
    st.title("📊 About the model")
    client = get_client()
    try:
        card = client.model_card()
    except ApiError as err:
        show_api_error(err)
    overview(card)
    metrics_section(card)
    parameters_section(card)
    try:
        map_section(client)
    except ApiError as err:
        show_inline_error(err)


if __name__ == "__main__":
    render()
