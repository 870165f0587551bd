"""Private server resources: a fresh PostgreSQL database, a Redis database number of one's
own, a free local port.

Used by the benchmarks and by the test suite's fixtures (tests/conftest.py), so both
claim Redis numbers through the same lock files and never flush each other's data.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

PG_ADMIN_URL = os.environ.get("RECONCILER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = "redis://127.0.0.1:6379"


@contextmanager
def fresh_postgres(prefix: str) -> Iterator[str]:
    """The URL of a new, empty database, dropped afterwards."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def free_redis() -> Iterator[str]:
    """The URL of a Redis database number no test or benchmark holds, flushed before and after."""
    import redis

    for number in range(15, 0, -1):
        lock = open(f"/tmp/reconciler-test-redis-{number}.lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        try:
            url = f"{REDIS_URL}/{number}"
            redis.Redis.from_url(url).flushdb()
            yield url
            redis.Redis.from_url(url).flushdb()
            return
        finally:
            lock.close()
    raise RuntimeError("every Redis database number (1-15) is held by a test or benchmark")


def healthy(base: str) -> bool:
    """Whether ``reconcile serve`` at ``base`` answers ``/healthz`` just now."""
    import httpx

    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_serving(base: str, server: subprocess.Popen[bytes], why: Callable[[], str]) -> None:
    """Return once ``server`` answers ``/healthz`` at ``base``; raise with ``why()`` when it
    exits first or a minute passes."""
    deadline = time.monotonic() + 60
    while not healthy(base):
        if time.monotonic() > deadline or server.poll() is not None:
            raise RuntimeError(f"the server did not start{why()}")
        time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate ``process`` and wait for it; kill it if it has not gone in 20 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on just now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
