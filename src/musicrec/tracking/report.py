"""Experiment reports: an experiment's runs read back from MLflow, compared.

The report reads runs back (a query, not paths: a grid or a tune, :mod:`musicrec.pipeline.grid`
and :mod:`musicrec.pipeline.tune`, nests its trials under one run) into a CSV, a Markdown table
(with the metric per segment) and a plot of NDCG@10 against training time with the 95 %
intervals as error bars and the Pareto front (no faster run scores higher).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from musicrec.errors import ConfigError
from musicrec.fsutil import write_text_atomic
from musicrec.tracking.plots import error_bars, interval_columns, segment_markdown
from musicrec.tracking.store import PARENT_TAG, display_uri, get_client, mlflow_errors

if TYPE_CHECKING:
    from mlflow import MlflowClient

REPORT_PARAMS = (
    "factors",
    "iterations",
    "regularization",
    "alpha",
    "weighting",
    "l2",
    "similarity",
    "neighbours",
    "rp3_alpha",
    "rp3_beta",
    "blend_weight",
)
REPORT_METRICS = ("precision_at_10", "recall_at_10", "map_at_10", "coverage_at_10")


def collect_runs(
    experiment: str,
    metric: str = "ndcg_at_10",
    parent_run_id: str | None = None,
    client: MlflowClient | None = None,
) -> pd.DataFrame:
    """One row per finished run of ``experiment`` that has ``metric`` and ``train_seconds``.

    ``parent_run_id`` keeps only that run's children; ``latest`` means the newest grid or tune.
    """
    client = client or get_client()
    with mlflow_errors(f"reading experiment {experiment!r}"):
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise ConfigError(
                f"no experiment named {experiment!r} in {display_uri(client.tracking_uri)}"
            )
        query = f"attributes.status = 'FINISHED' and metrics.{metric} > -1"
        if parent_run_id == "latest":
            parent_run_id = latest_parent(client, found.experiment_id)
        if parent_run_id:
            query += f" and tags.`{PARENT_TAG}` = '{parent_run_id}'"
        runs = client.search_runs([found.experiment_id], query, max_results=5000)
    rows = []
    for run in runs:
        metrics, params = run.data.metrics, run.data.params
        if "train_seconds" not in metrics:
            continue
        row: dict[str, Any] = {"run": run.info.run_name, "run_id": run.info.run_id}
        row["kind"] = params.get("kind") or run.data.tags.get("kind") or "als"
        row |= {name: params.get(name) for name in REPORT_PARAMS}
        row["train_seconds"] = metrics["train_seconds"]
        row[metric] = metrics[metric]
        row |= {name: metrics.get(name) for name in REPORT_METRICS if name != metric}
        row["popularity.ndcg_at_10"] = metrics.get("popularity.ndcg_at_10")
        row |= interval_columns(metrics, metric)
        row["dataset_fingerprint"] = run.data.tags.get("dataset_fingerprint")
        rows.append(row)
    if not rows:
        raise ConfigError(f"no finished run in {experiment!r} has both {metric} and train_seconds")
    frame = pd.DataFrame(rows).dropna(axis=1, how="all")
    numeric = ("factors", "iterations", "regularization", "alpha", "l2", "neighbours")
    for name in (*numeric, "rp3_alpha", "rp3_beta", "blend_weight"):
        if name in frame:
            frame[name] = pd.to_numeric(frame[name])
    frame["pareto"] = pareto_front(frame["train_seconds"].to_numpy(), frame[metric].to_numpy())
    return frame.sort_values(metric, ascending=False, ignore_index=True)


def latest_parent(client: MlflowClient, experiment_id: str) -> str:
    """Id of the newest finished ``grid`` or ``tune`` run of the experiment."""
    found = [
        run
        for stage in ("grid", "tune")
        for run in client.search_runs(
            [experiment_id],
            f"attributes.status = 'FINISHED' and tags.stage = '{stage}'",
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
    ]
    if not found:
        raise ConfigError("no finished grid or tune run in this experiment")
    return str(max(found, key=lambda run: run.info.start_time).info.run_id)


def pareto_front(seconds: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Mask of runs no other run beats on both (higher score and no slower, or faster)."""
    order = np.lexsort((-scores, seconds))  # fastest first; ties: best score first
    mask = np.zeros(len(seconds), dtype=bool)
    best = -np.inf
    for index in order:
        if scores[index] > best:
            mask[index] = True
            best = scores[index]
    return mask


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table; floats to 4 significant decimals."""

    def cell(value: Any) -> str:
        if isinstance(value, (float, np.floating)):
            return "" if np.isnan(value) else f"{value:.4f}"
        if isinstance(value, (bool, np.bool_)):
            return "✓" if value else ""
        return str(value)

    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join([header, rule, *body]) + "\n"


def plot_runs(frame: pd.DataFrame, metric: str, path: Path, title: str) -> Path:
    """Scatter of ``metric`` against training seconds, Pareto front highlighted."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), dpi=110)
    axes = figure.add_subplot()
    front = frame[frame["pareto"]].sort_values("train_seconds")
    for position, (kind, runs) in enumerate(frame.groupby("kind", sort=True)):
        axes.scatter(runs["train_seconds"], runs[metric], color=f"C{position}", s=24, label=kind)
    axes.step(front["train_seconds"], front[metric], where="post", color="0.3", alpha=0.6)
    axes.scatter(
        front["train_seconds"],
        front[metric],
        facecolors="none",
        edgecolors="0.1",
        s=70,
        label="Pareto front",
    )
    for row in front.itertuples():
        axes.annotate(
            str(row.run),
            (row.train_seconds, getattr(row, metric)),
            textcoords="offset points",
            xytext=(4, -10),
            fontsize=7,
        )
    error_bars(axes, frame, metric)
    axes.set(xlabel="training time (s)", ylabel=metric.replace("_at_", "@"), title=title)
    if frame["train_seconds"].max() > 10 * max(frame["train_seconds"].min(), 1e-3):
        axes.set_xscale("log")
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    figure.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    figure.savefig(tmp)
    tmp.replace(path)
    return path


@dataclass(frozen=True)
class ReportFiles:
    csv: Path
    markdown: Path
    plot: Path
    runs: int


def experiment_report(
    experiment: str,
    out_dir: str | Path,
    *,
    metric: str = "ndcg_at_10",
    parent_run_id: str | None = None,
    client: MlflowClient | None = None,
) -> ReportFiles:
    """Write ``<experiment>.csv``, ``.md`` and ``.png`` comparing the experiment's runs."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: exists and is not a directory")
    frame = collect_runs(experiment, metric, parent_run_id, client)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / experiment
    csv_path = stem.with_suffix(".csv")
    write_text_atomic(csv_path, frame.to_csv(index=False, float_format="%.6g"))
    segments = segment_markdown(frame, metric)
    shown = frame.drop(columns=["run_id", *(c for c in frame if str(c).startswith("segment."))])
    fingerprints = sorted(frame["dataset_fingerprint"].dropna().unique())
    note = (
        f"{len(frame)} runs of MLflow experiment `{experiment}` on dataset "
        f"{', '.join(fingerprints)}, best {metric} first; `pareto` marks runs that no faster "
        "run beats.\n"
    )
    if len(fingerprints) > 1:
        note += "\n**Runs on different datasets are not comparable.**\n"
    md_path = stem.with_suffix(".md")
    write_text_atomic(md_path, f"# {experiment}\n\n{note}\n{to_markdown(shown)}{segments}")
    label = metric.replace("_at_", "@")
    plot = plot_runs(frame, metric, stem.with_suffix(".png"), f"{experiment}: {label} vs time")
    return ReportFiles(csv_path, md_path, plot, len(frame))
