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
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from reconciler.store.deadlines import COMMAND, Deadlines

DEFAULT_DATABASE_URL = "sqlite:///.reconciler/state.db"


# PostgreSQL URLs written for other drivers, read as psycopg 3 (docs/task-files.md).
_PSYCOPG_ALIASES = ("postgresql", "postgres", "postgresql+psycopg2", "postgres+psycopg2")


def normalise_url(url: str) -> str:
    """``postgresql://`` (and ``postgresql+psycopg2://``, common in existing apps) means
    the psycopg 3 driver we install; another PostgreSQL driver is refused, naming the form
    to use (ArgumentError, which ``Database.open`` reports as a bad URL)."""
    parsed = make_url(url)
    if parsed.drivername in _PSYCOPG_ALIASES:
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.get_backend_name() == "postgresql" and parsed.drivername != "postgresql+psycopg":
        raise ArgumentError(
            f"the driver {parsed.drivername!r} is not supported; write postgresql://... "
            f"(the psycopg 3 driver is used)"
        )
    return parsed.render_as_string(hide_password=False)


def make_engine(
    url: str, *, create: bool = True, deadlines: Deadlines = COMMAND, **kwargs: Any
) -> Engine:
    """An engine for ``url`` whose sessions keep ``deadlines`` (docs/deadlines.md).

    ``create=False``: an SQLite file that does not exist yet is not created (nor its
    directory); an empty in-memory database stands in for it."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            if not create and not Path(database).exists():
                url = "sqlite://"
            else:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {}).setdefault("timeout", deadlines.busy)
        engine = create_engine(url, **kwargs)

        def pragmas(dbapi_connection: Any, _record: Any) -> None:
            _sqlite_pragmas(dbapi_connection, deadlines.busy)

        event.listen(engine, "connect", pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "psycopg":
        _keep_deadlines(engine, deadlines, pinged=bool(kwargs["pool_pre_ping"]))
    return engine


def _keep_deadlines(engine: Engine, deadlines: Deadlines, *, pinged: bool) -> None:
    """Every connection of ``engine`` gets the role's timeouts and a watched socket.

    ``pinged``: the pool pings a connection before reusing it; the ping is given the
    connect timeout rather than the read deadline (it is as light as a connect, and a
    ping that gets no answer is followed by a connect)."""
    from reconciler.store import stall  # psycopg: imported only for PostgreSQL

    def connect(_dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        return stall.connect(deadlines, *cargs, **stall.parameters(deadlines, cparams))

    event.listen(engine, "do_connect", connect)
    if pinged:

        def checkin(dbapi_connection: Any, _record: Any) -> None:
            stall.ping_within(dbapi_connection, deadlines.connect)

        def checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
            stall.ping_within(dbapi_connection, None)  # pinged (or fresh): in use now

        event.listen(engine, "checkin", checkin)
        event.listen(engine, "checkout", checkout)


def _sqlite_pragmas(dbapi_connection: Any, busy: float) -> None:
    cursor = dbapi_connection.cursor()
    _write_ahead_log(cursor, busy)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _write_ahead_log(cursor: sqlite3.Cursor, busy: float) -> None:
    """WAL mode, kept in the file once set. Switching a new file to it needs the file to
    itself, and while another connection writes, SQLite answers "database is locked" at
    once instead of waiting its busy timeout: two processes starting on a fresh database
    (``reconcile watch`` and ``serve``) could fail that way. Retried until the timeout."""
    deadline = time.monotonic() + busy
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
