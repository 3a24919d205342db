"""Event stores for the online tests: a SQLite file, and PostgreSQL when one is given.

Set ``MUSICREC_TEST_POSTGRES_URL`` (e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/test``,
a database the tests may empty) to run the same tests on PostgreSQL as well.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from musicrec.events import impressions, outcomes
from musicrec.events import tables as event_tables
from musicrec.events.store import EventStore
from musicrec.online import experiments

POSTGRES_URL = os.environ.get("MUSICREC_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)]


def empty_store(backend: str, tmp_path: Path) -> Iterator[EventStore]:
    """A fresh store on ``backend`` (skipped for PostgreSQL without a URL)."""
    if backend == "sqlite":
        yield EventStore(f"sqlite:///{tmp_path / 'events.db'}")
        return
    if not POSTGRES_URL:
        pytest.skip("set MUSICREC_TEST_POSTGRES_URL to run on PostgreSQL")
    fresh = EventStore(POSTGRES_URL)
    with fresh.engine.begin() as conn:  # the view, and an older version's table of that name
        if impressions.VIEW in sa.inspect(conn).get_view_names():
            conn.execute(sa.text(f"DROP VIEW {impressions.VIEW}"))
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {impressions.VIEW}"))
    tables = (experiments.metadata, outcomes.metadata, impressions.metadata, event_tables.metadata)
    for metadata in tables:
        metadata.drop_all(fresh.engine)
    try:
        yield fresh
    finally:
        fresh.close()
