"""Tracking in one process: what is stored, which executions are recorded, failures ignored.

Tasks run eagerly (``task.apply()`` sends the same prerun/success/failure signals a
worker sends) and publish to Celery's in-memory broker; the end-to-end tests run the
real worker.
"""

from __future__ import annotations

import contextlib
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
from reconciler.vocabulary import Header

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


def add_rows(url: str, *rows: Task | TaskExecution) -> None:
    database = Database.open(url)
    with database.session() as session:
        session.add_all(rows)
    database.dispose()


def managed(name: str, args: list[Any], deleted_at: dt.datetime | None = None) -> Task:
    """The row of managed task ``name`` (Celery task ``t.<name>``)."""
    celery_name = f"t.{name}"
    return Task(
        name=name, owner="ops", type="async", task=celery_name,
        spec={"name": name, "task": celery_name, "args": args, "kwargs": {}},
        content_hash="0" * 64, created_at=T0, updated_at=T0, deleted_at=deleted_at,
    )  # fmt: skip


@contextlib.contextmanager
def one_task_app(name: str, returns: int, database_url: str) -> Iterator[Celery]:
    """An app whose one task ``t.<name>`` returns ``returns``, tracked into ``database_url``."""
    celery = Celery(name, broker="memory://", set_as_current=False)
    celery.conf.task_ignore_result = True

    @celery.task(name=f"t.{name}", shared=False)
    def task() -> int:
        return returns

    tracking.install(celery, database_url=database_url)
    try:
        yield celery
    finally:
        tracking.uninstall(celery)


@pytest.fixture
def app(sqlite_url: str) -> Iterator[Celery]:
    add_rows(sqlite_url, managed("report", []), managed("old", [], deleted_at=T0))
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
            headers={Header.TRIGGER: "schedule"},
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


@pytest.mark.postgres
def test_nul_characters_are_stored_as_a_standin_not_a_failed_batch(postgres_url: str) -> None:
    """PostgreSQL's text and jsonb refuse NUL: the row is kept with U+FFFD in its place."""
    add_rows(postgres_url, managed("nul", []), managed("report", []))
    celery = Celery("nul-test", broker="memory://", set_as_current=False)
    celery.conf.task_ignore_result = True

    @celery.task(name="t.nul", shared=False)
    def nul(text: str) -> None:
        raise ValueError(f"bad byte in {text}")

    @celery.task(name="t.report", shared=False)
    def report(text: str) -> dict[str, str]:
        return {f"k{text}": text}

    tracking.install(celery, database_url=postgres_url)
    try:
        nul.apply(args=["a\x00b"], task_id="nul-1")
        report.apply(args=["c\x00"], task_id="nul-2")
        failed, succeeded = rows(postgres_url, celery)
    finally:
        tracking.uninstall(celery)
    assert (failed.status, failed.args, failed.error) == (
        "failure", ["a\ufffdb"], "ValueError: bad byte in a\ufffdb",
    )  # fmt: skip
    assert failed.traceback is not None and "\x00" not in failed.traceback
    assert (succeeded.status, succeeded.result) == ("success", {"kc\ufffd": "c\ufffd"})


def test_a_database_that_is_away_is_logged_and_never_fails_the_task(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("reconciler.tracking.writer.RETRY_FOR", 0.3)
    away = one_task_app("away", 42, "postgresql://nobody@127.0.0.1:1/nothing")
    with away as celery, caplog.at_level(logging.WARNING, logger="reconciler.tracking"):
        result = celery.tasks["t.away"].apply(task_id="away-1")
        assert tracking.install(celery).flush(10)
    assert result.get() == 42
    messages = [record.getMessage() for record in caplog.records]
    assert any("cannot write to the database" in message for message in messages)
    assert any("dropped" in message for message in messages)


def test_an_embedded_database_that_does_not_exist_is_not_created(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    nowhere = one_task_app("nowhere", 1, "sqlite:///.reconciler/state.db")
    with nowhere as celery, caplog.at_level(logging.WARNING, logger="reconciler.tracking"):
        assert celery.tasks["t.nowhere"].apply(task_id="n-1").get() == 1
        assert tracking.install(celery).flush(10)
    assert not (tmp_path / ".reconciler").exists()
    assert "the database .reconciler/state.db does not exist" in caplog.text


# --- deliveries of the reconciler's messages are claimed before they run -----------------

SCHEDULED = {Header.TRIGGER: "schedule"}


def scheduled_row(url: str, celery_task_id: str, status: str = "pending") -> None:
    """The row as beat writes it before it publishes the message (task ``counted``)."""
    add_rows(
        url,
        TaskExecution(
            task_name="counted", celery_task_id=celery_task_id, trigger="schedule",
            scheduled_for=T0, status=status, queued_at=T0, args=[1], kwargs={},
            started_at=None if status == "pending" else T0,
            finished_at=T0 if status == "success" else None,
        ),
    )  # fmt: skip


def add_counted_task(url: str) -> None:
    """The managed task ``counted`` (Celery task ``t.counted``)."""
    add_rows(url, managed("counted", [1]))


@pytest.fixture
def counted(app: Celery, sqlite_url: str) -> tuple[Any, list[str]]:
    """A task that notes each run of its body (by Celery task id)."""
    add_counted_task(sqlite_url)
    calls: list[str] = []

    @app.task(name="t.counted", shared=False, bind=True)
    def counted(self: Any, rows: int) -> int:
        calls.append(self.request.id)
        return rows

    app.finalize()  # as a worker does before its first task: install hooks every task
    assert "t.counted" in app.tasks and tracking.hook_tasks(app) == 0
    return counted, calls


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_delivery_of_an_execution_that_finished_elsewhere_does_not_run(
    app: Celery, sqlite_url: str, counted: tuple[Any, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    task, calls = counted
    scheduled_row(sqlite_url, "slot-1")
    with caplog.at_level(logging.INFO, logger="reconciler.tracking"):
        first = task.apply(args=[1], task_id="slot-1", headers=SCHEDULED)
        assert tracking.install(app).flush()
        second = task.apply(args=[1], task_id="slot-1", headers=SCHEDULED)
    assert calls == ["slot-1"]
    assert (first.state, second.state) == ("SUCCESS", "IGNORED")
    (row,) = rows(sqlite_url, app)
    assert (row.status, row.trigger, row.result, row.duplicates) == ("success", "schedule", 1, 1)
    assert row.started_at is not None and row.duration_ms is not None
    (warning,) = warnings_of(caplog)
    assert warning == (
        "duplicate delivery of t.counted[slot-1] not run: its execution ended (success) elsewhere"
    )


def test_a_delivery_of_an_execution_running_elsewhere_does_not_run(
    app: Celery, sqlite_url: str, counted: tuple[Any, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    task, calls = counted
    scheduled_row(sqlite_url, "slot-2", status="started")
    with caplog.at_level(logging.WARNING, logger="reconciler.tracking"):
        assert task.apply(args=[1], task_id="slot-2", headers=SCHEDULED).state == "IGNORED"
    assert calls == []
    (row,) = rows(sqlite_url, app)
    assert (row.status, row.duplicates, row.started_at) == ("started", 1, T0)
    assert warnings_of(caplog) == [
        "duplicate delivery of t.counted[slot-2] not run: its execution is running elsewhere"
    ]


def test_messages_published_outside_the_reconciler_are_not_claimed(
    app: Celery, sqlite_url: str, counted: tuple[Any, list[str]]
) -> None:
    task, calls = counted
    task.apply(args=[1], task_id="ext-1")
    task.apply(args=[1], task_id="ext-1")
    assert calls == ["ext-1", "ext-1"]  # at least once: nothing tells a repeat apart
    (row,) = rows(sqlite_url, app)
    assert (row.trigger, row.status, row.duplicates) == ("external", "success", 0)


def test_tracers_built_before_install_are_rebuilt_with_the_claim(sqlite_url: str) -> None:
    from celery.app.trace import build_tracer

    celery = Celery("early", broker="memory://", set_as_current=False)
    celery.conf.task_ignore_result = True
    calls: list[str] = []

    @celery.task(name="t.counted", shared=False)
    def early(rows: int) -> int:
        calls.append("ran")
        return rows

    celery.finalize()
    early.__trace__ = build_tracer("t.counted", early, app=celery)  # as a worker does
    tracking.install(celery, database_url=sqlite_url)
    try:
        scheduled_row(sqlite_url, "slot-3", status="success")
        request = {"id": "slot-3", "retries": 0, Header.TRIGGER: "schedule"}
        traced = early.__trace__("slot-3", [1], {}, request)
        assert calls == []
        assert traced.info is not None and traced.info.state == "IGNORED"
        (row,) = rows(sqlite_url, celery)
        assert row.duplicates == 1
    finally:
        tracking.uninstall(celery)


def test_a_tasks_own_before_start_still_runs_once_after_the_claim(
    app: Celery, sqlite_url: str
) -> None:
    seen: list[str] = []

    class Base(app.Task):  # type: ignore[name-defined,misc]
        def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
            seen.append("base")

    class Audited(Base):  # calls its parent: both are hooked, the claim is made once
        def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
            seen.append("audited")
            super().before_start(task_id, args, kwargs)

    @app.task(name="t.counted", shared=False, base=Audited)
    def audited(rows: int) -> int:
        seen.append("body")
        return rows

    app.finalize()
    app.register_task(Base())  # registered late: hooked when the worker starts
    assert tracking.hook_tasks(app) == 1
    add_counted_task(sqlite_url)
    scheduled_row(sqlite_url, "slot-4")
    assert audited.apply(args=[1], task_id="slot-4", headers=SCHEDULED).state == "SUCCESS"
    assert seen == ["audited", "base", "body"]
    (row,) = rows(sqlite_url, app)
    assert (row.status, row.duplicates) == ("success", 0)


def test_an_unreachable_database_at_claim_time_runs_the_task_and_says_so(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("reconciler.tracking.writer.RETRY_FOR", 0.3)
    celery = Celery("claims-away", broker="memory://", set_as_current=False)
    celery.conf.task_ignore_result = True
    calls: list[str] = []

    @celery.task(name="t.away", shared=False)
    def away() -> int:
        calls.append("ran")
        return 42

    tracking.install(celery, database_url="postgresql://nobody@127.0.0.1:1/nothing")
    celery.finalize()
    try:
        with caplog.at_level(logging.INFO, logger="reconciler.tracking"):
            for task_id in ("away-1", "away-2"):
                assert away.apply(task_id=task_id, headers=SCHEDULED).get() == 42
            assert tracking.install(celery).flush(10)
    finally:
        tracking.uninstall(celery)
    assert calls == ["ran", "ran"]
    unavailable = [m for m in warnings_of(caplog) if "claims unavailable" in m]
    assert len(unavailable) == 1  # once per outage; each unclaimed run at INFO
    assert "runs unclaimed" in caplog.text and "t.away[away-2]" in caplog.text
