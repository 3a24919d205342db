"""``musicrec keys create|list|revoke`` (API keys) and ``musicrec users forget`` (deletion).

Logic lives in :mod:`musicrec.access.keys` and :mod:`musicrec.events.forget`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from musicrec.cli.common import console, friendly_errors
from musicrec.errors import ConfigError

app = typer.Typer()  # this module's commands; musicrec.cli merges them

KEYS_FILE_ENV = "MUSICREC_API_KEYS_FILE"  # musicrec.access.keys.KEYS_FILE_ENV
keys_app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)
users_app = typer.Typer(help="Listeners: forget one everywhere.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(users_app, name="users")

KeysFileOption = Annotated[
    Path | None,
    typer.Option("--keys-file", help=f"API keys file (default: ${KEYS_FILE_ENV})."),
]


def _keys_file(path: Path | None) -> Path:
    chosen = path or (Path(os.environ[KEYS_FILE_ENV]) if os.environ.get(KEYS_FILE_ENV) else None)
    if chosen is None:
        raise ConfigError(f"no keys file: pass --keys-file FILE or set {KEYS_FILE_ENV}")
    return chosen


@keys_app.command("create")
@friendly_errors
def keys_create(
    name: Annotated[str, typer.Option(help="Key name, shown in listings and metrics.")],
    scope: Annotated[str, typer.Option(help="Comma-separated: read, events, admin, metrics.")],
    rate: Annotated[float | None, typer.Option(help="Quota: requests per second.")] = None,
    burst: Annotated[int | None, typer.Option(help="Quota: requests at once.")] = None,
    keys_file: KeysFileOption = None,
) -> None:
    """Add a key; the key itself is printed once, as the last line (it is stored hashed)."""
    from musicrec.access.keys import create_key

    path = _keys_file(keys_file)
    record, secret = create_key(path, name, scope, rate, burst)
    limit = f", {record.rate:g} requests/s, burst {record.burst}" if record.rate else ""
    console.print(
        f"created key {record.name!r} (id {record.id}, scopes {','.join(record.scopes)}{limit}) "
        f"in {path}; store it now, it is not shown again:",
        highlight=False,
        soft_wrap=True,
    )
    sys.stderr.flush()
    sys.stdout.write(secret + "\n")


@keys_app.command("list")
@friendly_errors
def keys_list(
    keys_file: KeysFileOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every key of the file (never the keys themselves), revoked ones marked."""
    from musicrec.access.keys import read_keys

    keys = read_keys(_keys_file(keys_file))
    if as_json:
        rows = [
            {
                "name": k.name,
                "id": k.id,
                "scopes": list(k.scopes),
                "rate": k.rate,
                "burst": k.burst,
                "created_at": k.created_at,
                "revoked_at": k.revoked_at,
            }
            for k in keys
        ]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title=f"{len(keys)} keys")
    for column in ("name", "id", "scopes", "rate/s", "burst", "created", "state"):
        table.add_column(column)
    for k in keys:
        table.add_row(
            k.name,
            k.id,
            ",".join(k.scopes),
            f"{k.rate:g}" if k.rate else "-",
            str(k.burst) if k.burst else "-",
            time.strftime("%Y-%m-%d %H:%M", time.gmtime(k.created_at)),
            "active" if k.active else "revoked",
        )
    Console().print(table)


@keys_app.command("revoke")
@friendly_errors
def keys_revoke(
    name: Annotated[str, typer.Argument(help="Name or id of the key.")],
    keys_file: KeysFileOption = None,
) -> None:
    """Revoke a key: every API worker refuses it within its watch interval."""
    from musicrec.access.keys import revoke_key

    record = revoke_key(_keys_file(keys_file), name)
    Console().print(f"revoked key {record.name!r} (id {record.id})", highlight=False)


@users_app.command("forget")
@friendly_errors
def users_forget(
    user_id: Annotated[str, typer.Argument(help="The listener's id.")],
    events_url: Annotated[
        str | None,
        typer.Option(
            "--events-url", help="Event store URL (default: $MUSICREC_EVENTS_URL or ./events.db)."
        ),
    ] = None,
) -> None:
    """Forget a listener: delete their events, stop serving them, keep them out of retraining.

    API workers sharing this event store stop serving them within their watch interval.
    """
    from musicrec.events.forget import forget_listener
    from musicrec.events.store import DEFAULT_URL, EventStore

    if not user_id.strip():
        raise ConfigError("the listener id must not be blank")
    store = EventStore(events_url or os.environ.get("MUSICREC_EVENTS_URL") or DEFAULT_URL)
    try:
        done = forget_listener(store, user_id, actor="cli")
    finally:
        store.close()
    rows = ", ".join(f"{n:,} {table}" for table, n in done.rows.items())
    again = " (forgotten before)" if done.already else ""
    Console().print(f"forgot the listener{again}: deleted {rows}; tombstone kept", highlight=False)
