"""Intervals in pictures and tables: an evaluation's metrics with their 95 % intervals (logged
with the run as ``evaluation/intervals.png``), and the error bars and segment table of
``musicrec experiments report``. matplotlib's Agg canvas, no pyplot state.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

SEGMENT_ORDER = ("cold", "light", "heavy", "head", "mid", "tail")
PLOTTED = ("precision", "recall", "map", "ndcg", "coverage", "diversity", "gini")


def _bounds(intervals: Mapping[str, Any], name: str, value: float) -> tuple[float, float]:
    found = intervals.get(name) or {}
    low, high = found.get("low", value), found.get("high", value)
    return max(0.0, value - low), max(0.0, high - value)


def _error_bars(bounds: list[tuple[float, float]]) -> list[list[float]] | None:
    """matplotlib's ``xerr``: a row of distances below and a row above."""
    if not bounds:
        return None
    return [[low for low, _ in bounds], [high for _, high in bounds]]


def intervals_plot(report: Mapping[str, Any], path: Path, k: int = 10) -> Path:
    """Metrics at cut-off ``k`` with error bars; NDCG@k per segment beside them."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), dpi=100)
    overall, by_segment = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    intervals = report.get("intervals", {})
    names = [f"{m}@{k}" for m in PLOTTED if isinstance(report.get(f"{m}@{k}"), (int, float))]
    values = [float(report[name]) for name in names]
    errors = _error_bars([_bounds(intervals, n, v) for n, v in zip(names, values, strict=True)])
    overall.barh(names, values, xerr=errors, color="C0", alpha=0.8, capsize=3)
    for position, value in enumerate(values):
        overall.annotate(
            f"{value:.3f}",
            (value, position),
            textcoords="offset points",
            xytext=(10, -3),
            fontsize=7,
        )
    overall.invert_yaxis()
    overall.set(title=f"metrics @{k} (95 % interval over users)", xlim=(0, 1.05))
    overall.grid(axis="x", alpha=0.3)
    segments = report.get("segments", {})
    metric = f"ndcg@{k}"
    shown = [s for s in SEGMENT_ORDER if isinstance(segments.get(s, {}).get(metric), float)]
    seg_values = [segments[s][metric] for s in shown]
    seg_errors = _error_bars(
        [
            _bounds(segments[s].get("intervals", {}), metric, v)
            for s, v in zip(shown, seg_values, strict=True)
        ]
    )
    labels = [f"{s} ({segments[s].get('users', 0):,})" for s in shown]
    colours = ["C1" if s in SEGMENT_ORDER[:3] else "C2" for s in shown]
    by_segment.barh(labels, seg_values, xerr=seg_errors, color=colours, capsize=3)
    by_segment.invert_yaxis()
    by_segment.set(title=f"{metric} per segment (users)")
    by_segment.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    figure.savefig(tmp)
    tmp.replace(path)
    return path


def interval_columns(metrics: Mapping[str, float], metric: str) -> dict[str, float | None]:
    """A run's interval of ``metric`` (``<metric>.low`` / ``.high``) and its segments' values."""
    out: dict[str, float | None] = {
        f"{metric}.low": metrics.get(f"{metric}.low"),
        f"{metric}.high": metrics.get(f"{metric}.high"),
    }
    for segment in SEGMENT_ORDER:
        key = f"segment.{segment}.{metric}"
        for suffix in ("", ".low", ".high"):
            out[key + suffix] = metrics.get(key + suffix)
    return out


def error_bars(axes: Any, frame: Any, metric: str) -> None:
    """Vertical 95 % interval of ``metric`` for every run that has one."""
    low, high = f"{metric}.low", f"{metric}.high"
    if low not in frame or high not in frame:
        return
    runs = frame.dropna(subset=[low, high])
    if runs.empty:
        return
    below = (runs[metric] - runs[low]).clip(lower=0)
    above = (runs[high] - runs[metric]).clip(lower=0)
    axes.errorbar(
        runs["train_seconds"],
        runs[metric],
        yerr=[below.to_numpy(), above.to_numpy()],
        fmt="none",
        ecolor="0.4",
        elinewidth=0.8,
        capsize=2,
        label="95 % interval",
    )


def segment_markdown(frame: Any, metric: str) -> str:
    """A Markdown table: ``metric`` per segment and run, with intervals where logged."""
    present = [s for s in SEGMENT_ORDER if f"segment.{s}.{metric}" in frame]
    if not present:
        return ""
    label = metric.replace("_at_", "@")
    lines = [
        f"\n## {label} per segment\n",
        "Listeners by training artists (cold / light / heavy), test artists by training "
        "listeners (head / mid / tail); 95 % intervals from the bootstrap over users.\n",
        "| run | " + " | ".join(present) + " |",
        "|---|" + "---|" * len(present),
    ]
    for row in frame.to_dict("records"):
        cells = [_cell(row, f"segment.{segment}.{metric}") for segment in present]
        lines.append(f"| {row['run']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(row: Mapping[str, Any], key: str) -> str:
    value, low, high = row.get(key), row.get(f"{key}.low"), row.get(f"{key}.high")
    if not isinstance(value, float) or value != value:  # not evaluated with segments
        return ""
    if isinstance(low, float) and isinstance(high, float) and low == low and high == high:
        return f"{value:.4f} [{low:.4f}, {high:.4f}]"
    return f"{value:.4f}"
