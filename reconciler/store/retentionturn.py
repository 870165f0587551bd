"""The pruners' turn: one transaction at a time holds the ``history_retention`` row, with
the delete triggers told to stand aside (docs/design/retention.md)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from reconciler.store.database import Database


def aware(value: Any) -> dt.datetime | None:
    """A stored time as an aware UTC datetime (SQLite gives text or naive values)."""
    if value is None:
        return None
    moment: dt.datetime = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


@contextmanager
def turn(database: Database) -> Iterator[Session | None]:
    """A transaction holding the pruners' lease (None: another pruner holds it), with the
    delete triggers told to stand aside for this transaction's deletes."""
    with database.session() as session:
        if database.dialect == "postgresql":
            held = session.execute(
                text("SELECT id FROM history_retention WHERE id = 1 FOR UPDATE SKIP LOCKED")
            ).first()
            if held is None:
                yield None
                return
            session.execute(text("SELECT set_config('reconciler.pruning', 'on', true)"))
            yield session
        else:
            # The first statement writes: SQLite takes its write lock here, not mid-way.
            session.execute(text("UPDATE history_retention SET pruning = 1 WHERE id = 1"))
            yield session
            session.execute(text("UPDATE history_retention SET pruning = 0 WHERE id = 1"))
