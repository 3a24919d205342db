"""Experiment readouts as tables and Altair charts (pure functions, no Streamlit calls).

They read the report of ``GET /admin/experiments/{name}/report`` (what ``musicrec online
report --json`` prints, :mod:`musicrec.online.report`) and recompute nothing the report has:
ab mode draws each arm's rates with the report's 95 % bootstrap intervals over listeners.
Interleave mode's report gives wins, losses and ties; the win share of each arm (wins over
the listeners who preferred one arm) is drawn with its 95 % Wilson interval
(:func:`musicrec.stats.proportion_interval`), the interval that goes with the report's
binomial test of wins against losses.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import altair as alt
import pandas as pd

from musicrec import stats

METRICS = {  # the report's per-arm rates, in the order drawn
    "listen_through": "listen-through (higher is better)",
    "skip_rate": "skips per impression",
    "ban_rate": "bans per impression",
}
STATUS_COLOURS = {"winner": "#59a14f", "stopped": "#e15759", "running": "#4e79a7"}
RATE_COLUMNS = ["arm", "metric", "value", "low", "high", "listeners", "impressions", "status"]


def when(epoch: float | None) -> str:
    """An epoch time as ``YYYY-MM-DD HH:MM UTC`` (empty for none)."""
    if epoch is None:
        return ""
    return datetime.fromtimestamp(float(epoch), tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def arm_status(name: str, arm: Mapping[str, Any], winner: str | None) -> str:
    """``stopped`` (by a guardrail or by hand), ``winner`` or ``running``."""
    if arm.get("stopped_at") is not None:
        return "stopped"
    return "winner" if name == winner else "running"


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else float("nan")


def ab_frame(report: Mapping[str, Any]) -> pd.DataFrame:
    """One row per arm and rate: the value and its 95 % interval as the report gives them."""
    rows = []
    for name, arm in report.get("arms", {}).items():
        status = arm_status(name, arm, report.get("winner"))
        for metric in METRICS:
            estimate = arm.get(metric) or {}
            rows.append(
                {
                    "arm": name,
                    "metric": metric,
                    "value": _number(estimate.get("value")),
                    "low": _number(estimate.get("low")),
                    "high": _number(estimate.get("high")),
                    "listeners": int(arm.get("listeners") or 0),
                    "impressions": int(arm.get("impressions") or 0),
                    "status": status,
                }
            )
    return pd.DataFrame(rows, columns=RATE_COLUMNS)


def differences_frame(report: Mapping[str, Any]) -> pd.DataFrame:
    """One row per pair of arms and rate: the difference (second minus first), its 95 %
    interval, the p-value and the Holm-adjusted p-value."""
    rows = []
    for pair in report.get("differences", []):
        first, second = pair["arms"]
        for metric in METRICS:
            found = pair.get(metric) or {}
            difference = found.get("difference") or {}
            rows.append(
                {
                    "arms": f"{second} − {first}",
                    "metric": metric,
                    "difference": _number(difference.get("value")),
                    "low": _number(difference.get("low")),
                    "high": _number(difference.get("high")),
                    "p_value": _number(found.get("p_value")),
                    "p_adjusted": _number(found.get("p_adjusted")),
                }
            )
    columns = ["arms", "metric", "difference", "low", "high", "p_value", "p_adjusted"]
    return pd.DataFrame(rows, columns=columns)


def _status_colour() -> alt.Color:
    return alt.Color(
        "status:N",
        title=None,
        scale=alt.Scale(domain=list(STATUS_COLOURS), range=list(STATUS_COLOURS.values())),
    )


def ab_chart(frame: pd.DataFrame) -> alt.FacetChart:
    """Each arm's rate as a point with its 95 % interval as an error bar, one panel per rate
    (each with its own scale)."""
    arms = list(dict.fromkeys(frame["arm"]))
    labelled = frame.assign(title=frame["metric"].map(METRICS))
    y = alt.Y("arm:N", sort=arms, title=None)
    tooltip = [
        "arm",
        "status",
        alt.Tooltip("value:Q", format=".4f"),
        alt.Tooltip("low:Q", format=".4f", title="95 % low"),
        alt.Tooltip("high:Q", format=".4f", title="95 % high"),
        alt.Tooltip("listeners:Q", format=","),
        alt.Tooltip("impressions:Q", format=","),
    ]
    bars = (
        alt.Chart()
        .mark_rule(strokeWidth=2)
        .encode(x=alt.X("low:Q", title=None), x2="high:Q", y=y, color=_status_colour())
    )
    points = (
        alt.Chart()
        .mark_point(filled=True, size=90)
        .encode(x="value:Q", y=y, color=_status_colour(), tooltip=tooltip)
    )
    return (
        alt.layer(bars, points, data=labelled)
        .properties(width=220, height=36 * max(2, len(arms)))
        .facet(column=alt.Column("title:N", sort=list(METRICS.values()), title=None))
        .resolve_scale(x="independent")
    )


def interleave_frame(report: Mapping[str, Any]) -> pd.DataFrame:
    """Per arm: listeners won, the listeners who preferred either arm, the win share and its
    95 % Wilson interval; ties are left out, as in the binomial test."""
    found = report["interleave"]
    wins: dict[str, int] = {name: int(n) for name, n in found["wins"].items()}
    decided = sum(wins.values())
    rows = []
    for name, won in wins.items():
        low, high = stats.proportion_interval(won, decided)
        share = won / decided if decided else float("nan")
        status = arm_status(name, report.get("arms", {}).get(name, {}), report.get("winner"))
        rows.append(
            {
                "arm": name,
                "wins": won,
                "decided": decided,
                "ties": int(found.get("ties") or 0),
                "share": share,
                "low": low,
                "high": high,
                "status": status,
            }
        )
    columns = ["arm", "wins", "decided", "ties", "share", "low", "high", "status"]
    return pd.DataFrame(rows, columns=columns)


def interleave_chart(frame: pd.DataFrame) -> alt.LayerChart:
    """Each arm's share of the listeners who preferred one arm, with its 95 % interval;
    the dashed line at one half is no preference."""
    arms = list(frame["arm"])
    y = alt.Y("arm:N", sort=arms, title=None)
    x = alt.X("low:Q", title="share of listeners won", scale=alt.Scale(domain=[0, 1]))
    bars = alt.Chart(frame).mark_rule(strokeWidth=2).encode(x=x, x2="high:Q", y=y)
    points = (
        alt.Chart(frame)
        .mark_point(filled=True, size=90)
        .encode(
            x="share:Q",
            y=y,
            color=_status_colour(),
            tooltip=[
                "arm",
                "wins",
                "decided",
                "ties",
                alt.Tooltip("share:Q", format=".3f"),
                alt.Tooltip("low:Q", format=".3f", title="95 % low"),
                alt.Tooltip("high:Q", format=".3f", title="95 % high"),
            ],
        )
    )
    half = alt.Chart(pd.DataFrame({"x": [0.5]})).mark_rule(strokeDash=[4, 4]).encode(x="x:Q")
    return alt.LayerChart(layer=[bars, points, half], height=36 * max(2, len(arms)))


def stopped_arms(report: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(arm, when, why)`` of every stopped arm (a guardrail's reason names the breach)."""
    found = []
    for name, arm in report.get("arms", {}).items():
        if arm.get("stopped_at") is None:
            continue
        why = arm.get("stop_reason") or "no reason recorded"
        found.append((name, when(arm["stopped_at"]), why))
    return found
