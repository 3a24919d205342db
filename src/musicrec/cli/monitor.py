"""``musicrec monitor``: a local Prometheus (the OS package) scraping the API on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from musicrec.cli.common import friendly_errors

app = typer.Typer()  # this module's commands; musicrec.cli merges them


@app.command()
@friendly_errors
def monitor(
    api_url: Annotated[str, typer.Option(help="API base URL to scrape.")] = "http://127.0.0.1:8000",
    port: Annotated[int, typer.Option(help="Prometheus port (loopback).")] = 9090,
    workdir: Annotated[Path, typer.Option(help="Config, rules and TSDB.")] = Path(
        "artifacts/prometheus"
    ),
    scrape_interval: Annotated[str, typer.Option(help="e.g. 5s")] = "5s",
) -> None:
    """Start Prometheus with musicrec's scrape config and alert rules; Ctrl-C stops it."""
    from urllib.parse import urlsplit

    from musicrec.errors import ConfigError
    from musicrec.ops.monitoring import (
        prometheus_url,
        start_prometheus,
        stop_prometheus,
        wait_ready,
    )

    parts = urlsplit(api_url)
    try:
        parts.port  # noqa: B018 - raises ValueError when out of range
    except ValueError as exc:
        raise ConfigError(f"--api-url {api_url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"--api-url must be an http(s) URL such as http://127.0.0.1:8000, got {api_url!r}"
        )
    if not 0 < port < 65536:
        raise ConfigError(f"--port must be in 1..65535, got {port}")
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"--workdir {workdir}: exists and is not a directory")
    process = start_prometheus(api_url, workdir, port, scrape_interval=scrape_interval)
    try:
        url = prometheus_url(port)
        wait_ready(url, process=process)
        Console().print(
            f"Prometheus on {url} scraping {api_url} (alerts: {url}/alerts); Ctrl-C to stop"
        )
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_prometheus(process)
