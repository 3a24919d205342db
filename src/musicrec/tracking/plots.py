"""Pictures of an evaluation: every metric with its 95 % interval, overall and per segment.

Drawn with matplotlib's Agg canvas (no pyplot state); logged with the evaluation run as
``evaluation/intervals.png`` and written beside the model as ``evaluation.png``.
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
        overall.annotate(f"{value:.3f}", (value, position), fontsize=7)
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
