"""Tracking in one process: what is stored, which executions are recorded, failures ignored.

Tasks run eagerly (``task.apply()`` sends the same prerun/success/failure signals a
worker sends) and publish to Celery's in-memory broker; the end-to-end tests run the
real worker.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import select

from reconciler import tracking
from reconciler.store.database import Database
from reconciler.store.tables import Task, TaskExecution

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class Unserialisable:
    def __repr__(self) -> str:
        return "<Unserialisable>"


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (None, None),
        ({"rows": [1, 2], "ok": True}, {"rows": [1, 2], "ok": True}),
        ("text", "text"),
        (Unserialisable(), "<Unserialisable>"),
        ({"when": T0}, repr({"when": T0})),
        (math.nan, "nan"),
    ],
    ids=["none", "json", "string", "object", "nested-object", "nan"],
)
def test_results_are_stored_as_json_or_else_their_repr(value: Any, stored: Any) -> None:
    assert tracking.encode_result(value) == stored


def test_results_over_64_kib_are_cut_with_a_marker() -> None:
    stored = tracking.encode_result({"blob": "x" * 100_000})
    assert isinstance(stored, str)
    assert stored.startswith('{"blob":"xxx')
    assert stored.endswith("… [truncated: 100011 bytes, 65536 kept]")
    assert len(stored.encode()) < 65536 + 100


def test_arguments_keep_json_and_turn_the_rest_into_reprs() -> None:
    assert tracking.json_safe([1, "a", {"b": [None, True]}]) == [1, "a", {"b": [None, True]}]
    assert tracking.json_safe([1.5, T0]) == [1.5, repr(T0)]
    assert tracking.describe_error(ValueError("bad row")) == "ValueError: bad row"
    assert tracking.describe_error(KeyError()) == "KeyError"


@pytest.fixture
def app(sqlite_url: str) -> Iterator[Celery]:
    database = Database.open(sqlite_url)
    with database.session() as session:
        for name, celery_name in (("report", "t.report"), ("old", "t.old")):
            session.add(
                Task(
                    name=name, owner="ops", type="async", task=celery_name,
                    spec={"name": name, "task": celery_name, "args": [], "kwargs": {}},
                    content_hash="0" * 64, created_at=T0, updated_at=T0,
                    deleted_at=T0 if name == "old" else None,
                )
            )  # fmt: skip
    database.dispose()
    celery = Celery("tracking-test", broker="memory://", set_as_current=False)
    celery.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True)

    @celery.task(name="t.report", shared=False)
    def report(rows: int, fail: bool = False) -> dict[str, int]:
        if fail:
            raise ValueError(f"cannot report {rows} rows")
        return {"rows": rows}

    @celery.task(name="t.old", shared=False)
    def old() -> None:
        """Belongs to a deleted task."""

    @celery.task(name="t.unmanaged", shared=False)
    def unmanaged() -> str:
        return "not ours"

    tracking.install(celery, database_url=sqlite_url)
    try:
        yield celery
    finally:
        tracking.uninstall(celery)


def rows(url: str, app: Celery) -> list[TaskExecution]:
    assert tracking.install(app).flush()  # install is idempotent: this app's tracker
    database = Database.open(url)
    try:
        with database.session() as session:
            return list(session.scalars(select(TaskExecution).order_by(TaskExecution.id)))
    finally:
        database.dispose()


def test_a_run_is_recorded_from_start_to_result(app: Celery, sqlite_url: str) -> None:
    app.tasks["t.report"].apply(args=[3], task_id="run-1")
    (row,) = rows(sqlite_url, app)
    assert (row.task_name, row.celery_task_id, row.trigger) == ("report", "run-1", "external")
    assert (row.status, row.result, row.args, row.retries) == ("success", {"rows": 3}, [3], 0)
    assert row.started_at is not None and row.finished_at is not None
    assert row.started_at <= row.finished_at and row.duration_ms is not None
    assert row.deadline_at is None


def test_a_failure_is_recorded_with_its_traceback(app: Celery, sqlite_url: str) -> None:
    app.tasks["t.report"].apply(args=[3], kwargs={"fail": True}, task_id="run-2")
    (row,) = rows(sqlite_url, app)
    assert (row.status, row.error) == ("failure", "ValueError: cannot report 3 rows")
    assert row.traceback is not None
    assert 'raise ValueError(f"cannot report {rows} rows")' in row.traceback


def test_publishes_of_managed_tasks_are_recorded_as_external_and_others_not_at_all(
    app: Celery, sqlite_url: str
) -> None:
    with app.connection_for_write() as connection:
        app.tasks["t.report"].apply_async([5], task_id="pub-1", connection=connection)
        app.tasks["t.unmanaged"].apply_async(task_id="pub-2", connection=connection)
        app.tasks["t.old"].apply_async(task_id="pub-3", connection=connection)
        app.tasks["t.report"].apply_async(
            [6], task_id="pub-4", connection=connection,
            headers={tracking.PUBLISHED_HEADER: "schedule"},
        )  # fmt: skip
    app.tasks["t.unmanaged"].apply(task_id="run-3")
    (row,) = rows(sqlite_url, app)
    assert (row.celery_task_id, row.task_name, row.trigger, row.status, row.args) == (
        "pub-1", "report", "external", "pending", [5],
    )  # fmt: skip


def test_a_run_of_a_deleted_task_still_finishes_in_its_history(
    app: Celery, sqlite_url: str
) -> None:
    app.tasks["t.old"].apply(task_id="run-4")
    (row,) = rows(sqlite_url, app)
    assert (row.task_name, row.status) == ("old", "success")


def test_a_database_that_is_away_is_logged_and_never_fails_the_task(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracking, "RETRY_FOR", 0.3)
    celery = Celery("away", broker="memory://", set_as_current=False)
    celery.conf.task_ignore_result = True

    @celery.task(name="t.away", shared=False)
    def away() -> int:
        return 42

    tracking.install(celery, database_url="postgresql://nobody@127.0.0.1:1/nothing")
    try:
        with caplog.at_level(logging.WARNING, logger="reconciler.tracking"):
            result = celery.tasks["t.away"].apply(task_id="away-1")
            assert tracking.install(celery).flush(10)
    finally:
        tracking.uninstall(celery)
    assert result.get() == 42
    messages = [record.getMessage() for record in caplog.records]
    assert any("cannot write to the database" in message for message in messages)
    assert any("dropped" in message for message in messages)


def test_an_embedded_database_that_does_not_exist_is_not_created(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    celery = Celery("nowhere", broker="memory://", set_as_current=False)
    celery.conf.task_ignore_result = True

    @celery.task(name="t.nowhere", shared=False)
    def nowhere() -> int:
        return 1

    tracking.install(celery, database_url="sqlite:///.reconciler/state.db")
    try:
        with caplog.at_level(logging.WARNING, logger="reconciler.tracking"):
            assert celery.tasks["t.nowhere"].apply(task_id="n-1").get() == 1
            assert tracking.install(celery).flush(10)
    finally:
        tracking.uninstall(celery)
    assert not (tmp_path / ".reconciler").exists()
    assert "the database .reconciler/state.db does not exist" in caplog.text
