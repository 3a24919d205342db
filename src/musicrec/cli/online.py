"""``musicrec online start|list|stop|report`` and ``musicrec simulate``.

Logic lives in :mod:`musicrec.online`; experiments are stored in the event store, so every
API worker and replica that shares it sees the same ones.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
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
    plot: Annotated[
        Path | None, typer.Option(help="Also draw per-arm rates with intervals to this PNG.")
    ] = None,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples over listeners.")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    window_hours: Annotated[
        float,
        typer.Option(
            help="Attribution window: an event without a request id counts for the "
            "latest impression of its artist this many hours before it."
        ),
    ] = 24.0,
    events_url_: StoreOption = None,
) -> None:
    """Per-arm rates with 95 % intervals, differences with p-values, the winner, guardrail stops."""
    from musicrec.online.report import experiment_report

    if k is not None and k < 1:
        raise ValueError(f"--k must be at least 1, not {k}")
    if resamples < 0:
        raise ValueError(f"--resamples must be 0 or more, not {resamples}")
    if not window_hours > 0:
        raise ValueError(f"--window-hours must be positive, not {window_hours:g}")
    if plot is not None and not plot.parent.is_dir():
        raise FileNotFoundError(f"--plot: folder {plot.parent} does not exist")
    experiments = _experiments(events_url_)
    report = experiment_report(
        experiments.store, experiments.get(name), k, resamples, seed, window_hours * 3600.0
    )
    if plot is not None:
        from musicrec.online.plots import report_plot

        report_plot(report, plot)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    _print_report(report, plot)


def _interval(found: dict[str, Any]) -> str:
    if found.get("value") is None:
        return "-"
    if found.get("low") is None:
        return f"{found['value']:.4f}"
    return f"{found['value']:.4f} [{found['low']:.4f}, {found['high']:.4f}]"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _print_report(report: dict[str, Any], plot: Path | None) -> None:
    out = Console()
    exp = report["experiment"]
    out.print(f"{exp['name']} ({exp['mode']}, {exp['status']})", highlight=False)
    if exp.get("stop_reason"):
        out.print(f"stopped: {exp['stop_reason']}", highlight=False)
    if "interleave" in report:
        found = report["interleave"]
        wins = ", ".join(f"{arm} {n:,}" for arm, n in found["wins"].items())
        out.print(
            f"{found['listeners']:,} listeners; wins: {wins}, ties {found['ties']:,}; "
            f"preference toward {found['preference']['toward']} "
            f"{_interval(found['preference'])}; binomial p = {_p(found['p_value'])}",
            highlight=False,
        )
    else:
        table = Table(title="per arm (95 % intervals, bootstrap over listeners)")
        for column in ("arm", "listeners", "impressions", "listen-through", "skips/imp",
                       "bans/imp", "stopped"):  # fmt: skip
            table.add_column(column, justify="left" if column in ("arm", "stopped") else "right")
        for arm, values in report["arms"].items():
            table.add_row(
                arm, f"{values['listeners']:,}", f"{values['impressions']:,}",
                _interval(values["listen_through"]), _interval(values["skip_rate"]),
                _interval(values["ban_rate"]), values.get("stop_reason") or "",
            )  # fmt: skip
        out.print(table)
        for pair in report["differences"]:
            a, b = pair["arms"]
            found = pair["listen_through"]
            difference = found["difference"] or {}
            out.print(
                f"listen-through {b} - {a}: {_interval(difference)}, "
                f"p = {_p(found['p_value'])} (adjusted {_p(found['p_adjusted'])})",
                highlight=False,
            )
        srm = report["srm"]
        verdict = {True: "ok", False: "MISMATCH: the split or logging is broken"}
        out.print(
            f"sample ratio: listeners {srm['listeners']} for shares {srm['shares']}, "
            f"p = {_p(srm['p_value'])} ({verdict.get(report['srm_ok'], 'no data')})",
            highlight=False,
        )
    out.print(f"winner: {report['winner'] or 'none (p >= 0.05)'}", highlight=False)
    if plot is not None:
        out.print(f"plot: {plot}", highlight=False)


@online_app.command("replay")
@friendly_errors
def online_replay(
    name: Annotated[str, typer.Argument(help="Experiment whose arms explored (--temperature).")],
    model: Annotated[str, typer.Option(help="Target model: an artifact path or models:/ URI.")],
    k: Annotated[int | None, typer.Option(help="Replay positions below k.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples over listeners.")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    min_support: Annotated[
        float | None,
        typer.Option(help="Flag the estimate below this support (default: measured, 0-1)."),
    ] = None,
    events_url_: StoreOption = None,
) -> None:
    """Estimate MODEL's listen-through from the experiment's logged propensities (SNIPS).

    Flags the estimate (a warning line on stderr; "trusted": false and "warning" in the JSON)
    when too little of MODEL's lists lay inside what the logging arms could show."""
    from musicrec.online.replay import MIN_SUPPORT, model_ranker, replay

    if k is not None and k < 1:
        raise ValueError(f"--k must be at least 1, not {k}")
    threshold = MIN_SUPPORT if min_support is None else min_support
    if not 0 <= threshold <= 1:
        raise ValueError(f"--min-support must be between 0 and 1, not {min_support}")
    experiments = _experiments(events_url_)
    experiment = experiments.get(name)
    estimate = replay(
        experiments.store, experiment, model_ranker(model), k, resamples, seed,
        min_support=threshold,
    )  # fmt: skip
    result = {"experiment": name, "model": model, "k": k, **estimate.to_dict()}
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        _replay_line(model, name, result, estimate)
    if estimate.warning:
        Console(stderr=True).print(f"warning: {estimate.warning}", highlight=False, soft_wrap=True)


def _replay_line(model: str, name: str, result: dict[str, Any], estimate: Any) -> None:
    Console().print(
        f"{model} on {name}: listen-through {_interval(result)} (SNIPS; logged policy "
        f"{estimate.logged_rate:.4f}); {estimate.matched:,} of {estimate.impressions:,} logged "
        f"impressions match, effective size {estimate.effective_size:,.0f}; "
        f"{estimate.listeners_unknown:,} of {estimate.listeners:,} listeners unknown to the model; "
        f"support {_share(estimate.support)} of its listed artists",
        highlight=False,
        soft_wrap=True,
    )


def _share(value: float) -> str:
    return f"{value:.0%}" if value == value else "unknown"


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
    hold_events: Annotated[
        bool,
        typer.Option(help="Ask for all of a listener's lists before posting its events."),
    ] = False,
    activity_sd: Annotated[
        float,
        typer.Option(
            help="Spread (SD of the log-odds) of listeners' propensity to play; "
            "1.52 matches HetRec-2K's spread of plays per listener, 0 makes all alike."
        ),
    ] = 1.52,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Simulated listeners: ask for lists, play held-out artists, skip the rest, post events."""
    from rich.progress import Progress

    from musicrec.online.simulate import ListenerModel, simulate_url

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
            hold_events=hold_events,
            model=ListenerModel(activity_sd=activity_sd),
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
