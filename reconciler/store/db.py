"""Engines and sessions: URL normalisation, SQLite pragmas, one place to open the database.

Everything that talks to the database gets its engine from ``make_engine``.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

DEFAULT_DATABASE_URL = "sqlite:///.reconciler/state.db"
SQLITE_BUSY_TIMEOUT = 30.0  # seconds a connection waits for another's lock on the file


def normalise_url(url: str) -> str:
    """``postgresql://`` means the psycopg (3) driver we install."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, *, create: bool = True, **kwargs: Any) -> Engine:
    """An engine for ``url``. ``create=False``: an SQLite file that does not exist yet is
    not created (nor its directory); an empty in-memory database stands in for it."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            if not create and not Path(database).exists():
                url = "sqlite://"
            else:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {}).setdefault("timeout", SQLITE_BUSY_TIMEOUT)
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    _write_ahead_log(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _write_ahead_log(cursor: sqlite3.Cursor) -> None:
    """WAL mode, kept in the file once set. Switching a new file to it needs the file to
    itself, and while another connection writes, SQLite answers "database is locked" at
    once instead of waiting its busy timeout: two processes starting on a fresh database
    (``reconcile watch`` and ``serve``) could fail that way. Retried until the timeout."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def database_url_from_env() -> str:
    return os.environ.get("RECONCILER_DATABASE_URL", DEFAULT_DATABASE_URL)
