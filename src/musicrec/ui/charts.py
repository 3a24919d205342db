"""Tables and Altair charts built from API responses (pure functions, no Streamlit calls)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from musicrec.api.schemas import Recommendation
from musicrec.ui.client import ArtistMap

METRIC_KEY = re.compile(r"^(precision|recall|map|ndcg|coverage)@(\d+)$")
METRIC_ORDER = ("precision", "recall", "map", "ndcg", "coverage")
BASELINE = "popularity"
MAP_LABELS = 20
OTHER_ARTISTS = "other artists"
OTHER_COLOUR = "#d3d3d3"
MOOD_PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
    "#b07aa1", "#ff9da7", "#9c755f", "#17becf", "#bcbd22", "#1f3b73",
)  # fmt: skip


def _metric_sort_key(key: str) -> tuple[int, int]:
    match = METRIC_KEY.match(key)
    if not match:
        return (len(METRIC_ORDER), 0)
    return (METRIC_ORDER.index(match.group(1)), int(match.group(2)))


def metrics_frame(
    metrics: Mapping[str, Any], baseline: Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """One row per metric@K: the model, the popularity baseline and the model's lift over it.

    ``metrics`` is the model card's ``metrics`` (evaluation report: the model's numbers at the
    top level, each baseline's under its name); ``baseline`` is used when the report has no
    ``popularity`` entry.
    """
    popularity = metrics.get(BASELINE)
    if not isinstance(popularity, Mapping):
        popularity = baseline or {}
    keys = sorted((k for k in metrics if METRIC_KEY.match(k)), key=_metric_sort_key)
    intervals = metrics.get("intervals")
    intervals = intervals if isinstance(intervals, Mapping) else {}
    rows = []
    for key in keys:
        model = float(metrics[key])
        base = popularity.get(key)
        base_value = float(base) if isinstance(base, int | float) else float("nan")
        lift = model / base_value if base_value and base_value == base_value else float("nan")
        bounds = intervals.get(key) or {}
        low, high = bounds.get("low", float("nan")), bounds.get("high", float("nan"))
        rows.append(
            {"metric": key, "model": model, "low": low, "high": high, BASELINE: base_value}
            | {"lift": lift}
        )
    return pd.DataFrame(rows, columns=["metric", "model", "low", "high", BASELINE, "lift"])


def metrics_chart(frame: pd.DataFrame) -> alt.Chart | alt.LayerChart:
    """Grouped bars: model vs popularity for each accuracy metric (coverage left out), with the
    model's 95 % interval as an error bar where the evaluation has one."""
    accuracy = frame[~frame["metric"].str.startswith("coverage")]
    long = accuracy.melt(
        id_vars="metric", value_vars=["model", BASELINE], var_name="ranker", value_name="value"
    ).dropna()
    order = list(accuracy["metric"])
    bars = (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X("metric:N", sort=order, title=None),
            xOffset="ranker:N",
            y=alt.Y("value:Q", title="score"),
            color=alt.Color("ranker:N", title=None),
            tooltip=["metric", "ranker", alt.Tooltip("value:Q", format=".4f")],
        )
        .properties(height=280)
    )
    bounded = accuracy.dropna(subset=["low", "high"]).assign(ranker="model")
    if bounded.empty:
        return bars
    whiskers = (
        alt.Chart(bounded)
        .mark_rule(color="black")
        .encode(
            x=alt.X("metric:N", sort=order, title=None),
            xOffset=alt.XOffset("ranker:N", scale=alt.Scale(domain=["model", BASELINE])),
            y="low:Q",
            y2="high:Q",
            tooltip=[
                "metric",
                alt.Tooltip("low:Q", format=".4f"),
                alt.Tooltip("high:Q", format=".4f"),
            ],
        )
    )
    return alt.LayerChart(layer=[bars, whiskers])


def charts_chart(recs: Sequence[Recommendation]) -> alt.Chart:
    """Horizontal bars of listeners per artist, most listened on top."""
    frame = pd.DataFrame(
        {
            "rank": [r.rank for r in recs],
            "artist": [r.artist for r in recs],
            "listeners": [r.listeners for r in recs],
            "plays": [r.plays for r in recs],
        }
    )
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("listeners:Q", title="listeners"),
            y=alt.Y(
                "artist:N",
                sort=alt.EncodingSortField("rank", order="ascending"),
                title=None,
                axis=alt.Axis(labelOverlap=False, labelLimit=220),
            ),
            tooltip=["rank", "artist", "listeners", "plays"],
        )
        .properties(height=max(200, 24 * len(recs)))
    )


def map_frame(artist_map: ArtistMap) -> pd.DataFrame:
    """The map's points as a frame; ``group`` is the first mood an artist seeds, or "other"."""
    return pd.DataFrame(
        [
            {
                "artist": p.artist,
                "x": p.x,
                "y": p.y,
                "listeners": p.listeners,
                "group": p.moods[0] if p.moods else OTHER_ARTISTS,
                "moods": ", ".join(p.moods),
            }
            for p in artist_map.points
        ],
        columns=["artist", "x", "y", "listeners", "group", "moods"],
    )


def spread_labels(frame: pd.DataFrame, n: int, min_distance: float = 0.07) -> pd.DataFrame:
    """Up to ``n`` most listened artists whose labels do not crowd each other.

    Greedy, most listened first: an artist is labelled when it lies at least ``min_distance``
    (as a share of the map's larger span) from every artist already labelled.
    """
    if frame.empty:
        return frame
    span = max(float(np.ptp(frame["x"])), float(np.ptp(frame["y"])), 1e-9)
    picked: list[int] = []
    coords = frame[["x", "y"]].to_numpy(dtype=np.float64) / span
    for row in np.argsort(-frame["listeners"].to_numpy(), kind="stable"):
        if len(picked) == n:
            break
        if all(np.hypot(*(coords[row] - coords[other])) >= min_distance for other in picked):
            picked.append(int(row))
    return frame.iloc[picked]


def map_chart(frame: pd.DataFrame, labels: int = MAP_LABELS) -> alt.LayerChart:
    """Scatter of artists in the first two principal components, coloured by the mood they seed."""
    moods = sorted(set(frame["group"]) - {OTHER_ARTISTS})
    palette = [MOOD_PALETTE[i % len(MOOD_PALETTE)] for i in range(len(moods))]
    base = alt.Chart(frame).encode(
        x=alt.X("x:Q", title="component 1", axis=alt.Axis(labels=False, ticks=False)),
        y=alt.Y("y:Q", title="component 2", axis=alt.Axis(labels=False, ticks=False)),
    )
    points = base.mark_circle(opacity=0.8).encode(
        size=alt.Size("listeners:Q", legend=None, scale=alt.Scale(range=[15, 400])),
        color=alt.Color(
            "group:N",
            title="seeds the mood",
            scale=alt.Scale(domain=[*moods, OTHER_ARTISTS], range=[*palette, OTHER_COLOUR]),
        ),
        order=alt.Order("listeners:Q"),
        tooltip=["artist", "listeners", "moods"],
    )
    text = (
        alt.Chart(spread_labels(frame, labels))
        .mark_text(align="left", dx=7, fontSize=11)
        .encode(x="x:Q", y="y:Q", text="artist:N")
    )
    return (points + text).properties(height=520)
