"""What every command module shares: the stderr console and the one-line error wrapper."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from musicrec.errors import MusicrecError

console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_EVENTS_URL = "sqlite:///events.db"  # musicrec.events.store.DEFAULT_URL
StoreOption = Annotated[
    str | None,
    typer.Option(
        "--events-url", help="Event store URL (default: $MUSICREC_EVENTS_URL or ./events.db)."
    ),
]


def events_url(url: str | None) -> str:
    """The event store URL: the option, else ``$MUSICREC_EVENTS_URL``, else ./events.db."""
    return url or os.environ.get("MUSICREC_EVENTS_URL") or DEFAULT_EVENTS_URL


def friendly_errors(func: F) -> F:
    """Turn expected failures into ``error: <message>`` on stderr and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (MusicrecError, FileNotFoundError, ValueError) as exc:
            console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]
