"""Plain-row reads on the driver's connection, the endpoint's hot path: each statement is
compiled once per dialect and run on the driver's cursor, in the calling thread (``run``)
or on the event loop (``run_async``); reads that need the ORM go through ``read``
(docs/design/http-read-path.md, "The reader")."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar, cast

import anyio.to_thread
import psycopg
from sqlalchemy import Connection, Engine, Select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from reconciler.errors import DatabaseUnavailable
from reconciler.store import stall
from reconciler.store.database import Database, unavailable
from reconciler.store.deadlines import SERVE, Deadlines

Row = tuple[Any, ...]
ReadSession: TypeAlias = Session
"""What ``read`` hands its work; callers outside the store name the type through this alias."""
_T = TypeVar("_T")


@dataclass(frozen=True)
class Read(Generic[_T]):
    """One planned query: ``build(postgres)`` is the statement for the dialect (a cached
    one: see ``Reader``), ``values`` its bound values, ``result(rows)`` what the rows
    mean."""

    build: Callable[[bool], Select[Any]]
    values: Mapping[str, Any]
    result: Callable[[list[Row]], _T]


class _Prepared:
    """One statement compiled for one dialect."""

    def __init__(self, stmt: Select[Any], engine: Engine) -> None:
        dialect = engine.dialect
        compiled = stmt.compile(dialect=dialect)
        if compiled.escaped_bind_names:
            raise ValueError(f"bind parameter names that need escaping: {stmt}")
        self.sql = str(compiled)
        self.order: Sequence[str] | None = compiled.positiontup if compiled.positional else None
        self.constants: dict[str, Any] = {}
        self.required: dict[str, Callable[[Any], Any] | None] = {}
        for bind, name in compiled.bind_names.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                self.required[name] = process
            else:
                value = bind.effective_value
                self.constants[name] = value if process is None else process(value)
        columns = stmt.selected_columns
        processors = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        ]
        self.conversions = [(i, p) for i, p in enumerate(processors) if p is not None]

    def parameters(self, values: Mapping[str, Any]) -> dict[str, Any] | list[Any]:
        bound = dict(self.constants)
        for name, process in self.required.items():
            try:
                value = values[name]
            except KeyError:
                raise KeyError(f"no value for the bind parameter {name!r}") from None
            bound[name] = value if process is None or value is None else process(value)
        if self.order is None:
            return bound
        return [bound[name] for name in self.order]

    def convert(self, rows: list[Row]) -> list[Row]:
        if not self.conversions:
            return rows
        converted = []
        for row in rows:
            values = list(row)
            for index, process in self.conversions:
                values[index] = process(values[index])
            converted.append(tuple(values))
        return converted


class Reader:
    """Runs ``Read``s on ``engine``'s database and returns what they make of the rows.

    Statements are kept compiled by identity, so a ``Read`` must build the cached
    statements the store makes per shape, not a new object per call (at most
    ``MAX_STATEMENTS`` are kept). A connection found dead (the database restarted since
    it was last used) is dropped and the read repeated once; a database that cannot be
    reached is ``DatabaseUnavailable``.

    ``run`` uses the engine's pool. ``run_async`` uses ``open``'s connections for
    PostgreSQL, at most ``connections`` at once (an app opens them in its lifespan), with
    ``deadlines`` (docs/deadlines.md); otherwise, and on SQLite, it runs ``run`` in a
    worker thread. A read that got no answer within its deadline is not repeated.
    """

    MAX_STATEMENTS = 1024

    def __init__(
        self, engine: Engine, *, connections: int = 4, deadlines: Deadlines = SERVE
    ) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        self._prepared: dict[Select[Any], _Prepared] = {}
        self._lock = threading.Lock()
        dbapi = engine.dialect.dbapi
        assert dbapi is not None
        self._errors: type[Exception] = dbapi.Error
        self._outages: tuple[type[Exception], ...] = (dbapi.OperationalError, dbapi.InterfaceError)
        self._connections = connections
        self._deadlines = deadlines
        self._async: _AsyncConnections | None = None

    # --- in the calling thread ----------------------------------------------------------

    def run(self, read: Read[_T]) -> _T:
        prepared = self._prepare(read.build(self.postgres))
        parameters = prepared.parameters(read.values)
        try:
            rows = self._run(prepared.sql, parameters)
        except _Dead:
            rows = self._run(prepared.sql, parameters, last=True)
        return read.result(prepared.convert(rows))

    def _run(self, sql: str, parameters: Any, *, last: bool = False) -> list[Row]:
        try:
            connection = self.engine.raw_connection()
        except self._outages as exc:  # the pool passes the driver's own errors on
            raise unavailable(exc) from exc
        cursor = None
        try:
            cursor = connection.cursor()
            cursor.execute(sql, parameters)
            rows = cast(list[Row], cursor.fetchall())
            cursor.close()
            return rows
        except self._errors as exc:  # the driver's own Error class
            dbapi_connection = connection.dbapi_connection
            if self.engine.dialect.is_disconnect(cast(Any, exc), dbapi_connection, cursor):
                # The other pooled connections predate the same restart: replace them all,
                # as SQLAlchemy does when a session's connection is found dead.
                connection.invalidate(exc)
                self.engine.dispose()
                if not last and not stall.no_answer(exc):
                    raise _Dead from exc
            if isinstance(exc, self._outages):
                raise unavailable(exc) from exc
            raise
        finally:
            connection.close()

    # --- on the event loop --------------------------------------------------------------

    async def open(self) -> None:
        """Ready ``run_async``'s own connections (PostgreSQL; nothing to do on SQLite)."""
        if self.postgres and self._async is None:
            _, parameters = self.engine.dialect.create_connect_args(self.engine.url)
            self._async = _AsyncConnections(
                stall.parameters(self._deadlines, dict(parameters)),
                self._connections,
                self._deadlines,
            )

    async def close(self) -> None:
        connections, self._async = self._async, None
        if connections is not None:
            await connections.close()

    async def run_async(self, read: Read[_T]) -> _T:
        connections = self._async
        if connections is None:
            return await anyio.to_thread.run_sync(self.run, read)
        prepared = self._prepare(read.build(self.postgres))
        parameters = prepared.parameters(read.values)
        try:
            rows = await connections.fetch(prepared.sql, parameters)
        except _Dead:
            rows = await connections.fetch(prepared.sql, parameters, last=True)
        return read.result(prepared.convert(rows))

    def _prepare(self, stmt: Select[Any]) -> _Prepared:
        prepared = self._prepared.get(stmt)
        if prepared is None:
            prepared = _Prepared(stmt, self.engine)
            with self._lock:
                if len(self._prepared) >= self.MAX_STATEMENTS:
                    self._prepared.clear()
                self._prepared[stmt] = prepared
        return prepared


class _AsyncConnections:
    """psycopg's asynchronous connections in autocommit, reused newest first, at most
    ``size`` in use at once; each keeps one cursor for all its reads (a cursor per read
    costs a tenth of a read's CPU: docs/design/http-read-path.md, "Cursors").

    Deliberately small next to a full pool (psycopg_pool): a connection is made when a
    read needs one and none is idle, so a database that is down fails that read at once
    (a 503) rather than after a pool's wait; one that fails or is interrupted mid-read
    is closed, never reused. Waiting for a free connection has an ``asyncio`` timeout of
    ``deadlines.read``; connecting has the connect timeout, and every round trip the
    watchdog's deadline (``reconciler.store.stall``), never a cancellation: psycopg
    answers one inside a wait by asking the server to cancel, which a database that does
    not answer would make wait seconds more.
    """

    def __init__(self, parameters: dict[str, Any], size: int, deadlines: Deadlines) -> None:
        self.parameters = {**parameters, "autocommit": True}
        self.deadlines = deadlines
        self.idle: list[psycopg.AsyncCursor[Any]] = []
        self.slots = asyncio.Semaphore(size)

    async def fetch(self, sql: str, parameters: Any, *, last: bool = False) -> list[Row]:
        try:
            async with asyncio.timeout(self.deadlines.read):
                await self.slots.acquire()
        except TimeoutError as exc:
            busy = stall.NoAnswer(f"no connection free within {self.deadlines.read:g} s")
            raise unavailable(busy) from exc
        try:
            return await self._fetch(sql, parameters, last=last)
        finally:
            self.slots.release()

    async def _fetch(self, sql: str, parameters: Any, *, last: bool) -> list[Row]:
        reused = bool(self.idle)
        try:
            if reused:
                cursor = self.idle.pop()
            else:
                connection = await stall.connect_async(self.deadlines, **self.parameters)
                cursor = connection.cursor()
        except psycopg.OperationalError as exc:
            raise unavailable(exc) from exc
        try:
            await cursor.execute(sql, parameters)
            rows = await cursor.fetchall()
        except psycopg.Error as exc:
            await cursor.connection.close()
            if reused and cursor.connection.broken and not stall.no_answer(exc):
                await self.close()  # the idle ones predate the same restart
                if not last:
                    raise _Dead from exc
            if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
                raise unavailable(exc) from exc
            raise
        except BaseException:
            await cursor.connection.close()  # cancelled mid-read: its state is unknown
            raise
        self.idle.append(cursor)
        return rows

    async def close(self) -> None:
        idle, self.idle = self.idle, []
        for cursor in idle:
            await cursor.connection.close()


class _Dead(Exception):
    """The connection turned out to be dead; the read can be repeated."""


# --- sessions ---------------------------------------------------------------------------


def plain(session: Session) -> Connection:
    """The session's connection, for plain-row statements: ``Session.execute`` would run
    them through the ORM's statement machinery, which costs more than the query here."""
    return session.connection()


def for_reading(database: Database) -> Database:
    """A handle of its own on the same database for a reader that serves many requests:
    its own pool, in autocommit, so that a read costs one round trip, not three (no BEGIN
    and ROLLBACK around it; pages are keyset, so no list needs one snapshot across
    statements), and no ping before each checkout (a round trip per request: a connection
    that died with a database restart is replaced by one retry instead, see ``read`` and
    ``Reader``). The schema is not upgraded again."""
    url = database.engine.url.render_as_string(hide_password=False)
    return Database.open(
        url,
        upgrade=False,
        deadlines=database.deadlines,
        isolation_level="AUTOCOMMIT",
        pool_pre_ping=False,
    )


@contextmanager
def _reading(database: Database) -> Iterator[Session]:
    """A session for reads only (rolled back at the end); an unreachable database is
    ``DatabaseUnavailable`` rather than a driver exception."""
    try:
        with database.sessions() as session:
            yield session
    except (OperationalError, InterfaceError) as exc:
        raise unavailable(exc) from exc


def read(database: Database, work: Callable[[Session], _T]) -> _T:
    """``work(session)`` in a read-only session, once more when the pooled connection it
    got was dead (the database restarted since it was last used): reads can be repeated,
    so a pool without a ping before every checkout costs a caller nothing when that
    happens."""
    try:
        with _reading(database) as session:
            return work(session)
    except DatabaseUnavailable as exc:
        cause = exc.__cause__
        if not (isinstance(cause, DBAPIError) and cause.connection_invalidated):
            raise
        if stall.no_answer(cause):
            raise  # it stalled rather than died: again would only wait as long again
    with _reading(database) as session:
        return work(session)
