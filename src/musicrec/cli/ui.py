"""``musicrec ui``: run the listener web UI (Streamlit) against a running API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from musicrec.cli.common import friendly_errors

app = typer.Typer()  # this module's commands; musicrec.cli merges them


def streamlit_command(app_path: Path, host: str, port: int) -> list[str]:
    """The ``streamlit run`` command line for the UI: headless, no telemetry, no file watcher."""
    import sys

    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_path),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--client.toolbarMode",
        "minimal",
        "--server.address",
        host,
        "--server.port",
        str(port),
    ]


@app.command()
@friendly_errors
def ui(
    api_url: Annotated[
        str | None,
        typer.Option(
            help="Base URL of the musicrec API (default: $MUSICREC_API_URL, else "
            "http://127.0.0.1:8000)."
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8501,
) -> None:
    """Run the listener web UI (Streamlit); it talks to the model only through the API."""
    import os
    from urllib.parse import urlparse

    from rich.console import Console

    import musicrec.ui
    from musicrec.ui.client import API_URL_ENV, api_url_from_env

    url = (api_url or api_url_from_env()).rstrip("/")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(
            f"--api-url must be an http(s) URL such as http://127.0.0.1:8000, got {url!r}"
        )
    if not 1 <= port <= 65535:
        raise ValueError(f"--port must be between 1 and 65535, got {port}")
    app_path = Path(musicrec.ui.__file__).resolve().parent / "app.py"
    command = streamlit_command(app_path, host, port)
    Console(stderr=True).print(f"musicrec UI on http://{host}:{port} -> API {url}", highlight=False)
    # Replace this process with Streamlit, so signals (Ctrl-C, SIGTERM) reach it directly.
    os.execve(command[0], command, {**os.environ, API_URL_ENV: url})
