"""``reconcile doctor``: each check's verdict, the skips after a failure, the exit code.

Time is a parameter (``run_checks(now=...)``); the worker checks talk to a real worker
over a real Redis broker.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.ops.doctor import healthy, run_checks
from reconciler.settings import Settings
from reconciler.store.database import Database
from reconciler.store.tables import BeatHeartbeat, Task
from tests.support import Process, wait_for

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
APP = "reconciler.demo:app"


def add_task(database: Database, name: str, celery_name: str = "app.worker.test_celery",
             **values: Any) -> None:  # fmt: skip
    spec = {
        "name": name,
        "task": celery_name,
        **({"at": values.pop("at")} if "at" in values else {}),
        **values.pop("spec_extra", {}),
    }
    with database.session() as session:
        session.add(
            Task(
                name=name, owner="ops", type=values.pop("type", "periodic"), task=celery_name,
                spec=spec, content_hash="0" * 64, created_at=NOW, updated_at=NOW,
                source_path=f"tasks.d/{name}.yaml", source_line=1, **values,
            )
        )  # fmt: skip


def beat_ticked(database: Database, at: dt.datetime) -> None:
    with database.session() as session:
        session.add(
            BeatHeartbeat(instance="b1", hostname="h", pid=1, started_at=at, last_tick_at=at)
        )


def by_name(settings: Settings, **kwargs: Any) -> dict[str, Any]:
    return {check.name: check for check in run_checks(settings, now=NOW, timeout=0.5, **kwargs)}


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    return Settings.resolve(
        tmp_path / "tasks.d", f"sqlite:///{tmp_path}/state.db",
        f"sqla+sqlite:///{tmp_path}/broker.db", APP,
    )  # fmt: skip


def test_the_task_checks_find_overdue_disabled_and_past_scheduled_tasks(
    sqlite_settings: Settings,
) -> None:
    database = Database.open(sqlite_settings.database_url)
    beat_ticked(database, NOW - dt.timedelta(seconds=2))
    add_task(database, "fine", next_run_at=NOW + dt.timedelta(minutes=1))
    add_task(database, "late", next_run_at=NOW - dt.timedelta(minutes=5))
    add_task(database, "just-due", next_run_at=NOW - dt.timedelta(seconds=30))
    add_task(database, "off", enabled=False)
    add_task(database, "gone", deleted_at=NOW, enabled=False)
    add_task(database, "once", type="scheduled", at="2026-05-01T00:00:00+00:00")
    add_task(database, "ran", type="scheduled", at="2026-05-01T00:00:00+00:00", last_run_at=NOW)
    add_task(database, "unknown", celery_name="app.nowhere")
    database.dispose()

    checks = by_name(sqlite_settings)
    assert list(checks) == [
        "database", "sync", "broker", "workers", "registered", "beat", "watch", "overdue",
        "queues", "disabled", "secret_env", "scheduled", "window",
    ]  # fmt: skip
    assert {name: c.status for name, c in checks.items()} == {
        "database": "ok", "sync": "warn", "broker": "ok", "workers": "warn", "registered": "fail",
        "beat": "ok", "watch": "ok", "overdue": "fail", "queues": "ok", "disabled": "warn",
        "secret_env": "ok", "scheduled": "warn", "window": "ok",
    }  # fmt: skip
    assert checks["overdue"].details == ["late: due 5 min ago"]
    assert checks["disabled"].details == ["off (tasks.d/off.yaml:1)"]
    assert checks["scheduled"].details == ["once: at 2026-05-01T00:00:00+00:00, never ran"]
    assert checks["registered"].details == ["unknown: app.nowhere (tasks.d/unknown.yaml:1)"]
    assert "cannot broadcast" in checks["workers"].message
    assert not healthy(list(checks.values()))


def test_a_task_whose_active_window_ended_is_a_warning(sqlite_settings: Settings) -> None:
    database = Database.open(sqlite_settings.database_url)
    beat_ticked(database, NOW - dt.timedelta(seconds=2))
    window = {"timezone": "Europe/Berlin", "active": {"until": "2026-06-01T13:00"}}
    add_task(database, "ended", spec_extra=window)  # 13:00 in Berlin is 11:00 UTC
    later = {"timezone": "UTC", "active": {"from": "2026-01-01", "until": "2026-06-01"}}
    add_task(database, "today", spec_extra=later)  # a date as until: the whole day
    add_task(database, "off", enabled=False, spec_extra=window)
    database.dispose()
    check = by_name(sqlite_settings)["window"]
    assert check.status == "warn"
    assert check.details == ["ended: active until 2026-06-01T13:00 (Europe/Berlin)"]
    assert check.message == "1 task(s) have an active window that has ended and will not run"


def test_unset_secret_env_variables_of_enabled_tasks_are_a_warning(
    sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCTOR_SET_VAR", "x")
    monkeypatch.delenv("DOCTOR_UNSET_A", raising=False)
    monkeypatch.delenv("DOCTOR_UNSET_B", raising=False)
    ref = {"secret_env": "DOCTOR_UNSET_A"}
    database = Database.open(sqlite_settings.database_url)
    add_task(
        database,
        "needs",
        spec_extra={
            "kwargs": {"db": {"password": ref}},
            "args": [{"secret_env": "DOCTOR_SET_VAR"}, [{"secret_env": "DOCTOR_UNSET_B"}]],
        },
    )
    add_task(database, "fine", spec_extra={"kwargs": {"p": {"secret_env": "DOCTOR_SET_VAR"}}})
    add_task(database, "off", enabled=False, spec_extra={"kwargs": {"p": ref}})
    add_task(database, "gone", deleted_at=NOW, spec_extra={"kwargs": {"p": ref}})
    database.dispose()

    check = by_name(sqlite_settings)["secret_env"]
    assert check.status == "warn"
    assert check.message.startswith("1 enabled task(s) name environment variables")
    assert check.details == ["needs: DOCTOR_UNSET_B, DOCTOR_UNSET_A (tasks.d/needs.yaml:1)"]
    assert "beat" in (check.fix or "")


def test_a_stale_or_missing_beat_heartbeat_fails_with_the_command_to_start_beat(
    sqlite_settings: Settings,
) -> None:
    database = Database.open(sqlite_settings.database_url)
    assert by_name(sqlite_settings)["beat"].message == (
        "no Beat scheduler is running against this database"
    )
    beat_ticked(database, NOW - dt.timedelta(minutes=3))
    database.dispose()
    beat = by_name(sqlite_settings)["beat"]
    assert (beat.status, beat.message) == (
        "fail",
        "no Beat scheduler is alive: the last tick was 3 min ago",
    )
    assert beat.fix == f"start it: celery -A {APP} beat -S reconciler.beat:DatabaseScheduler"
    assert beat.details == ["b1: not ticking, last tick 3 min ago (pid 1 on h)"]


def test_an_unreachable_database_fails_and_the_checks_that_need_it_are_skipped(
    tmp_path: Path,
) -> None:
    settings = Settings.resolve(
        "tasks.d", "postgresql://postgres:secret@127.0.0.1:1/nothing",
        f"sqla+sqlite:///{tmp_path}/broker.db", APP,
    )  # fmt: skip
    checks = by_name(settings)
    assert checks["database"].status == "fail"
    assert checks["database"].message.startswith("postgresql://postgres:***@127.0.0.1:1/nothing")
    assert "secret" not in checks["database"].message
    assert checks["broker"].status == "ok"
    assert {checks[n].status for n in ("registered", "beat", "overdue", "disabled")} == {"skip"}


def test_a_database_without_schema_fails_with_the_upgrade_command(tmp_path: Path) -> None:
    settings = Settings.resolve(
        "tasks.d", f"sqlite:///{tmp_path}/empty.db", f"sqla+sqlite:///{tmp_path}/b.db", APP
    )
    check = by_name(settings)["database"]
    assert (check.status, check.fix) == (
        "fail", "run 'reconcile db upgrade' (or any reconcile command that opens it)"
    )  # fmt: skip


@pytest.mark.redis
def test_an_unreachable_broker_fails_and_workers_are_not_asked(sqlite_settings: Settings) -> None:
    settings = Settings.resolve(
        sqlite_settings.tasks_dir, sqlite_settings.database_url, "redis://127.0.0.1:1/0", APP
    )
    checks = by_name(settings)
    assert checks["broker"].status == "fail"
    assert checks["broker"].fix == (
        "start the broker, or correct --broker-url / RECONCILER_BROKER_URL"
    )
    assert checks["workers"].status == "skip"


@pytest.mark.e2e
def test_workers_are_pinged_and_tasks_no_worker_registers_are_named(
    tmp_path: Path, redis_url: str
) -> None:
    settings = Settings.resolve(tmp_path, f"sqlite:///{tmp_path}/state.db", redis_url, APP)
    database = Database.open(settings.database_url)
    add_task(database, "fine", next_run_at=NOW + dt.timedelta(minutes=1))
    add_task(database, "orphan", celery_name="app.worker.removed_task")
    database.dispose()

    checks = by_name(settings)
    assert (checks["workers"].status, checks["workers"].message) == (
        "fail", "no worker answered within 0.5 s"
    )  # fmt: skip
    assert checks["registered"].status == "skip"

    argv = [sys.executable, "-m", "celery", "-A", APP, "worker", "--pool", "solo", "-l", "INFO",
            "--hostname", "doc@test", "--without-mingle", "--without-gossip"]  # fmt: skip
    env = {"RECONCILER_BROKER_URL": redis_url, "RECONCILER_DATABASE_URL": settings.database_url}
    with Process(argv, tmp_path / "worker.log", env=env) as worker:
        wait_for(lambda: "ready." in worker.output(), 30, message="the worker")
        checks = wait_for(
            lambda: (c := by_name(settings))["workers"].status == "ok" and c, 10,
            message="the worker to answer",
        )  # fmt: skip
    assert checks["workers"].message == "1 worker answered: doc@test"
    assert checks["registered"].status == "fail"
    assert checks["registered"].details == [
        "orphan: app.worker.removed_task (tasks.d/orphan.yaml:1)"
    ]


def test_the_command_prints_marks_and_fixes_and_exits_1_on_a_failure(
    sqlite_settings: Settings,
) -> None:
    Database.open(sqlite_settings.database_url).dispose()
    args = ["doctor", "--database-url", sqlite_settings.database_url,
            "--broker-url", sqlite_settings.broker_url, "--timeout", "0.5"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith("✓ database    sqlite:///")
    assert "! workers     this broker cannot broadcast" in result.output
    assert "✗ beat        no Beat scheduler is running against this database" in result.output
    assert "              fix: start it: celery -A reconciler.demo:app beat" in result.output
    assert "! sync        never applied: run 'reconcile'" in result.output
    assert lines[-1] == "1 check(s) failed, 2 warning(s)"

    result = CliRunner().invoke(main, [*args, "--format", "json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["ok"] is False
    assert [c["name"] for c in report["checks"]][:3] == ["database", "sync", "broker"]
    assert set(report["checks"][0]) == {"name", "status", "message", "fix", "details"}
