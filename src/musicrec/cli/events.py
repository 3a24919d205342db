"""``musicrec events import|replay|stats`` and ``musicrec retrain`` (the live loop's commands).

Logic lives in :mod:`musicrec.events` and :mod:`musicrec.loop.retrain`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from musicrec.cli.common import StoreOption, console, friendly_errors
from musicrec.cli.common import events_url as _events_url

app = typer.Typer()  # this module's commands; musicrec.cli merges them

events_app = typer.Typer(help="Listening events: import, replay, counts.", no_args_is_help=True)
app.add_typer(events_app, name="events")


@events_app.command("import")
@friendly_errors
def events_import(
    file: Annotated[Path, typer.Argument(help="TSV, CSV or Parquet with user_id, artist, ...")],
    events_url: StoreOption = None,
) -> None:
    """Validate a file of events like POST /events does and store it (all or nothing)."""
    from musicrec.events.imports import import_events
    from musicrec.events.store import EventStore

    summary = import_events(EventStore(_events_url(events_url)), file)
    ids = f"ids {summary.first_id}..{summary.last_id}" if summary.rows else "no new ids"
    skipped = f", {summary.duplicates:,} already stored" if summary.duplicates else ""
    Console().print(
        f"imported {summary.rows:,} events from {summary.path} ({ids}{skipped}) "
        f"in {summary.seconds:.2f}s",
        highlight=False,
    )


@events_app.command("replay")
@friendly_errors
def events_replay(
    file: Annotated[Path, typer.Argument(help="Last.fm-1K-format TSV (or its directory).")],
    url: Annotated[str, typer.Option(help="API base URL to POST to.")] = "http://127.0.0.1:8000",
    to_store: Annotated[
        bool, typer.Option("--to-store", help="Write into --events-url instead of the API.")
    ] = False,
    events_url: StoreOption = None,
    rate: Annotated[float, typer.Option(help="Events per second.")] = 200.0,
    batch_size: Annotated[int, typer.Option(help="Events per POST.")] = 50,
    max_events: Annotated[int, typer.Option(help="Events to send at most.")] = 10_000,
    duration: Annotated[float, typer.Option(help="Seconds to run at most.")] = 60.0,
    retime: Annotated[bool, typer.Option(help="Stamp events with the send time.")] = False,
    allow_remote: Annotated[bool, typer.Option(help="Allow a non-loopback API host.")] = False,
) -> None:
    """Feed timestamped plays from a Last.fm-1K-style log, in time order, bounded."""
    from musicrec.events.replay import http_sink, read_lastfm1k, replay, store_sink
    from musicrec.events.store import EventStore
    from musicrec.ops.traffic import check_target

    frame = read_lastfm1k(file, max_rows=max_events)
    close = None
    if to_store:
        send = store_sink(EventStore(_events_url(events_url)))
    else:
        send, close = http_sink(check_target(url, allow_remote))
    try:
        summary = replay(
            frame,
            send,
            rate=rate,
            batch_size=batch_size,
            max_events=max_events,
            duration=duration,
            retime=retime,
        )
    finally:
        if close:
            close()
    Console().print(
        f"replayed {summary.sent:,} events in {summary.batches} batches "
        f"({summary.rate:.0f}/s, {summary.rejected_batches} refused)",
        highlight=False,
    )
    for error in summary.errors:
        console.print(f"[yellow]refused:[/yellow] {error}", highlight=False, soft_wrap=True)
    if summary.rejected_batches:
        raise typer.Exit(1)


@events_app.command("stats")
@friendly_errors
def events_stats(events_url: StoreOption = None) -> None:
    """How many events the store holds, by kind."""
    from musicrec.events.store import EventStore

    store = EventStore(_events_url(events_url))
    sys.stdout.write(json.dumps(store.stats() | {"store": repr(store)}, indent=2) + "\n")


@events_app.command("demo")
@friendly_errors
def events_demo(
    url: Annotated[str, typer.Option(help="API base URL.")] = "http://127.0.0.1:8000",
    user: Annotated[
        str | None, typer.Option(help="Listener (default: one the model knows).")
    ] = None,
    k: Annotated[int, typer.Option(help="Recommendations to show.")] = 10,
) -> None:
    """Post a few metal plays and a ban for a listener; print recommendations before/after."""
    import httpx

    from musicrec.events.demo import run_demo
    from musicrec.ops.traffic import check_target

    try:
        result = run_demo(check_target(url), user, k)
    except httpx.HTTPError as exc:
        raise typer.BadParameter(f"{url}: {exc}") from None
    posted = ", ".join(
        f"{e['artist']} ({e.get('kind', 'play')}{' x' + str(e['plays']) if 'plays' in e else ''})"
        for e in result.posted
    )
    out = Console()
    out.print(f"listener {result.user_id}: posted {posted}", highlight=False, soft_wrap=True)
    table = Table(title="recommendations before and after the events")
    for column in ("#", "before", "after"):
        table.add_column(column)

    def cell(recs: list[dict[str, Any]], i: int) -> str:
        if i >= len(recs):
            return ""
        tags = list(recs[i].get("tags") or [])[:2]
        return str(recs[i]["artist"]) + (f" [dim]({', '.join(tags)})[/dim]" if tags else "")

    for i in range(max(len(result.before), len(result.after))):
        table.add_row(str(i + 1), cell(result.before, i), cell(result.after, i))
    out.print(table)


@app.command()
@friendly_errors
def retrain(
    source: Annotated[str, typer.Option(help="Base data loader: lastfm360k | lastfm1k | ...")],
    input: Annotated[Path, typer.Option("--input", help="Base raw file or directory.")],
    workdir: Annotated[Path, typer.Option(help="Datasets, models and state of the cycles.")] = Path(
        "artifacts/retrain"
    ),
    events_url: StoreOption = None,
    config: Annotated[Path | None, typer.Option(help="YAML with a train: section.")] = None,
    min_user_items: Annotated[int, typer.Option(help="k-core: artists per user.")] = 5,
    min_item_users: Annotated[int, typer.Option(help="k-core: listeners per artist.")] = 3,
    test_fraction: Annotated[float, typer.Option(help="Share of each user's rows held out.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the random split.")] = 42,
    gate: Annotated[
        str, typer.Option(help="non-inferiority (lower bound > -delta) | superiority (> margin).")
    ] = "non-inferiority",
    delta: Annotated[
        float | None, typer.Option(help="Non-inferiority: NDCG@10 loss the lower bound may reach.")
    ] = None,
    margin: Annotated[
        float | None, typer.Option(help="Superiority: NDCG@10 gain the lower bound must exceed.")
    ] = None,
    model_name: Annotated[
        str | None, typer.Option(help="Registered model name (default: musicrec).")
    ] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment.")] = "musicrec",
    force: Annotated[bool, typer.Option(help="Run even if this cycle already ran.")] = False,
    publish: Annotated[
        Path | None,
        typer.Option(help="Also copy a promoted champion here (API workers watch this path)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Base data + stored events -> prepare -> train -> evaluate -> gate -> promote.

    The gate scores candidate and champion on test pairs neither trained on and decides on
    the interval of the NDCG@10 difference (non-inferiority by default), with guardrails.

    Idempotent: a cycle whose inputs, events and parameters already ran returns its result.
    Exit code 0 when the cycle completed (promoted, kept by the gate, or up to date).
    """
    from musicrec.config import TrainConfig
    from musicrec.data.prepare import PrepareConfig
    from musicrec.loop.retrain import RetrainConfig
    from musicrec.loop.retrain import retrain as run_retrain
    from musicrec.pipeline.gate import gate_config

    cfg = RetrainConfig(
        source=source,
        input=input,
        workdir=workdir,
        events_url=_events_url(events_url),
        prepare=PrepareConfig(min_user_items, min_item_users, test_fraction, "auto", seed),
        train=TrainConfig.from_yaml(config) if config else TrainConfig(),
        model_name=model_name,
        experiment=experiment,
        gate=gate_config(gate, delta=delta, margin=margin),
    )
    with console.status("retraining"):
        result = run_retrain(cfg, force=force, publish_to=publish)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
        return
    table = Table(title=f"retrain {result.key}: {result.status}", show_header=False)
    table.add_row("reason", result.reason)
    table.add_row("events (watermark)", f"{result.events:,} (id <= {result.watermark})")
    table.add_row("candidate version", str(result.version))
    table.add_row("champion version", str(result.champion))
    for stage, secs in result.seconds.items():
        table.add_row(f"{stage} seconds", f"{secs:.1f}")
    Console().print(table)
