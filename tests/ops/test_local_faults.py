"""Local faults stay local: a full or read-only disk under the embedded SQLite broker.

On a real tmpfs, a real worker must report the fault once, keep its broker connections
bounded (kombu's channel used to keep one per reconnect until the pool ran out and the
worker died), and run every queued task once the disk can be written again. See
docs/deploy.md, "Local faults".
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psutil
import pytest

from reconciler.store.database import Database
from tests.mounts import fill, remount, tmpfs
from tests.support import Process, wait_for

SEND = """\
import sys
from reconciler.demo import app
with app.connection_for_write() as connection:
    for n in range(int(sys.argv[1])):
        print(app.send_task("app.worker.test_celery", [f"m{n}"], connection=connection).id)
"""

WATCHED = 3.0
"""Seconds the worker is watched on the full disk: three polls of the broker (1 s apart);
the old channel leaked a connection on each of its many reconnects per second."""


WORKER = [sys.executable, "-m", "celery", "-A", "reconciler.demo:app", "worker",
          "--concurrency", "1", "--loglevel", "INFO",
          "--without-gossip", "--without-mingle"]  # fmt: skip


def queue_tasks(tmp_path: Path, env: dict[str, str], count: int) -> list[str]:
    """Publish ``count`` tasks from another process (this one keeps no file open there)."""
    sender = Process([sys.executable, "-c", SEND, str(count)], tmp_path / "send.log", env=env)
    assert sender.popen.wait(60) == 0, sender.output()
    ids = sender.output().split()
    assert len(ids) == count
    return ids


def broker_handles(pid: int, broker: Path) -> int:
    """How many times the process has the broker file open (one per SQLite connection)."""
    return sum(1 for f in psutil.Process(pid).open_files() if f.path == str(broker))


@pytest.mark.e2e
def test_a_worker_outlives_a_full_disk_under_its_sqlite_broker(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'state.db'}"
    Database.open(database_url).dispose()
    with tmpfs(tmp_path / "state", 2048) as state:
        broker = state / "broker.db"
        env = {"RECONCILER_BROKER_URL": f"sqla+sqlite:///{broker}",
               "RECONCILER_DATABASE_URL": database_url}  # fmt: skip
        ids = queue_tasks(tmp_path, env, 6)
        filler = fill(state)
        with Process(WORKER, tmp_path / "worker.log", env=env, cwd=tmp_path) as worker:
            wait_for(lambda: "cannot be written (the disk is full)" in worker.output(), 30,
                     message="the worker to report the full disk")  # fmt: skip
            most = 0
            until = time.monotonic() + WATCHED
            while time.monotonic() < until:
                most = max(most, broker_handles(worker.pid, broker))
                time.sleep(0.1)
            assert worker.popen.poll() is None
            assert most <= 2, f"{most} connections to the broker held"
            full = worker.output()
            assert full.count("cannot be written") == 1
            assert "Connection to broker lost" not in full and "Traceback" not in full
            assert not any(f"[{task_id}] succeeded" in full for task_id in ids)

            filler.unlink()
            wait_for(lambda: all(f"[{i}] succeeded" in worker.output() for i in ids), 30,
                     message="every queued task to run once space is free")  # fmt: skip
            log = worker.output()
            assert "can be written again" in log
            assert all(log.count(f"[{i}] succeeded") == 1 for i in ids)
            assert worker.popen.poll() is None


@pytest.mark.e2e
def test_a_worker_waits_out_a_read_only_sqlite_broker(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'state.db'}"
    Database.open(database_url).dispose()
    with tmpfs(tmp_path / "state", 2048) as state:
        env = {"RECONCILER_BROKER_URL": f"sqla+sqlite:///{state / 'broker.db'}",
               "RECONCILER_DATABASE_URL": database_url}  # fmt: skip
        ids = queue_tasks(tmp_path, env, 3)
        remount(state, "ro")
        with Process(WORKER, tmp_path / "worker.log", env=env, cwd=tmp_path) as worker:
            wait_for(lambda: "cannot be written (it is read-only)" in worker.output(), 30,
                     message="the worker to report the read-only broker")  # fmt: skip
            assert worker.popen.poll() is None
            assert not any(f"[{task_id}] succeeded" in worker.output() for task_id in ids)
            remount(state, "rw")
            wait_for(lambda: all(f"[{i}] succeeded" in worker.output() for i in ids), 30,
                     message="every queued task to run once the broker is writable")  # fmt: skip
            log = worker.output()
            assert log.count("cannot be written") == 1 and "can be written again" in log
            assert "Connection to broker lost" not in log and "Traceback" not in log
