"""``musicrec compare`` and the tables of ``evaluate`` (metrics with intervals, segments)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from musicrec.cli.common import console, friendly_errors
from musicrec.errors import ConfigError

if TYPE_CHECKING:
    from musicrec.pipeline.gate import GateResult

app = typer.Typer()

ROW_ORDER = (
    "precision",
    "recall",
    "map",
    "ndcg",
    "coverage",
    "novelty",
    "diversity",
    "popularity_lift",
    "gini",
)
SEGMENT_ROWS = ("cold", "light", "heavy", "head", "mid", "tail")


def _interval(intervals: dict[str, Any], key: str, digits: int = 4) -> str:
    found = intervals.get(key)
    return f"[{found['low']:.{digits}f}, {found['high']:.{digits}f}]" if found else "-"


def metrics_table(report: dict[str, Any], ks: list[int]) -> Table:
    """Each metric@K with its interval, next to each baseline's value."""
    baselines = [name for name in ("popularity", "random") if name in report]
    boot = report.get("bootstrap") or {}
    title = f"evaluation · {report['users_evaluated']:,} test users"
    if boot.get("resamples"):
        title += (
            f" · 95 % intervals from {boot['resamples']:,} resamples of users (seed {boot['seed']})"
        )
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("model", justify="right")
    table.add_column("95 % interval", justify="right")
    for name in baselines:
        table.add_column(name, justify="right")
    intervals = report.get("intervals", {})
    for metric in ROW_ORDER:
        for k in ks:
            key = f"{metric}@{k}"
            if key not in report:
                continue
            row = [key, _value(report[key]), _interval(intervals, key)]
            row += [_value(report[name].get(key)) for name in baselines]
            table.add_row(*row)
    return table


def _value(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def segments_table(segments: dict[str, Any], k: int) -> Table:
    """One row per listener segment and artist tier: size, threshold, metrics@k with intervals."""
    table = Table(
        title=f"segments @{k}, 95 % intervals: listeners by training artists, "
        "test artists by training listeners"
    )
    metrics = (f"ndcg@{k}", f"recall@{k}")
    for column in ("segment", "users", "definition", *metrics):
        table.add_column(
            column, justify="left" if column in ("segment", "definition") else "right", no_wrap=True
        )
    thresholds = segments.get("thresholds", {})
    for name in SEGMENT_ROWS:
        entry = segments.get(name)
        if not entry:
            continue
        intervals = entry.get("intervals", {})
        cells = []
        for metric in metrics:
            value = entry.get(metric)
            cells.append(
                f"{value:.3f} {_interval(intervals, metric, 3)}"
                if isinstance(value, float)
                else "-"
            )
        users = f"{entry.get('users', 0):,}"
        table.add_row(name, users, thresholds.get(name, ""), *cells)
    return table


def comparison_table(payload: dict[str, Any], a: str, b: str) -> Table:
    """Per metric: a, b, b - a with its interval and the three p-values."""
    settings = payload.get("comparison", {})
    table = Table(
        title=f"b = {b} against a = {a} · {settings.get('users', 0):,} test users · "
        f"{settings.get('resamples', 0):,} resamples, {settings.get('permutations', 0):,} "
        "permutations"
    )
    for column in ("metric", "a", "b", "b - a", "95 % interval", "p (t)", "p (rand.)", "p (Holm)"):
        table.add_column(
            column,
            justify="left" if column == "metric" else "right",
            no_wrap=column in ("metric", "95 % interval"),
        )
    for name, entry in payload.items():
        if name in ("segments", "comparison"):
            continue
        table.add_row(
            name,
            _value(entry["a"]),
            _value(entry["b"]),
            f"{entry['difference']:+.4f}",
            f"[{entry['low']:+.4f}, {entry['high']:+.4f}]",
            _p(entry["p_value_t"]),
            _p(entry["p_value_randomization"]),
            _p(entry["p_value_holm"]),
        )
    return table


def gate_table(result: GateResult, candidate: str, champion: str) -> Table:
    """Each check of the gate: pass or fail and the numbers behind it."""
    table = Table(
        title=f"{result.config.mode} gate · candidate version {candidate} against champion "
        f"{champion}"
    )
    table.add_column("check")
    table.add_column("", justify="center")
    table.add_column("evidence (95 % intervals over the same test users)")
    for check in result.checks:
        table.add_row(check.name, "pass" if check.passed else "[red]fail[/red]", check.detail)
    return table


def _p(value: Any) -> str:
    if value is None:
        return "-"
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


@app.command()
@friendly_errors
def compare(
    data: Annotated[Path, typer.Option(help="Prepared dataset directory (both models' data).")],
    model: Annotated[
        list[Path], typer.Option(help="Model artifact directory; give it twice: a, then b.")
    ],
    k: Annotated[list[int] | None, typer.Option("--k", help="Cut-offs (repeatable).")] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(help="Only these metrics, e.g. ndcg@10 (repeatable; Holm across them)."),
    ] = None,
    bootstrap: Annotated[int, typer.Option(help="Paired bootstrap resamples of users.")] = 1000,
    permutations: Annotated[int, typer.Option(help="Randomization-test permutations.")] = 5000,
    seed: Annotated[int, typer.Option(help="Seed of resamples and permutations.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON keyed by metric.")] = False,
    output: Annotated[Path | None, typer.Option(help="Also write the JSON here.")] = None,
) -> None:
    """Score two models on the same test users; per metric b - a with a paired interval and
    p-values (paired t, randomization, Holm across metrics)."""
    from musicrec.fsutil import write_json_atomic
    from musicrec.pipeline.compare import compare_models

    if len(model) != 2:
        raise ConfigError(f"--model must be given exactly twice (a, then b), got {len(model)}")
    if bootstrap < 1 or permutations < 1:
        raise ConfigError("--bootstrap and --permutations must be at least 1")
    ks = sorted(set(k or [10, 20]))
    if ks[0] < 1:
        raise ConfigError(f"--k must be at least 1, got {ks[0]}")
    result = compare_models(
        data, model[0], model[1], ks, metric, bootstrap, permutations, seed, not as_json
    )
    payload = result.to_dict()
    payload["comparison"] |= {"a": str(model[0]), "b": str(model[1])}
    if output:
        write_json_atomic(output, payload)
    if as_json:
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    Console().print(comparison_table(payload, str(model[0]), str(model[1])))
    console.print(
        "p (rand.): Fisher's paired randomization test; p (Holm): it, Holm-corrected across "
        "the metrics above; `--json` adds every segment.",
        highlight=False,
    )
