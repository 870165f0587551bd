"""Fixtures for the real services: PostgreSQL, Redis, RabbitMQ, and the backend matrix.

Each test that needs a server gets its own database (PostgreSQL), its own Redis
database number, or its own RabbitMQ virtual host, so test runs never see each
other's state. With ``RECONCILER_REQUIRE_SERVICES=1`` (set by ``.ci/run``) a
missing server fails the test instead of skipping it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.services import free_redis, fresh_postgres
from reconciler.store import stall
from reconciler.store.database import Database
from tests.faultproxy import FaultProxy

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
RABBIT_HOST, RABBIT_PORT = "127.0.0.1", 5672


def services_required() -> bool:
    return os.environ.get("RECONCILER_REQUIRE_SERVICES") == "1"


def missing(reason: str) -> None:
    """Skip locally; fail under CI, where every service must be there."""
    if services_required():
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


@pytest.fixture(autouse=True)
def _database_waits_restored() -> Iterator[None]:
    """A test that delivers a stop signal to this process cuts its database waits off;
    the tests after it run with the waits restored."""
    yield
    stall.reset_cut_off()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test, dropped afterwards."""
    if not port_open("127.0.0.1", 5432):
        missing("PostgreSQL is not listening on 127.0.0.1:5432")
    with fresh_postgres("rt") as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on SQLite and on PostgreSQL (one store suite, every backend)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def opened(url: str) -> Iterator[Database]:
    """The store on ``url``, migrated, disposed of when the fixture ends."""
    database = Database.open(url)
    yield database
    database.dispose()


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """The store on ``database_url``, migrated, for one test."""
    yield from opened(database_url)


@pytest.fixture
def postgres_db(postgres_url: str) -> Iterator[Database]:
    """The store on PostgreSQL alone, migrated, for one test."""
    yield from opened(postgres_url)


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    """A fault proxy in front of the local PostgreSQL (``through`` gives a URL over it)."""
    with FaultProxy("127.0.0.1", 5432) as running:
        yield running


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis URL on a database number no other test or benchmark process is using,
    flushed first."""
    if not port_open(REDIS_HOST, REDIS_PORT):
        missing(f"Redis is not listening on {REDIS_HOST}:{REDIS_PORT}")
    with free_redis() as url:
        yield url


@pytest.fixture
def rabbitmq_url() -> Iterator[str]:
    """An AMQP URL on a fresh RabbitMQ virtual host, deleted afterwards."""
    if not port_open(RABBIT_HOST, RABBIT_PORT):
        missing(f"RabbitMQ is not listening on {RABBIT_HOST}:{RABBIT_PORT}")
    vhost = f"rt_{uuid.uuid4().hex[:10]}"

    def ctl(*args: str) -> None:
        subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)

    try:
        ctl("add_vhost", vhost)
        ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    except (OSError, subprocess.SubprocessError) as exc:
        missing(f"cannot create a RabbitMQ virtual host with rabbitmqctl: {exc}")
    try:
        yield f"amqp://guest:guest@{RABBIT_HOST}:{RABBIT_PORT}/{vhost}"
    finally:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            ctl("delete_vhost", vhost)
