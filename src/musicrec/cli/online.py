"""``musicrec online start|list|stop|report`` and ``musicrec simulate``.

Logic lives in :mod:`musicrec.online`; experiments are stored in the event store, so every
API worker and replica that shares it sees the same ones.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from musicrec.cli.common import StoreOption, events_url, friendly_errors

app = typer.Typer()  # this module's commands; musicrec.cli merges them

online_app = typer.Typer(
    help="Online experiments: A/B tests and interleaving on live listeners.",
    no_args_is_help=True,
)
app.add_typer(online_app, name="online")


def _experiments(url: str | None) -> Any:
    from musicrec.events.store import EventStore
    from musicrec.online.experiments import ExperimentStore

    return ExperimentStore(EventStore(events_url(url)))


@online_app.command("start")
@friendly_errors
def online_start(
    name: Annotated[str, typer.Argument(help="Experiment name (letters, digits, _ . -).")],
    arm: Annotated[
        list[str],
        typer.Option(help="NAME=MODEL: an artifact path or a models:/ URI; give two or more."),
    ],
    share: Annotated[
        str | None, typer.Option(help="Percent of listeners per arm, e.g. 50,50 (default: equal).")
    ] = None,
    mode: Annotated[str, typer.Option(help="ab (one arm per listener) or interleave.")] = "ab",
    salt: Annotated[
        str | None, typer.Option(help="Assignment salt (default: the experiment name).")
    ] = None,
    population: Annotated[
        str, typer.Option(help="Percent range of listeners covered, LOW-HIGH.")
    ] = "0-100",
    guardrail: Annotated[
        list[str] | None,
        typer.Option(help="NAME=LIMIT that stops an arm: p99_ms, error_rate, ban_rate, skip_rate."),
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(help="Explore: sample each list Plackett-Luce at this temperature."),
    ] = None,
    events_url_: StoreOption = None,
) -> None:
    """Start an experiment once every arm's model loads (nothing is stored otherwise)."""
    from musicrec.events.store import EventStore
    from musicrec.online.arms import parse_arms, parse_guardrails, start_experiment
    from musicrec.online.assign import parse_range
    from musicrec.online.experiments import ExperimentSpec

    spec = ExperimentSpec(
        name=name,
        arms=parse_arms(arm, share),
        mode=mode,
        salt=salt,
        population=parse_range(population),
        guardrails=parse_guardrails(guardrail or []),
        temperature=temperature,
    )
    experiment = start_experiment(EventStore(events_url(events_url_)), spec)
    arms = ", ".join(f"{a.name}={a.model} ({a.share:g} %, {a.version})" for a in experiment.arms)
    Console().print(f"started {experiment.name} ({experiment.mode}): {arms}", highlight=False)


@online_app.command("list")
@friendly_errors
def online_list(
    running: Annotated[bool, typer.Option(help="Only running experiments.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    events_url_: StoreOption = None,
) -> None:
    """Experiments, oldest first."""
    experiments = _experiments(events_url_).experiments(running_only=running)
    if as_json:
        sys.stdout.write(json.dumps([e.to_dict() for e in experiments], indent=2) + "\n")
        return
    table = Table(title="experiments")
    for column in ("name", "mode", "status", "listeners %", "arms", "stop reason"):
        table.add_column(column)
    for e in experiments:
        arms = ", ".join(f"{a.name} {a.share:g}%" for a in e.arms)
        low, high = e.population
        table.add_row(e.name, e.mode, e.status, f"{low:g}-{high:g}", arms, e.stop_reason or "")
    Console().print(table)


@online_app.command("stop")
@friendly_errors
def online_stop(
    name: Annotated[str, typer.Argument(help="Experiment name.")],
    reason: Annotated[str, typer.Option(help="Why it stops (kept with it).")] = "stopped by hand",
    events_url_: StoreOption = None,
) -> None:
    """Stop a running experiment; its listeners go back to the default model."""
    experiment = _experiments(events_url_).stop(name, reason)
    Console().print(f"stopped {experiment.name}: {experiment.stop_reason}", highlight=False)


@online_app.command("report")
@friendly_errors
def online_report(
    name: Annotated[str, typer.Argument(help="Experiment name.")],
    k: Annotated[int | None, typer.Option(help="Count impressions at positions below k.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    events_url_: StoreOption = None,
) -> None:
    """Counts per arm (or interleave tallies) from impressions and the outcomes joined to them."""
    from musicrec.online.readout import report_counts

    experiments = _experiments(events_url_)
    report = report_counts(experiments.store, experiments.get(name), k)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    out = Console()
    exp = report["experiment"]
    out.print(f"{exp['name']} ({exp['mode']}, {exp['status']})", highlight=False)
    if "arms" in report:
        table = Table(title="counts per arm (intervals and tests: not computed here)")
        columns = ["listeners", "impressions", "listened", "plays", "skips", "loves", "bans"]
        table.add_column("arm")
        for column in columns:
            table.add_column(column, justify="right")
        for arm, totals in report["arms"].items():
            table.add_row(arm, *(f"{totals[c]:,}" for c in columns))
        out.print(table)
    else:
        tallies = ", ".join(f"{key} {value:,}" for key, value in report["interleave"].items())
        out.print(f"interleave: {tallies}", highlight=False)


@app.command("simulate")
@friendly_errors
def simulate(
    url: Annotated[str, typer.Option(help="API base URL (loopback only).")],
    data: Annotated[str, typer.Option(help="Prepared dataset whose test users listen.")],
    listeners: Annotated[int, typer.Option(help="Simulated listeners (test users).")],
    seed: Annotated[int, typer.Option(help="Random seed (listeners and reactions).")] = 0,
    k: Annotated[int, typer.Option(help="Recommendations per list.")] = 10,
    lists: Annotated[int, typer.Option(help="Lists each listener asks for.")] = 1,
    max_seconds: Annotated[float, typer.Option(help="Stop after this many seconds.")] = 600.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Simulated listeners: ask for lists, play held-out artists, skip the rest, post events."""
    from rich.progress import Progress

    from musicrec.online.simulate import simulate_url

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("listeners", total=listeners)
        summary = simulate_url(
            url,
            data,
            listeners,
            seed=seed,
            k=k,
            lists_per_listener=lists,
            max_seconds=max_seconds,
            progress=lambda n: bar.update(task, completed=n),
        )
    report = summary.to_dict()
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    Console().print(
        f"{summary.listeners} listeners, {summary.requests} lists, {summary.events_posted} "
        f"events posted, {summary.errors} errors in {summary.seconds:.1f}s"
        + (" (stopped at the time limit)" if summary.stopped_early else ""),
        highlight=False,
    )
    for arm, tally in report["arms"].items():
        Console().print(
            f"  arm {arm}: {tally['lists']} lists, {tally['shown']} shown, "
            f"{tally['relevant']} held-out, {tally['plays']} plays, {tally['skips']} skips",
            highlight=False,
        )
