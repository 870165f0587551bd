"""The live channel, ``GET /api/v1/changes`` (docs/page.md, "Live"): what it answers, that
its clients cost the database nothing, and that a stopping server answers them at once."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import make_url

from benchmarks.querycount import QueryCount
from reconciler.store.database import Database
from reconciler.web import create_app
from reconciler.web.tokens import load_tokens
from tests.support import TcpProxy
from tests.webseed import TOKENS, add_apply, add_execution, seed_standard, tokens_yaml
from tests.webserve import serving

ADMIN = {"Authorization": f"Bearer {TOKENS['root']}"}
OWNER = {"Authorization": f"Bearer {TOKENS['olga']}"}


def _seeded(url: str, directory: Path) -> tuple[Database, FastAPI]:
    (directory / "tokens.yaml").write_text(tokens_yaml())
    database = Database.open(url)
    with database.session() as session:
        seed_standard(session)
    tokens = load_tokens(directory / "tokens.yaml")
    return database, create_app(database, tokens=tokens, app_path="reconciler.demo:app")


@asynccontextmanager
async def _client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app in this event loop, with its lifespan, and a client of it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield client


def _write(database: Database, change: Callable[[Any], object]) -> Callable[[], None]:
    def run() -> None:
        with database.session() as session:
            change(session)

    return run


def test_changes_name_what_changed(database_url: str, tmp_path: Path) -> None:
    database, app = _seeded(database_url, tmp_path)
    now = dt.datetime.now(dt.UTC)

    async def scenario() -> None:
        async with _client(app) as client:
            assert (await client.get("/api/v1/changes")).status_code == 401
            first = (await client.get("/api/v1/changes", headers=ADMIN)).json()
            assert first["changed"] == ["tasks", "executions", "applies"]
            version = first["version"]
            # An owner's token gets the same version: it says nothing about whose rows.
            owners = await client.get("/api/v1/changes", headers=OWNER)
            assert owners.json()["version"] == version
            assert owners.headers["cache-control"] == "no-store"
            same = await client.get(f"/api/v1/changes?since={version}", headers=ADMIN)
            assert same.json() == {"version": version, "changed": []}

            # A poll held open is answered when an execution appears, within the interval.
            held = asyncio.create_task(
                client.get(f"/api/v1/changes?since={version}&wait=20", headers=ADMIN)
            )
            await asyncio.sleep(0.2)  # let the poll start waiting before the write
            assert not held.done()
            started = time.monotonic()
            await asyncio.to_thread(
                _write(database, lambda s: add_execution(s, "daily-report", queued_at=now))
            )
            answer = (await asyncio.wait_for(held, 10)).json()
            assert time.monotonic() - started < 3
            assert answer["changed"] == ["tasks", "executions"]
            version = answer["version"]

            # A finished execution's status moves the marks as a new row does.
            running = await asyncio.to_thread(_pending_row, database, now)
            version = await _next(client, version, ["tasks", "executions"])
            await asyncio.to_thread(_finish, database, running)
            version = await _next(client, version, ["tasks", "executions"])

            await asyncio.to_thread(_write(database, lambda s: add_apply(s, at=now)))
            await _next(client, version, ["applies"])

            # A version that is not one: everything changed.
            odd = await client.get("/api/v1/changes?since=nonsense", headers=ADMIN)
            assert odd.json()["changed"] == ["tasks", "executions", "applies"]
            bad = await client.get("/api/v1/changes?wait=31", headers=ADMIN)
            assert bad.status_code == 422

    asyncio.run(scenario())
    database.dispose()


def _pending_row(database: Database, now: dt.datetime) -> int:
    with database.session() as session:
        return add_execution(session, "ops-cleanup", status="started", queued_at=now).id


def _finish(database: Database, row: int) -> None:
    from reconciler.store.tables import TaskExecution

    with database.session() as session:
        execution = session.get(TaskExecution, row)
        assert execution is not None
        execution.status = "success"
        execution.finished_at = dt.datetime.now(dt.UTC)


async def _next(client: httpx.AsyncClient, version: str, topics: list[str]) -> str:
    response = await client.get(f"/api/v1/changes?since={version}&wait=10", headers=ADMIN)
    answer = response.json()
    assert answer["changed"] == topics
    new: str = answer["version"]
    return new


def test_idle_clients_cost_no_query_each(database_url: str, tmp_path: Path) -> None:
    """Many clients polling as fast as they like cost the database what one does: the
    watcher's one read a second, answered to all of them from memory."""
    database, app = _seeded(database_url, tmp_path)
    seconds = 3.0

    async def clients(count: int) -> tuple[int, int]:
        """(statements sent, polls answered) while ``count`` clients poll for ``seconds``."""
        answered = 0
        async with _client(app) as client:
            version = (await client.get("/api/v1/changes", headers=ADMIN)).json()["version"]
            queries = QueryCount(app)

            async def poll() -> None:
                nonlocal answered
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    response = await client.get(f"/api/v1/changes?since={version}", headers=ADMIN)
                    assert response.json()["changed"] == []
                    answered += 1
                    await asyncio.sleep(0.05)

            await asyncio.gather(*(poll() for _ in range(count)))
        return queries.count, answered

    one_queries, one_answered = asyncio.run(clients(1))
    many_queries, many_answered = asyncio.run(clients(20))
    assert many_answered > 10 * one_answered / 2  # the 20 clients did poll, many times over
    reads = seconds / app.state.changes.interval + 2  # one a second, and the edges
    assert one_queries <= reads, one_queries
    assert many_queries <= reads, (many_queries, many_answered)
    database.dispose()


@pytest.mark.postgres
def test_a_database_outage_is_503_until_the_watcher_reads_again(
    postgres_url: str, tmp_path: Path
) -> None:
    """The page shows itself paused on a 503, and follows again by itself once the
    watcher reads again."""
    target = make_url(postgres_url)
    with TcpProxy(target.host or "127.0.0.1", target.port or 5432) as proxy:
        url = target.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
        database, app = _seeded(url, tmp_path)

        async def scenario() -> None:
            async with _client(app) as client:
                version = (await client.get("/api/v1/changes", headers=ADMIN)).json()["version"]
                poll = f"/api/v1/changes?since={version}&wait=10"
                proxy.cut()
                down = await client.get(poll, headers=ADMIN)
                assert down.status_code == 503, down.text
                assert down.json()["detail"].startswith("database unavailable: ")
                proxy.restore()
                deadline = time.monotonic() + 10
                now = f"/api/v1/changes?since={version}"
                while (back := await client.get(now, headers=ADMIN)).status_code != 200:
                    assert time.monotonic() < deadline, back.text
                    await asyncio.sleep(0.1)
                assert back.json() == {"version": version, "changed": []}

        asyncio.run(scenario())
        database.dispose()


def test_a_stopping_server_answers_held_polls_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    Database.open(url).dispose()
    with (
        serving(url, tmp_path / "serve.log") as (base, process),
        httpx.Client(base_url=base, timeout=40) as client,
    ):
        # The poll goes over this connection, already open: the server reads it at once.
        version = client.get("/api/v1/changes").json()["version"]
        answers: list[int | str] = []

        def hold() -> None:
            try:
                poll = f"/api/v1/changes?since={version}&wait=30"
                answers.append(client.get(poll).status_code)
            except httpx.HTTPError as exc:
                answers.append(type(exc).__name__)

        holder = threading.Thread(target=hold)
        holder.start()
        holder.join(1.0)  # nothing changes in this database: the poll stays held
        assert holder.is_alive(), answers
        stopped = time.monotonic()
        process.kill(signal.SIGTERM)
        process.popen.wait(10)
        holder.join(10)
        assert time.monotonic() - stopped < 5
    assert answers == [503], process.output()
