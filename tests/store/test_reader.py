"""Plain-row reads (reconciler.store.reads.reader) on SQLite and PostgreSQL: the same rows as
SQLAlchemy's, one retry on a dead connection, bounded and cancellable async reads."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Select, bindparam, func, literal, select

from reconciler.errors import DatabaseUnavailable
from reconciler.store.database import Database
from reconciler.store.reads.reader import Read, Reader, for_reading
from reconciler.store.tables import Task, TaskExecution, UTCDateTime
from tests.webseed import T0, add_execution, add_task

H = dt.timedelta(hours=1)


def rows(found: list[Any]) -> list[Any]:
    return found


def read(stmt: Select[*tuple[Any, ...]], **values: Any) -> Read[list[Any]]:
    return Read(lambda postgres: stmt, values, rows)


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    database = Database.open(database_url)
    with database.session() as session:
        add_task(session, "a", owner="billing", enabled=True, next_run_at=T0)
        add_task(session, "b", owner="ops", enabled=False, description="it's 100% _odd_")
        for i in range(5):
            add_execution(session, "a", queued_at=T0 + i * H, status="success")
        add_execution(session, "b", queued_at=T0 + 9 * H, status="failure")
    reading = for_reading(database)
    yield reading
    reading.dispose()
    database.dispose()


# Statements with repeated, typed and constant parameters, bound by name or position.
BY_OWNER_AND_TIME = (
    select(TaskExecution.id, TaskExecution.task_name, TaskExecution.queued_at, Task.enabled)
    .join(Task, Task.name == TaskExecution.task_name)
    .where(
        Task.owner == bindparam("owner"),
        TaskExecution.queued_at >= bindparam("since"),
        TaskExecution.queued_at < func.coalesce(bindparam("until"), literal(T0 + 100 * H)),
        Task.name != bindparam("owner"),
    )
    .order_by(TaskExecution.id.desc())
    .limit(bindparam("limit"))
)
SEARCH = (
    select(Task.name, Task.enabled, Task.next_run_at)
    .where(
        Task.description.icontains(bindparam("q"), escape="/"),
        Task.enabled == bindparam("enabled"),
    )
    .order_by(Task.name)
)
LATEST = select(func.max(TaskExecution.queued_at, type_=UTCDateTime()))


@pytest.mark.parametrize(
    ("stmt", "values"),
    [
        (BY_OWNER_AND_TIME, {"owner": "billing", "since": T0 + H, "until": None, "limit": 3}),
        (BY_OWNER_AND_TIME, {"owner": "billing", "since": T0, "until": T0 + 2 * H, "limit": 9}),
        (BY_OWNER_AND_TIME, {"owner": "ops", "since": T0, "until": None, "limit": 9}),
        (SEARCH, {"q": "100/%", "enabled": False}),
        (SEARCH, {"q": "", "enabled": True}),
        (LATEST, {}),
    ],
)
def test_rows_are_what_sqlalchemy_returns(
    database: Database, stmt: Select[Any], values: dict[str, Any]
) -> None:
    with database.engine.connect() as connection:
        expected = [tuple(row) for row in connection.execute(stmt, values)]
    got = Reader(database.engine).run(read(stmt, **values))
    assert got == expected
    assert got  # every case finds something, so the conversions were exercised
    for row in got:
        for value in row:
            if isinstance(value, dt.datetime):
                assert value.tzinfo is not None and value.utcoffset() == dt.timedelta(0)


def test_async_rows_are_the_same(database: Database) -> None:
    reader = Reader(database.engine)
    values = {"owner": "billing", "since": T0, "until": None, "limit": 9}

    async def both() -> tuple[list[Any], list[Any]]:
        in_thread = await reader.run_async(read(BY_OWNER_AND_TIME, **values))
        await reader.open()
        try:
            return in_thread, await reader.run_async(read(BY_OWNER_AND_TIME, **values))
        finally:
            await reader.close()

    in_thread, on_loop = asyncio.run(both())
    assert in_thread == on_loop == reader.run(read(BY_OWNER_AND_TIME, **values))
    assert [row[0] for row in on_loop] == sorted((row[0] for row in on_loop), reverse=True)


def test_a_missing_value_names_its_parameter(database: Database) -> None:
    with pytest.raises(KeyError, match="'since'"):
        Reader(database.engine).run(read(BY_OWNER_AND_TIME, owner="x", until=None, limit=1))


def test_compiled_statements_are_bounded(database: Database) -> None:
    reader = Reader(database.engine)
    reader.MAX_STATEMENTS = 3
    statements = [select(Task.name).where(Task.name != literal(str(i))) for i in range(10)]
    for stmt in statements:
        assert reader.run(read(stmt)) == [("a",), ("b",)]
        assert len(reader._prepared) <= 3


@pytest.mark.postgres
def test_a_dead_connection_is_replaced_once(postgres_url: str) -> None:
    """A restart kills every pooled connection: the read after it is repeated on a new
    one, in the calling thread and on the event loop alike."""
    database = for_reading(Database.open(postgres_url))
    reader = Reader(database.engine, connections=2)
    pid = select(func.pg_backend_pid())

    def kill(backend: int) -> None:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (backend,))

    async def on_loop() -> None:
        await reader.open()
        try:
            [(first,)] = await reader.run_async(read(pid))
            kill(first)
            [(second,)] = await reader.run_async(read(pid))
            assert second != first
            [(third,)] = await reader.run_async(read(pid))
            assert third == second  # the new connection is kept
        finally:
            await reader.close()

    try:
        [(first,)] = reader.run(read(pid))
        kill(first)
        [(second,)] = reader.run(read(pid))
        assert second != first
        asyncio.run(on_loop())
    finally:
        database.dispose()


@pytest.mark.postgres
def test_an_unreachable_database_fails_at_once() -> None:
    database = Database.open("postgresql://postgres@127.0.0.1:1/none", upgrade=False)
    reader = Reader(database.engine)
    stmt = select(func.now())

    async def on_loop() -> None:
        await reader.open()
        try:
            with pytest.raises(DatabaseUnavailable, match=r"^database unavailable: "):
                await asyncio.wait_for(reader.run_async(read(stmt)), 10)
        finally:
            await reader.close()

    try:
        with pytest.raises(DatabaseUnavailable, match=r"^database unavailable: "):
            reader.run(read(stmt))
        asyncio.run(on_loop())
    finally:
        database.dispose()


@pytest.mark.postgres
def test_async_reads_share_a_bounded_set_of_connections(postgres_url: str) -> None:
    database = for_reading(Database.open(postgres_url))
    reader = Reader(database.engine, connections=2)
    slow = select(func.pg_backend_pid(), func.pg_sleep(0.05))

    async def many() -> list[int]:
        await reader.open()
        try:
            results = await asyncio.gather(*(reader.run_async(read(slow)) for _ in range(10)))
        finally:
            await reader.close()
        return [result[0][0] for result in results]

    try:
        backends = asyncio.run(many())
    finally:
        database.dispose()
    assert len(backends) == 10
    assert len(set(backends)) == 2


@pytest.mark.postgres
def test_a_read_cancelled_midway_drops_its_connection(postgres_url: str) -> None:
    """A client that goes away cancels its read: that connection is closed, not reused
    with a query still running on it."""
    database = for_reading(Database.open(postgres_url))
    reader = Reader(database.engine, connections=1)
    pid = select(func.pg_backend_pid())
    sleep = select(func.pg_backend_pid(), func.pg_sleep(30))

    async def cancel() -> tuple[int, int]:
        await reader.open()
        try:
            [(before,)] = await reader.run_async(read(pid))
            pending = asyncio.ensure_future(reader.run_async(read(sleep)))
            deadline = asyncio.get_running_loop().time() + 10
            while not await _sleeping(postgres_url, before):
                assert asyncio.get_running_loop().time() < deadline, "the query never started"
                await asyncio.sleep(0.01)
            pending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pending
            [(after,)] = await asyncio.wait_for(reader.run_async(read(pid)), 10)
            return before, after
        finally:
            await reader.close()

    try:
        before, after = asyncio.run(cancel())
    finally:
        database.dispose()
    assert after != before


async def _sleeping(url: str, backend: int) -> bool:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        cursor = await admin.execute(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND query LIKE %s",
            (backend, "%pg_sleep%"),
        )
        return await cursor.fetchone() is not None
