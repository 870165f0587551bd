"""``reconcile doctor``'s ``queues`` check: executions pending past a threshold, named by
queue, with whether any worker consumes it (asked over Redis, or judged from the rows on
the embedded broker)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler import demo
from reconciler.beat.manual import trigger
from reconciler.cli import main
from reconciler.ops.doctor import run_checks
from reconciler.settings import Settings
from reconciler.store.database import Database
from reconciler.store.tables import TaskExecution
from tests.factories import task_yaml
from tests.ops.test_doctor import APP, NOW, add_task
from tests.support import Process, wait_for
from tests.webseed import add_execution

M = dt.timedelta(minutes=1)


def pending(database: Database, name: str, queued: dt.datetime, published: bool = True) -> None:
    with database.session() as session:
        row = add_execution(session, name, status="pending", queued_at=queued, trigger="manual")
        row.published_at = queued if published else None


def test_on_the_embedded_broker_consumers_are_judged_from_the_rows(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings.resolve(
        tmp_path / "tasks.d", database_url, f"sqla+sqlite:///{tmp_path}/broker.db", APP
    )
    database = Database.open(database_url)
    add_task(database, "nightly-report", spec_extra={"options": {"queue": "reports"}})
    add_task(database, "heartbeat")
    add_task(database, "quiet")
    pending(database, "nightly-report", NOW - 10 * M)
    pending(database, "nightly-report", NOW - 7 * M)
    pending(database, "heartbeat", NOW - 8 * M)
    pending(database, "heartbeat", NOW - 2 * M)  # not yet past the threshold
    pending(database, "quiet", NOW - 30 * M, published=False)  # claimed, never sent: beat's
    with database.session() as session:  # a worker ran a task of the default queue lately
        add_execution(session, "heartbeat", queued_at=NOW - 3 * M, worker="w1@host")
    database.dispose()

    checks = {c.name: c for c in run_checks(settings, now=NOW, timeout=0.5)}
    queues = checks["queues"]
    assert queues.status == "fail"
    assert queues.message == (
        "3 execution(s) pending for more than 5 min in 2 queue(s); the broker cannot "
        "broadcast, so consumers were judged from the rows alone"
    )
    assert queues.details == [
        "celery: 1 pending, oldest 8 min (heartbeat); executions of its tasks queued in the "
        "last 10 min ran on w1@host",
        "reports: 2 pending, oldest 10 min (nightly-report); none of the executions of its "
        "tasks queued in the last 10 min ran",
    ]
    assert queues.fix == (
        "start a worker that consumes 'reports': celery -A reconciler.demo:app worker "
        "-Q reports (or add it to a worker's -Q)"
    )

    later = {c.name: c for c in run_checks(settings, now=NOW, pending_after=15 * M)}
    assert (later["queues"].status, later["queues"].message) == (
        "ok", "no execution has been pending for more than 15 min"
    )  # fmt: skip
    args = ["doctor", "--database-url", database_url, "--broker-url", settings.broker_url,
            "--pending-after", "86400000", "--format", "json"]  # fmt: skip
    report = json.loads(CliRunner().invoke(main, args).output)
    assert [c["status"] for c in report["checks"] if c["name"] == "queues"] == ["ok"]


@pytest.mark.e2e
def test_a_queue_no_worker_consumes_is_named_by_asking_the_workers(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real worker consuming only ``celery``; a task routed to ``reports`` waits."""
    tasks = tmp_path / "tasks.d"
    tasks.mkdir()
    (tasks / "report.yaml").write_text(
        task_yaml("report", type="async", crontab=None, options={"queue": "reports"})
    )
    (tasks / "smoke.yaml").write_text(task_yaml("smoke", type="async", crontab=None))
    database_url = f"sqlite:///{tmp_path}/state.db"
    settings = Settings.resolve(tasks, database_url, redis_url, APP)
    applied = CliRunner().invoke(main, ["--tasks-dir", str(tasks), "--database-url", database_url])
    assert applied.exit_code == 0, applied.output

    argv = [sys.executable, "-m", "celery", "-A", APP, "worker", "--pool", "solo", "-l", "INFO",
            "-Q", "celery", "--hostname", "only-celery@test", "--without-mingle",
            "--without-gossip"]  # fmt: skip
    env = {"RECONCILER_BROKER_URL": redis_url, "RECONCILER_DATABASE_URL": database_url}
    monkeypatch.setattr(demo.app.conf, "broker_url", redis_url)
    database = Database.open(database_url)
    try:
        with Process(argv, tmp_path / "worker.log", env=env) as worker:
            wait_for(lambda: "ready." in worker.output(), 30, message="the worker")
            sent = {name: trigger(database, demo.app, name).celery_task_id
                    for name in ("report", "smoke")}  # fmt: skip

            def status(name: str) -> str | None:
                with database.session() as session:
                    return session.scalar(
                        TaskExecution.__table__.select()
                        .with_only_columns(TaskExecution.status)
                        .where(TaskExecution.celery_task_id == sent[name])
                    )

            wait_for(lambda: status("smoke") == "success", 30, message="smoke to run")
            assert status("report") == "pending"
            checks = {
                c.name: c
                for c in run_checks(settings, now=dt.datetime.now(dt.UTC) + 10 * M, timeout=1.0)
            }
    finally:
        database.dispose()
    assert checks["workers"].message == "1 worker answered: only-celery@test"
    queues = checks["queues"]
    assert (queues.status, queues.message) == (
        "fail", "1 execution(s) pending for more than 5 min in 1 queue(s)"
    )  # fmt: skip
    assert queues.details == ["reports: 1 pending, oldest 10 min (report); no worker consumes it"]
    assert queues.fix is not None and "-Q reports" in queues.fix
