"""Experiments: running (and recently stopped) online experiments with their readouts.

Needs the UI's admin key (``$MUSICREC_UI_ADMIN_KEY`` or ``$MUSICREC_UI_ADMIN_KEY_FILE``):
the experiment routes are admin routes. Without one the page says so and shows nothing else.
"""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from musicrec.ui.client import (
    ADMIN_KEY_ENV,
    ADMIN_KEY_FILE_ENV,
    ApiClient,
    ApiError,
    ApiRequestError,
)
from musicrec.ui.components import get_admin_client, show_api_error, show_inline_error
from musicrec.ui.readouts import (
    ab_chart,
    ab_frame,
    differences_frame,
    interleave_chart,
    interleave_frame,
    stopped_arms,
    when,
)

RECENT_DAYS = 30
DAY_S = 86_400
ALPHA = 0.05  # the report's threshold for naming a winner


def _p(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _heading(experiment: dict[str, Any]) -> None:
    running = experiment["status"] == "running"
    st.subheader(f"{'🟢' if running else '⚪'} {experiment['name']}")
    arms = " · ".join(
        f"{arm['name']} {arm['share']:g} % ({arm.get('version') or arm['model']})"
        for arm in experiment["arms"]
    )
    mode = "A/B" if experiment["mode"] == "ab" else "interleaved"
    st.caption(f"{mode} · started {when(experiment['started_at'])} · {arms}")
    if not running:
        st.caption(
            f"Stopped {when(experiment.get('stopped_at'))}: "
            f"{experiment.get('stop_reason') or 'no reason recorded'}"
        )


def _winner_line(report: dict[str, Any], p_value: Any) -> None:
    winner = report.get("winner")
    if winner:
        st.success(f"Winner: **{winner}** (p = {_p(p_value)} < {ALPHA})")
    else:
        st.info(f"No winner yet: no arm is ahead at p < {ALPHA} (p = {_p(p_value)}).")


def ab_readout(report: dict[str, Any]) -> None:
    """Rates per arm with intervals, the differences with p-values, the SRM check."""
    frame = ab_frame(report)
    if frame.empty:
        st.info("No arm has been shown to a listener yet.")
        return
    st.altair_chart(ab_chart(frame))
    pairs = differences_frame(report)
    listen = pairs[pairs["metric"] == "listen_through"]
    _winner_line(report, None if listen.empty else listen["p_adjusted"].min())
    if not pairs.empty:
        number = st.column_config.NumberColumn
        st.dataframe(
            pairs,
            hide_index=True,
            column_config={
                **{name: number(format="%.4f") for name in ("difference", "low", "high")},
                "p_value": number("p", format="%.3g"),
                "p_adjusted": number("p (Holm)", format="%.3g"),
            },
        )
    _srm(report)


def _srm(report: dict[str, Any]) -> None:
    srm = report.get("srm") or {}
    stopped = [name for name, arm in report["arms"].items() if arm.get("stopped_at")]
    if report.get("srm_ok") is False and stopped:
        st.caption(
            f"Sample-ratio check: χ² p = {_p(srm.get('p_value'))}, listeners "
            f"{srm.get('listeners')} for shares {srm.get('shares')}: expected once an arm is "
            f"stopped ({', '.join(stopped)}), since its listeners see the champion from then on."
        )
    elif report.get("srm_ok") is False:
        st.warning(
            f"Sample-ratio mismatch (χ² p = {_p(srm.get('p_value'))}): the arms' listener "
            f"counts {srm.get('listeners')} do not match their shares {srm.get('shares')}. "
            "The split or the logging is broken; do not trust the differences."
        )
    elif srm.get("p_value") is not None:
        st.caption(f"Sample-ratio check: χ² p = {_p(srm['p_value'])} (listeners as shared).")


def interleave_readout(report: dict[str, Any]) -> None:
    """Win shares with intervals, ties, the binomial test and the preference."""
    found = report["interleave"]
    frame = interleave_frame(report)
    if not found["listeners"]:
        st.info("No listener has been shown an interleaved list yet.")
        return
    st.altair_chart(interleave_chart(frame))
    _winner_line(report, found.get("p_value"))
    preference = found.get("preference") or {}
    wins = ", ".join(f"{name} {n:,}" for name, n in found["wins"].items())
    st.caption(
        f"{found['listeners']:,} listeners: won {wins}, ties {found['ties']:,} (binomial "
        f"test of wins, ties left out). Preference toward {preference.get('toward')}: "
        f"{_p(preference.get('value'))} (95 % interval {_p(preference.get('low'))} to "
        f"{_p(preference.get('high'))}; +1 all prefer it, -1 none)."
    )


def experiment_section(client: ApiClient, experiment: dict[str, Any]) -> None:
    """One experiment: what it runs, its readout, and why any arm was stopped."""
    _heading(experiment)
    try:
        report = client.experiment_report(experiment["name"]).model_dump()
    except ApiRequestError as err:
        show_inline_error(err)
        return
    except ApiError as err:
        show_api_error(err, retry_key=f"retry_{experiment['name']}")
    if "interleave" in report:
        interleave_readout(report)
    else:
        ab_readout(report)
    for arm, stopped, why in stopped_arms(report):
        st.warning(f"Arm **{arm}** stopped {stopped}: {why}", icon="🛑")


def render() -> None:
    """The Experiments page."""
    st.title("🧪 Experiments")
    st.caption(
        "Online experiments on listeners: each arm's listen-through, skips and bans per "
        "impression with 95 % intervals over listeners, the difference between arms with its "
        "p-value, and the winner once one is ahead at p < 0.05."
    )
    client = get_admin_client()
    if client is None:
        st.info(
            "This page needs an admin key: the experiment routes are admin routes. Start the "
            f"UI with ${ADMIN_KEY_ENV} (or ${ADMIN_KEY_FILE_ENV}, a file holding it) set to a "
            "key with the admin scope, or to the service's MUSICREC_ADMIN_API_KEY.",
            icon="🔑",
        )
        return
    recent = st.toggle(
        f"Also show experiments stopped in the last {RECENT_DAYS} days", True, key="recent"
    )
    try:
        experiments = client.experiments().experiments
    except ApiRequestError as err:
        show_inline_error(err)
        return
    except ApiError as err:
        show_api_error(err, retry_key="retry_experiments")
    since = time.time() - RECENT_DAYS * DAY_S
    shown = [e for e in experiments if e["status"] == "running"]
    if recent:
        shown += [
            e for e in experiments if e["status"] != "running" and (e["stopped_at"] or 0) >= since
        ]
    if not shown:
        st.info("No experiment is running. Start one with `musicrec online start`.")
        return
    for experiment in shown:
        experiment_section(client, experiment)


if __name__ == "__main__":
    render()
