"""``musicrec online report --plot``: per-arm rates with their 95 % intervals as error bars.

The house style of :mod:`musicrec.tracking.plots`: matplotlib's Agg canvas, no pyplot state,
written to a temporary file and renamed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

TITLES = {
    "listen_through": "listen-through (higher is better)",
    "skip_rate": "skips per impression",
    "ban_rate": "bans per impression",
}


def _bars(estimates: list[Mapping[str, Any]]) -> tuple[list[float], list[list[float]]]:
    values = [float(e["value"]) if e.get("value") is not None else 0.0 for e in estimates]
    below, above = [], []
    for value, e in zip(values, estimates, strict=True):
        low, high = e.get("low"), e.get("high")
        below.append(max(0.0, value - low) if low is not None else 0.0)
        above.append(max(0.0, high - value) if high is not None else 0.0)
    return values, [below, above]


def _ab(figure: Any, report: Mapping[str, Any]) -> None:
    arms = report["arms"]
    names = list(arms)
    labels = [
        f"{name} ({arms[name]['listeners']:,})"
        + (" stopped" if arms[name].get("stopped_at") else "")
        for name in names
    ]
    axes = figure.subplots(1, len(TITLES))
    for ax, (metric, title) in zip(axes, TITLES.items(), strict=True):
        values, errors = _bars([arms[name][metric] for name in names])
        colours = [
            "C3" if arms[n].get("stopped_at") else ("C2" if n == report.get("winner") else "C0")
            for n in names
        ]
        ax.barh(labels, values, xerr=errors, color=colours, alpha=0.8, capsize=3)
        for position, value in enumerate(values):
            ax.annotate(
                f"{value:.3f}", (value, position), textcoords="offset points",
                xytext=(10, -3), fontsize=7,
            )  # fmt: skip
        ax.invert_yaxis()
        ax.set(title=title)
        ax.grid(axis="x", alpha=0.3)
    srm = report.get("srm", {}).get("p_value")
    winner = report.get("winner") or "none (p >= 0.05)"
    note = f"winner: {winner}; sample-ratio check p = {srm:.3g}" if srm is not None else ""
    figure.suptitle(
        f"{report['experiment']['name']}: per-arm rates, 95 % intervals over listeners. {note}",
        fontsize=9,
    )


def _interleave(figure: Any, report: Mapping[str, Any]) -> None:
    found = report["interleave"]
    wins_ax, pref_ax = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    names = [*found["wins"], "ties"]
    values = [*found["wins"].values(), found["ties"]]
    wins_ax.barh(names, values, color=["C0", "C1", "C7"])
    wins_ax.invert_yaxis()
    wins_ax.set(title=f"listeners won (binomial p = {found['p_value']:.3g})")
    wins_ax.grid(axis="x", alpha=0.3)
    (value,), errors = _bars([found["preference"]])
    pref_ax.barh([f"toward {found['preference']['toward']}"], [value], xerr=errors, capsize=3)
    pref_ax.axvline(0.0, color="k", lw=0.8)
    pref_ax.set(title="preference, 95 % interval over listeners", xlim=(-1, 1))
    figure.suptitle(
        f"{report['experiment']['name']} (interleaved): winner {found['winner'] or 'none'}",
        fontsize=9,
    )


def report_plot(report: Mapping[str, Any], path: Path) -> Path:
    """Draw ``report`` (of :func:`musicrec.online.report.experiment_report`) to ``path``."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 1.6 + 0.5 * max(2, len(report.get("arms", {})))), dpi=100)
    if "interleave" in report:
        _interleave(figure, report)
    else:
        _ab(figure, report)
    figure.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    figure.savefig(tmp)
    tmp.replace(path)
    return path
