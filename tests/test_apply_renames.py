"""Renames on SQLite and PostgreSQL: ``previous_names`` moves a task's row under its new
name with its history, statistics, alerts, counters and schedule anchor, or is refused
(docs/plan-and-apply.md, "Renames")."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from reconciler.apply import InvalidTasks, reconcile
from reconciler.core.plan import RenameRefused
from reconciler.store.database import Database
from reconciler.store.rollup import roll_up
from reconciler.store.tables import Alert, ApplyRecord, Task, TaskExecution, TaskStatsDay
from tests.factories import task_yaml
from tests.webseed import T0, add_execution

H = dt.timedelta(hours=1)
NOW = T0 + 48 * H
ROW_STATE = (
    "id",
    "created_at",
    "schedule_anchor",
    "next_run_at",
    "last_run_at",
    "skipped_count",
    "missed_count",
    "last_execution_id",
    "last_status",
    "last_success_at",
    "last_failure_at",
    "consecutive_failures",
)


def write(tasks: Path, name: str, **fields: Any) -> None:
    tasks.mkdir(parents=True, exist_ok=True)
    for old in tasks.glob("*.yaml"):
        old.unlink()
    (tasks / "task.yaml").write_text(task_yaml(name, **fields))


def row_state(db: Database, name: str) -> dict[str, Any]:
    with db.session() as session:
        row = session.execute(select(Task).where(Task.name == name)).scalar_one()
        return {column: getattr(row, column) for column in ROW_STATE}


def recorded_under(db: Database, name: str) -> tuple[int, int, int]:
    """Executions, days of statistics and alerts recorded under ``name``."""
    with db.session() as session:
        return (
            session.scalar(select(func.count()).where(TaskExecution.task_name == name)) or 0,
            session.scalar(select(func.count()).where(TaskStatsDay.task_name == name)) or 0,
            session.scalar(select(func.count()).where(Alert.task_name == name)) or 0,
        )


def names(db: Database) -> dict[str, bool]:
    """Every task row's name, and whether it is live."""
    with db.session() as session:
        return {
            name: deleted is None
            for name, deleted in session.execute(select(Task.name, Task.deleted_at))
        }


def with_history(db: Database, name: str) -> None:
    """Executions (two successes, then two failures), their daily statistics, an open
    alert, and the schedule state beat keeps on the row."""
    with db.session() as session:
        for hours, status in ((0, "success"), (1, "success"), (25, "failure"), (26, "failure")):
            add_execution(session, name, status=status, queued_at=T0 + hours * H)
        session.add(
            Alert(
                task_name=name,
                condition="failures_in_a_row",
                episode="e1",
                owner="billing",
                since=T0 + 26 * H,
                fired_at=T0 + 26 * H,
                summary="2 failures in a row",
                details={},
            )
        )
        session.execute(
            update(Task)
            .where(Task.name == name)
            .values(
                schedule_anchor=T0,
                next_run_at=T0 + 49 * H,
                last_run_at=T0 + 26 * H,
                skipped_count=3,
                missed_count=2,
            )
        )
    assert roll_up(db, NOW, time.monotonic() + 30)[0] == 2  # two days finished


def test_a_rename_keeps_the_row_its_history_and_its_schedule(db: Database, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.d"
    write(tasks, "heartbeat", interval="1h")
    reconcile(db, tasks, now=T0)
    with_history(db, "heartbeat")
    before = row_state(db, "heartbeat")
    assert before["consecutive_failures"] == 2 and before["last_status"] == "failure"
    assert recorded_under(db, "heartbeat") == (4, 2, 1)

    write(tasks, "heartbeat-v2", interval="1h", previous_names=["heartbeat"])
    plan = reconcile(db, tasks, dry_run=True, now=NOW).plan
    assert plan.summary == "Plan: 0 to create, 0 to update, 1 to rename, 0 to delete, 0 unchanged."
    assert [(c.previous, c.name, c.fields) for c in plan.renames] == [
        ("heartbeat", "heartbeat-v2", ())
    ]
    result = reconcile(db, tasks, now=NOW)
    assert result.applied

    assert names(db) == {"heartbeat-v2": True}
    assert row_state(db, "heartbeat-v2") == before  # the same row, anchor and counters
    assert recorded_under(db, "heartbeat-v2") == (4, 2, 1)
    assert recorded_under(db, "heartbeat") == (0, 0, 0)
    with db.session() as session:
        log = session.scalars(select(ApplyRecord).order_by(ApplyRecord.id.desc())).first()
        assert log is not None
        assert (log.created, log.updated, log.deleted) == (0, 1, 0)
        assert log.updated_names == ["heartbeat-v2"]
        # The health triggers go on counting under the new name.
        add_execution(session, "heartbeat-v2", status="failure", queued_at=NOW)
    assert row_state(db, "heartbeat-v2")["consecutive_failures"] == 3
    # The file keeps previous_names: the next plan has nothing to do.
    assert not reconcile(db, tasks, now=NOW + H).plan


def test_a_rename_with_a_new_schedule_restarts_it(db: Database, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.d"
    write(tasks, "heartbeat", interval="1h", owner="ops")
    reconcile(db, tasks, now=T0)
    with_history(db, "heartbeat")
    write(tasks, "heartbeat-v2", interval="2h", owner="ops", previous_names=["heartbeat"])
    plan = reconcile(db, tasks, now=NOW).plan
    (change,) = plan.renames
    assert [(f.field, f.old, f.new) for f in change.fields] == [("interval", "1h", "2h")]
    state = row_state(db, "heartbeat-v2")
    assert (state["schedule_anchor"], state["next_run_at"]) == (NOW, NOW + 2 * H)
    assert (state["last_run_at"], state["skipped_count"], state["consecutive_failures"]) == (
        T0 + 26 * H,
        3,
        2,
    )
    assert recorded_under(db, "heartbeat-v2") == (4, 2, 1)


def test_a_rename_is_refused_while_the_old_name_is_defined(db: Database, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.d"
    write(tasks, "heartbeat", interval="1h")
    reconcile(db, tasks, now=T0)
    (tasks / "v2.yaml").write_text(
        task_yaml("heartbeat-v2", interval="1h", previous_names=["heartbeat"])
    )
    with pytest.raises(InvalidTasks) as info:
        reconcile(db, tasks, now=NOW)
    (problem,) = info.value.diagnostics
    assert (Path(problem.path).name, problem.line, problem.field) == (
        "v2.yaml",
        6,
        "previous_names[0]",
    )
    assert problem.message == f"'heartbeat' is still defined at {tasks / 'task.yaml'}:1"
    assert names(db) == {"heartbeat": True}
    with db.session() as session:
        outcomes = session.scalars(select(ApplyRecord.outcome).order_by(ApplyRecord.id))
        assert outcomes.all() == ["applied", "invalid"]


def test_a_rename_onto_a_task_in_the_database_is_refused(db: Database, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.d"
    (tasks).mkdir()
    (tasks / "a.yaml").write_text(task_yaml("heartbeat"))
    (tasks / "b.yaml").write_text(task_yaml("heartbeat-v2"))
    reconcile(db, tasks, now=T0)
    (tasks / "a.yaml").unlink()
    (tasks / "b.yaml").write_text(task_yaml("heartbeat-v2", previous_names=["heartbeat"]))
    with pytest.raises(RenameRefused, match="both are tasks in the database"):
        reconcile(db, tasks, dry_run=True, now=NOW)
    with pytest.raises(RenameRefused):
        reconcile(db, tasks, now=NOW)
    assert names(db) == {"heartbeat": True, "heartbeat-v2": True}
    with db.session() as session:
        outcomes = session.scalars(select(ApplyRecord.outcome).order_by(ApplyRecord.id))
        assert outcomes.all() == ["applied", "refused"]


def test_a_deleted_task_comes_back_under_its_new_name(db: Database, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.d"
    write(tasks, "heartbeat", interval="1h")
    (tasks / "keep.yaml").write_text(task_yaml("keep"))
    reconcile(db, tasks, now=T0)
    with_history(db, "heartbeat")
    before = row_state(db, "heartbeat")
    (tasks / "task.yaml").unlink()
    reconcile(db, tasks, now=NOW)
    assert names(db) == {"heartbeat": False, "keep": True}

    (tasks / "task.yaml").write_text(
        task_yaml("heartbeat-v2", interval="1h", previous_names=["heartbeat"])
    )
    plan = reconcile(db, tasks, now=NOW + H).plan
    assert [(c.previous, c.revived) for c in plan.renames] == [("heartbeat", True)]
    assert names(db) == {"heartbeat-v2": True, "keep": True}
    after = row_state(db, "heartbeat-v2")
    # Like a revive: the schedule restarts from the apply; the rest of the row is kept.
    assert (after["schedule_anchor"], after["next_run_at"]) == (NOW + H, NOW + 2 * H)
    kept = [c for c in ROW_STATE if c not in ("schedule_anchor", "next_run_at")]
    assert {c: after[c] for c in kept} == {c: before[c] for c in kept}
    assert recorded_under(db, "heartbeat-v2") == (4, 2, 1)
