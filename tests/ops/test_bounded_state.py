"""``reconcile up`` keeps its embedded SQLite files bounded (docs/demo.md): the state
file's write-ahead log is cut every minute, and the broker removes what it delivered.

The checkpoints run against real SQLite files; the soak test runs ``reconcile up`` on
the embedded defaults with a 1-second task for two and a half minutes, beat's pruner
removing the history past its retention as it goes.
"""

from __future__ import annotations

import datetime as dt
import itertools
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.ops.up import Checkpoints
from reconciler.store.database import Database, checkpoint_sqlite
from tests.ops.test_up import reap, start_up, successes, tick_tasks
from tests.support import wait_for
from tests.webseed import add_execution

ROW = "x" * 1000


def wal(path: Path) -> int:
    log = path.with_name(path.name + "-wal")
    return log.stat().st_size if log.exists() else 0


@contextmanager
def state_file(tmp_path: Path, rows: int = 3000) -> Iterator[Path]:
    """A state file in WAL mode after ``rows`` writes, held open as the processes of
    ``up`` hold it (the last connection to close would checkpoint and remove the log):
    SQLite's own checkpoints ran (the log passed 1,000 pages) but left it at its largest."""
    path = tmp_path / "state.db"
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("PRAGMA journal_mode=WAL")  # as the store opens it
        holder.execute("CREATE TABLE filler (text TEXT)")
        for _ in range(rows // 100):
            with holder:
                holder.executemany("INSERT INTO filler VALUES (?)", [(ROW,)] * 100)
        yield path
    finally:
        holder.close()


def filler_rows(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        (count,) = connection.execute("SELECT count(*) FROM filler").fetchone()
    return int(count)


def test_a_checkpoint_cuts_the_log_and_keeps_every_row(tmp_path: Path) -> None:
    with state_file(tmp_path) as path:
        assert wal(path) > 4_000_000
        done = checkpoint_sqlite(path, 1.0)
        assert done is not None and not done.busy
        assert wal(path) == 0
        assert filler_rows(path) == 3000


def test_a_reader_that_holds_on_makes_it_busy_and_the_next_round_cuts(tmp_path: Path) -> None:
    said: list[str] = []
    with state_file(tmp_path, rows=200) as path:
        checkpoints = Checkpoints([path], said.append)
        reader = sqlite3.connect(path, isolation_level=None)
        try:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM filler").fetchone()
            with sqlite3.connect(path) as writer:  # a write the reader's snapshot does not see
                writer.execute("INSERT INTO filler VALUES (?)", (ROW,))
            started = time.monotonic()
            done = checkpoint_sqlite(path, 0.2)
            assert time.monotonic() - started < 2
            assert done is not None and done.busy
            assert wal(path) > 0
        finally:
            reader.close()
        checkpoints.round()
        assert wal(path) == 0 and said == []
        assert filler_rows(path) == 201


def test_no_file_is_no_checkpoint_and_a_broken_one_is_reported_once(tmp_path: Path) -> None:
    assert checkpoint_sqlite(tmp_path / "absent.db", 1.0) is None
    assert not (tmp_path / "absent.db").exists()
    broken = tmp_path / "broken.db"
    broken.write_text("not a database, " * 100)
    said: list[str] = []
    checkpoints = Checkpoints([tmp_path / "absent.db", broken], said.append)
    checkpoints.round()
    checkpoints.round()
    assert said == [f"checkpoint of {broken} failed (file is not a database); trying again in 60 s"]
    broken.unlink()
    with sqlite3.connect(broken) as repaired:  # a file in the default (rollback) journal mode
        repaired.execute("CREATE TABLE t (x)")
    checkpoints.round()
    assert said[-1] == f"checkpoint of {broken} works again"
    assert len(said) == 2


# --- the soak test --------------------------------------------------------------------

FIRST_MINUTE = 60.0
SAMPLED = 90.0
SAMPLE_EVERY = 5.0
BROKER_ROWS = 12
"""Messages the broker file may hold at once: those queued, those delivered within the
5 s between two removals, and a margin for a slow poll."""
WAL_BOUND = 8_000_000
"""At most a minute of writes between two checkpoints: about 5 MB at a run a second."""
ROW_BYTES = 2048
"""What one execution row may add to the state file: history, bounded by retention."""
OLD_ROWS = 120
"""Executions of the task seeded 100 days back, an hour apart: past the default 90 days."""


@dataclass(frozen=True)
class Sample:
    broker_rows: int
    broker_bytes: int
    state_bytes: int
    wal_bytes: int
    executions: int
    old_rows: int


def sample(directory: Path) -> Sample:
    state = directory / ".reconciler"
    broker, database = state / "broker.db", state / "state.db"
    with sqlite3.connect(broker, timeout=10) as connection:
        (broker_rows,) = connection.execute("SELECT count(*) FROM kombu_message").fetchone()
    with sqlite3.connect(database, timeout=10) as connection:
        (executions,) = connection.execute("SELECT count(*) FROM task_executions").fetchone()
        (old,) = connection.execute(
            "SELECT count(*) FROM task_executions WHERE worker = 'old'"
        ).fetchone()
    return Sample(
        int(broker_rows), broker.stat().st_size, database.stat().st_size, wal(database),
        int(executions), int(old),
    )  # fmt: skip


def seed_old_history(directory: Path) -> None:
    """The state file with ``OLD_ROWS`` successes of ``tick`` long past retention."""
    (directory / ".reconciler").mkdir()
    database = Database.open(f"sqlite:///{directory / '.reconciler' / 'state.db'}")
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=100)
    try:
        with database.session() as session:
            for n in range(OLD_ROWS):
                queued_at = start + n * dt.timedelta(hours=1)
                add_execution(session, "tick", queued_at=queued_at, worker="old", flush=False)
    finally:
        database.dispose()


def stats_successes(directory: Path) -> int:
    with sqlite3.connect(directory / ".reconciler" / "state.db", timeout=10) as connection:
        (total,) = connection.execute(
            "SELECT coalesce(sum(successes), 0) FROM task_stats_daily WHERE task_name = 'tick'"
        ).fetchone()
    return int(total)


@pytest.mark.e2e
def test_up_left_running_keeps_its_broker_and_state_files_bounded(tmp_path: Path) -> None:
    tick_tasks(tmp_path)
    seed_old_history(tmp_path)
    log = tmp_path / "up.log"
    started = time.monotonic()
    # Beat prunes every 5 s from 5 s after it starts (by default every 5 minutes, from 30 s).
    process = start_up(tmp_path, 0, log, env={"RECONCILER_PRUNE_EVERY": "5"})
    samples: list[Sample] = []
    try:
        wait_for(lambda: successes(tmp_path) >= 1, 40, interval=0.2, message="the first run")
        while time.monotonic() < started + FIRST_MINUTE + SAMPLED:
            now = time.monotonic()
            if now >= started + FIRST_MINUTE:
                samples.append(sample(tmp_path))
            time.sleep(SAMPLE_EVERY)
        assert process.poll() is None, log.read_text()[-2000:]
    finally:
        reap(process)
    first, last = samples[0], samples[-1]
    shown = "\n".join(map(str, samples))
    # The task ran every second all along: the files saw a message and a row a second.
    assert last.executions - first.executions >= SAMPLED * 0.6, shown
    # The broker holds only what waits or was just delivered, in a file that stopped growing.
    assert max(s.broker_rows for s in samples) <= BROKER_ROWS, shown
    assert {s.broker_bytes for s in samples} == {first.broker_bytes}, shown
    # The log is cut (only a TRUNCATE checkpoint shrinks it) and never passes its bound ...
    wals = [s.wal_bytes for s in samples]
    assert any(after < before for before, after in itertools.pairwise(wals)), shown
    assert max(wals) <= WAL_BOUND, shown
    # ... and the state file grows by the history it keeps, nothing else.
    for s in samples:
        history = (s.executions - first.executions) * ROW_BYTES
        assert s.state_bytes + s.wal_bytes <= first.state_bytes + WAL_BOUND + history, shown
    # Beat's pruner removed the history past retention, counted first in the statistics.
    assert all(s.old_rows == 0 for s in samples), shown
    assert stats_successes(tmp_path) == OLD_ROWS
    output = log.read_text()
    assert "Traceback" not in output and "checkpoint of" not in output
