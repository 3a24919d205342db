"""``musicrec data``: get, synthesize and prepare listening data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from musicrec.cli.common import console, friendly_errors

app = typer.Typer()
data_app = typer.Typer(help="Get, synthesize and prepare listening data.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("prepare")
@friendly_errors
def data_prepare(
    source: Annotated[str, typer.Option(help="lastfm360k | lastfm1k | hetrec2k | csv")],
    input: Annotated[Path, typer.Option("--input", help="Raw file or directory.")],
    out: Annotated[Path, typer.Option(help="Dataset directory to write.")],
    min_user_items: Annotated[int, typer.Option(help="k-core: artists per user.")] = 5,
    min_item_users: Annotated[int, typer.Option(help="k-core: listeners per artist.")] = 3,
    test_fraction: Annotated[float, typer.Option(help="Share of each user's rows held out.")] = 0.2,
    split: Annotated[
        str, typer.Option(help="auto | random | temporal: the order rows are split in.")
    ] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the random split.")] = 42,
    protocol: Annotated[
        str,
        typer.Option(
            help="holdout (floor(n * test-fraction) per user to test) | ratio (RecBole's "
            "per-user split by --ratios, with a validation part) | stratified (per-user "
            "round((1 - test-fraction) * n) to train)."
        ),
    ] = "holdout",
    ratios: Annotated[
        str, typer.Option(help="ratio protocol: train,valid,test shares (or train,test).")
    ] = "0.8,0.1,0.1",
    binary: Annotated[bool, typer.Option(help="Count each listener-artist pair once.")] = False,
    no_filter: Annotated[
        bool,
        typer.Option(
            "--no-filter", help="No k-core filter; artists with distinct source ids stay apart."
        ),
    ] = False,
) -> None:
    """Validate, deduplicate, k-core filter and split raw data into a dataset directory."""
    from musicrec.data.prepare import PrepareConfig, parse_ratios, prepare

    config = PrepareConfig(
        min_user_items,
        min_item_users,
        test_fraction,
        split,  # type: ignore[arg-type]
        seed,
        protocol=protocol,  # type: ignore[arg-type]
        ratios=parse_ratios(ratios),
        binary=binary,
        no_filter=no_filter,
    )
    with console.status(f"preparing {input} ({source})"):
        summary = prepare(source, input, out, config)
    stats = summary.stats
    table = Table(title=f"dataset {out} · fingerprint {summary.fingerprint}", show_header=False)
    table.add_row("rows read", f"{stats['rows_read']:,}")
    for reason, count in stats["rejected"].items():
        table.add_row(f"rejected: {reason}", f"{count:,}")
    for reason, count in stats["dropped"].items():
        table.add_row(f"dropped: {reason}", f"{count:,}")
    for name, count in stats["kept"].items():
        table.add_row(f"kept: {name}", f"{count:,}")
    table.add_row("split", f"{stats['protocol']['description']}, {stats['split']} order")
    table.add_row("seconds", f"{summary.seconds:.1f}")
    Console().print(table)


@data_app.command("synth")
@friendly_errors
def data_synth(
    out: Annotated[Path, typer.Option(help="Directory for the Last.fm-360K-format files.")],
    users: Annotated[int, typer.Option(help="Number of listeners.")] = 3000,
    artists: Annotated[int, typer.Option(help="Number of artists.")] = 2500,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same files).")] = 0,
) -> None:
    """Write synthetic Last.fm-360K-format data with planted genres, tags and real names."""
    from musicrec.data.synth import synthesize

    result = synthesize(out, n_users=users, n_artists=artists, seed=seed, show_progress=True)
    Console().print(f"wrote {result}")


@data_app.command("fetch")
@friendly_errors
def data_fetch(
    name: Annotated[str, typer.Argument(help="lastfm-360k | lastfm-1k | hetrec-2k")],
    cache_dir: Annotated[Path, typer.Option(help="Download cache.")] = Path("data/raw"),
    base_url: Annotated[str | None, typer.Option(help="Mirror to download from.")] = None,
) -> None:
    """Download a public Last.fm dataset archive (resumable, checksummed) and unpack it."""
    from musicrec.data.fetch import fetch

    path = fetch(name, cache_dir, base_url=base_url, show_progress=True)
    typer.echo(str(path))  # plain, unwrapped: scripts read this line
