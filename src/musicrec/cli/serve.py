"""``musicrec serve`` (the HTTP API under uvicorn) and ``musicrec traffic`` (load generator)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from musicrec.cli.common import console, friendly_errors
from musicrec.errors import ConfigError, MusicrecError

app = typer.Typer()  # this module's commands; musicrec.cli merges them

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextlib.contextmanager
def multiprocess_metrics_dir(workers: int) -> Iterator[Path | None]:
    """A clean Prometheus multiprocess directory when several workers will share metrics.

    An existing ``PROMETHEUS_MULTIPROC_DIR`` is emptied of stale ``*.db`` files; otherwise a
    temporary one is created for ``workers > 1`` and removed afterwards.
    """
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
        yield path
        return
    if workers <= 1:
        yield None
        return
    path = Path(tempfile.mkdtemp(prefix="musicrec-prometheus-"))
    os.environ[MULTIPROC_ENV] = str(path)
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


WRITER_ENV = "MUSICREC_EVENTS_WRITER"


@contextlib.contextmanager
def host_event_writer(workers: int) -> Iterator[str | None]:
    """With several workers and an event store: one writer for all of them (group commit).

    It runs in this process, which only supervises the workers; they find its socket in
    ``MUSICREC_EVENTS_WRITER`` (see :mod:`musicrec.events.writer`). It also commits the
    impressions they hand it (:mod:`musicrec.events.impression_writer`). One worker needs none.
    """
    from musicrec.api.settings import Settings
    from musicrec.events.impression_writer import attach_to_host
    from musicrec.events.store import EventStore
    from musicrec.events.writer import WriterService

    settings = Settings()  # type: ignore[call-arg]
    url = settings.events_url
    if workers <= 1 or not url:
        yield None
        return
    try:
        store = EventStore(url)
        service = WriterService(store)
    except (MusicrecError, ImportError) as exc:  # the workers report it and serve without
        console.print(f"[yellow]warning:[/yellow] no event writer: {exc}", soft_wrap=True)
        yield None
        return
    if settings.impressions:
        try:
            attach_to_host(service, store, settings.impressions_flush_s)
        except MusicrecError as exc:  # events are still stored; impressions are not
            console.print(f"[yellow]warning:[/yellow] impressions not logged: {exc}")
    os.environ[WRITER_ENV] = service.address
    try:
        yield service.address
    finally:
        os.environ.pop(WRITER_ENV, None)
        service.stop()


BLAS_THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """One BLAS thread per worker while serving (unless the environment says otherwise).

    A request's matrix products are tiny; a BLAS thread pool per worker only adds hand-offs
    and, with several workers, more runnable threads than cores. Spawned workers inherit the
    variables; this process, which already loaded numpy, is limited directly. Both are
    restored on exit.
    """
    from threadpoolctl import threadpool_limits

    added = [name for name in BLAS_THREAD_ENV if name not in os.environ]
    for name in added:
        os.environ[name] = "1"
    try:
        limit = int(os.environ["OPENBLAS_NUM_THREADS"])
    except ValueError:
        limit = 1
    try:
        with threadpool_limits(limits=max(1, limit), user_api="blas"):
            yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def event_loop() -> str:
    """uvloop when it is installed (it is on Linux and macOS), else asyncio."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def _prepare_index(model: str, index: str) -> None:
    """Build the model's index once, before workers start (each would build its own)."""
    from musicrec import layout
    from musicrec.fsutil import read_json
    from musicrec.models.artifact import ModelArtifact, manifest_config
    from musicrec.models.kinds import model_class
    from musicrec.tracking.registry import resolve_model_path

    if index != "hnsw":
        return
    try:
        path = resolve_model_path(model)
    except MusicrecError as exc:
        console.print(
            f"[yellow]warning:[/yellow] {exc}; starting without a model (/ready: 503)",
            soft_wrap=True,
        )
        return
    if not (path / layout.MANIFEST).exists():
        # The app starts degraded and reports it (/health, /ready, model_loaded) until a
        # reload succeeds; an orchestrator keeps traffic away instead of crash-looping.
        console.print(
            f"[yellow]warning:[/yellow] {path}: not a model artifact directory; "
            "starting without a model (/ready answers 503 until POST /admin/reload)",
            soft_wrap=True,
        )
        return
    try:
        kind = model_class(manifest_config(read_json(path / layout.MANIFEST)).kind)
        if all((path / name).exists() for name in kind.index_files()):
            return
        loaded = ModelArtifact.load(path).model
    except MusicrecError as exc:  # the workers report it the same way
        console.print(f"[yellow]warning:[/yellow] {exc}", soft_wrap=True)
        return
    try:
        with console.status(f"building the item index in {path} (once)"):
            loaded.build_index(path)
    except OSError as exc:
        console.print(f"[yellow]warning:[/yellow] cannot save the index in {path} ({exc})")


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_access(host: str, keys_file: Path | None, allow_anonymous: bool) -> None:
    """Refuse an open API on a reachable address; check a given keys file before starting."""
    if keys_file is not None:
        from musicrec.access.keys import read_keys

        read_keys(keys_file)  # a missing or broken file stops here, with its reason
        return
    if not is_loopback(host) and not allow_anonymous:
        raise ConfigError(
            f"refusing to serve {host} without API keys: create one with `musicrec keys create "
            "--name NAME --scope read --keys-file keys.json` and pass --keys-file keys.json "
            "(or set MUSICREC_API_KEYS_FILE), or pass --allow-anonymous to serve it open"
        )


@app.command()
@friendly_errors
def serve(
    model: Annotated[
        str | None,
        typer.Option(help="Artifact dir or models:/name@alias (default: $MUSICREC_MODEL)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
    index: Annotated[str, typer.Option(help="hnsw (approximate) | exact.")] = "hnsw",
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    access_log: Annotated[
        bool, typer.Option(help="Log every request (costs about a tenth of a request's time).")
    ] = False,
    keys_file: Annotated[
        Path | None,
        typer.Option(
            help="API keys file (musicrec keys create); without it the API is open.",
            envvar="MUSICREC_API_KEYS_FILE",
        ),
    ] = None,
    allow_anonymous: Annotated[
        bool,
        typer.Option(
            help="Serve without keys on a non-loopback address.",
            envvar="MUSICREC_ALLOW_ANONYMOUS",
        ),
    ] = False,
) -> None:
    """Serve recommendations over HTTP (FastAPI + uvicorn)."""
    import uvicorn
    from uvicorn.config import LOG_LEVELS

    from musicrec.api.server import HTTP_PROTOCOL
    from musicrec.models.ann import INDEX_KINDS

    model = model or os.environ.get("MUSICREC_MODEL")
    if not model:
        raise ConfigError("no model: pass --model PATH_OR_URI or set MUSICREC_MODEL")
    if index not in INDEX_KINDS:
        raise ConfigError(f"--index must be one of {', '.join(INDEX_KINDS)}")
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    if not 0 < port < 65536:
        raise ConfigError("--port must be in 1..65535")
    if log_level.lower() not in LOG_LEVELS:
        raise ConfigError(f"--log-level must be one of {', '.join(LOG_LEVELS)}")
    check_access(host, keys_file, allow_anonymous)
    _prepare_index(model, index)
    # Workers are fresh processes: settings travel in the environment.
    os.environ["MUSICREC_MODEL"] = model
    os.environ["MUSICREC_INDEX"] = index
    if keys_file is not None:
        os.environ["MUSICREC_API_KEYS_FILE"] = str(keys_file)
    with multiprocess_metrics_dir(workers), single_threaded_blas(), host_event_writer(workers):
        uvicorn.run(
            "musicrec.api.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            access_log=access_log,
            http=HTTP_PROTOCOL,
            loop=event_loop(),
        )


@app.command()
@friendly_errors
def traffic(
    url: Annotated[str, typer.Option(help="API base URL.")] = "http://127.0.0.1:8000",
    rate: Annotated[float, typer.Option(help="Requests per second.")] = 20.0,
    duration: Annotated[float, typer.Option(help="Seconds to run at most.")] = 30.0,
    max_requests: Annotated[int | None, typer.Option(help="Requests to send at most.")] = None,
    concurrency: Annotated[int, typer.Option(help="Sender threads.")] = 2,
    allow_remote: Annotated[
        bool, typer.Option(help="Allow a non-loopback host (never by default).")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the request mix.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    api_key: Annotated[
        str | None,
        typer.Option(help="API key with the read scope.", envvar="MUSICREC_API_KEY"),
    ] = None,
) -> None:
    """Send a realistic, bounded mix of API requests and report latency and errors."""
    from musicrec.access.keys import client_key
    from musicrec.ops.traffic import run_traffic

    summary = run_traffic(
        url,
        rate=rate,
        duration=duration,
        max_requests=max_requests,
        allow_remote=allow_remote,
        concurrency=concurrency,
        seed=seed,
        api_key=client_key(api_key),
    )
    payload = summary.to_dict()
    if as_json:
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    table = Table(
        title=f"{payload['total']} requests in {payload['seconds']}s "
        f"({payload['rate']}/s) against {payload['url']}"
    )
    for column in (
        "endpoint",
        "count",
        "2xx",
        "4xx",
        "5xx",
        "failed",
        "p50 ms",
        "p95 ms",
        "p99 ms",
    ):
        table.add_column(column, justify="left" if column == "endpoint" else "right")
    for name, s in payload["endpoints"].items():
        table.add_row(
            name,
            str(s["count"]),
            str(s["ok"]),
            str(s["client_errors"]),
            str(s["server_errors"]),
            str(s["failures"]),
            f"{s['p50_ms']:.1f}",
            f"{s['p95_ms']:.1f}",
            f"{s['p99_ms']:.1f}",
        )
    Console().print(table)
    if summary.server_errors:
        raise typer.Exit(1)
