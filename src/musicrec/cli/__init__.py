"""The ``musicrec`` command line: one module per group of commands, registered explicitly.

Handlers stay thin: they parse options, call the stage function and print its result.
A :class:`~musicrec.errors.MusicrecError` becomes a one-line message and exit code 1. Command
modules never import this one; each collects its commands on a local ``typer.Typer`` that is
merged into :data:`app` below.
"""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from musicrec.cli import (
    access,
    data,
    evaluation,
    events,
    model,
    monitor,
    online,
    serve,
    spark,
    tracking,
    ui,
)
from musicrec.cli.common import console, friendly_errors

app = typer.Typer(
    name="musicrec",
    help="Music recommendations from Last.fm listening data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
COMMAND_MODULES = (
    data,
    model,
    evaluation,
    tracking,
    events,
    online,
    serve,
    ui,
    monitor,
    access,
    spark,
)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
    """Music recommendations from Last.fm listening data."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:  # MLflow's own stderr handler (set up at its import, which comes later)
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        logging.getLogger("mlflow").setLevel(logging.WARNING)


def _register(modules: tuple[object, ...]) -> None:
    """Merge each module's commands and groups into :data:`app`, in this order."""
    for module in modules:
        local: typer.Typer = module.app  # type: ignore[attr-defined]
        app.registered_commands.extend(local.registered_commands)
        app.registered_groups.extend(local.registered_groups)


_register(COMMAND_MODULES)

__all__ = ["app", "console", "friendly_errors"]
