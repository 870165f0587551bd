"""The embedded SQLite broker removes the messages it delivered (docs/demo.md), through
the demo app's own transport on a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from queue import Empty

import pytest
from kombu.simple import SimpleQueue

from reconciler import demo
from reconciler.demo import app


def rows(path: Path) -> tuple[int, int]:
    """(messages in the file, of which still waiting to be delivered)."""
    with sqlite3.connect(path) as connection:
        total, waiting = connection.execute(
            "SELECT count(*), coalesce(sum(visible), 0) FROM kombu_message"
        ).fetchone()
    return int(total), int(waiting)


def left_by_an_older_version(path: Path, count: int) -> None:
    """Delivered messages kombu's own transport leaves behind (hidden, never removed)."""
    with sqlite3.connect(path) as connection:
        (queue_id,) = connection.execute("SELECT id FROM kombu_queue WHERE name = 'q'").fetchone()
        connection.executemany(
            "INSERT INTO kombu_message (visible, timestamp, payload, version, queue_id) "
            "VALUES (0, NULL, '{}', 1, ?)",
            [(queue_id,)] * count,
        )


def take(queue: SimpleQueue) -> object:
    message = queue.get(block=False)  # type: ignore[no-untyped-call]
    message.ack()
    return message.payload


def test_a_delivered_message_leaves_the_file_and_a_waiting_one_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "SWEEP_EVERY", 0.0)  # every poll sweeps
    path = tmp_path / "broker.db"
    with app.connection_for_write(f"sqla+sqlite:///{path}") as connection:
        queue = connection.SimpleQueue("q")
        for n in range(3):
            queue.put({"n": n})
        assert rows(path) == (3, 3)
        assert take(queue) == {"n": 0}
        # Removed by the channel that delivered it; the two waiting are untouched.
        assert rows(path) == (2, 2)
        assert [take(queue), take(queue)] == [{"n": 1}, {"n": 2}]
        assert rows(path) == (0, 0)
        queue.close()


def test_a_backlog_goes_in_batches_then_the_sweep_waits_its_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "SWEEP_BATCH", 100)
    monkeypatch.setattr(demo, "SWEEP_EVERY", 3600.0)
    path = tmp_path / "broker.db"
    with app.connection_for_write(f"sqla+sqlite:///{path}") as connection:
        queue = connection.SimpleQueue("q")
        queue.put({"n": 0})
        queue.put({"n": 1})
        left_by_an_older_version(path, 250)
        assert rows(path) == (252, 2)
        take(queue)  # the first poll sweeps: a full batch, so the next poll sweeps again
        assert rows(path) == (152, 1)
        take(queue)
        assert rows(path) == (52, 0)
        with pytest.raises(Empty):
            queue.get(block=False)
        assert rows(path) == (0, 0)
        # That batch was not full: the next sweep waits SWEEP_EVERY, so this one stays.
        queue.put({"n": 2})
        assert take(queue) == {"n": 2}
        assert rows(path) == (1, 0)
        queue.close()
