"""The reconciler's side of the store, on SQLite and PostgreSQL: reads, writes, the lock."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update

from reconciler.core.plan import make_plan
from reconciler.core.schedule import first_slot
from reconciler.core.spec import TaskSpec
from reconciler.errors import LockTimeout
from reconciler.store import tasks as store
from reconciler.store.database import Database
from reconciler.store.tables import ApplyRecord, ChangeMarker, Task, TaskExecution
from tests.core.test_plan import Sourced
from tests.factories import spec

T0 = dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(hours=1)
LOG = store.ApplyLog(tasks_dir="tasks.d", git_commit=None, git_dirty=None, duration_ms=5)


def apply(db: Database, specs: list[TaskSpec], now: dt.datetime = T0, **kwargs: Any) -> Any:
    with db.session() as session:
        store.lock(session, 5)
        state = store.read_current(session)
        plan = make_plan([Sourced(s, f"tasks.d/{s.name}.yaml", 1) for s in specs], state.live)
        store.write_plan(session, plan, state, now=now, next_run=first_slot, log=LOG, **kwargs)
    return plan


def row(db: Database, name: str) -> Task:
    with db.session() as session:
        found = session.scalars(select(Task).where(Task.name == name)).one()
        session.expunge(found)
        return found


def marker(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(ChangeMarker.seq).where(ChangeMarker.id == 1)) or 0)


def test_create_sets_schedule_state_change_seq_and_version(db: Database) -> None:
    apply(
        db,
        [
            spec("cron"),
            spec("every", crontab=None, interval={"minutes": 5}),
            spec("off", enabled=False),
            spec("now", type="async", crontab=None),
        ],
    )
    assert marker(db) == 1
    cron = row(db, "cron")
    assert cron.version == 1 and cron.change_seq == 1
    assert cron.schedule_anchor == T0
    assert cron.next_run_at == dt.datetime(2026, 1, 6, 1, 0, tzinfo=dt.UTC)
    assert cron.spec == spec("cron").canonical()
    assert cron.content_hash == spec("cron").content_hash
    assert (cron.owner, cron.type, cron.enabled) == ("billing", "periodic", True)
    assert (cron.source_path, cron.source_line) == ("tasks.d/cron.yaml", 1)
    assert cron.created_at == T0 and cron.deleted_at is None
    assert row(db, "every").next_run_at == T0 + dt.timedelta(minutes=5)
    assert row(db, "off").next_run_at is None
    assert row(db, "now").next_run_at == T0


def test_update_bumps_version_and_resets_schedule_only_when_it_changed(db: Database) -> None:
    apply(db, [spec("a"), spec("b")])
    later = T0 + dt.timedelta(days=3)
    with db.session() as session:  # beat moved on since
        session.execute(update(Task).values(next_run_at=later, last_run_at=T0))
    apply(db, [spec("a", description="new words"), spec("b", crontab="30 1 * * *")], now=T1)
    a, b = row(db, "a"), row(db, "b")
    assert (a.version, a.change_seq, a.description) == (2, 2, "new words")
    assert a.next_run_at == later and a.schedule_anchor == T0  # schedule untouched
    assert (b.version, b.change_seq) == (2, 2)
    assert b.schedule_anchor == T1
    assert b.next_run_at == dt.datetime(2026, 1, 6, 1, 30, tzinfo=dt.UTC)
    assert a.updated_at == T1 and a.created_at == T0
    assert marker(db) == 2


def test_disable_and_enable(db: Database) -> None:
    apply(db, [spec("a")])
    apply(db, [spec("a", enabled=False)], now=T1)
    assert row(db, "a").next_run_at is None and row(db, "a").enabled is False
    later = T1 + dt.timedelta(hours=20)
    apply(db, [spec("a")], now=later)
    assert row(db, "a").schedule_anchor == later
    assert row(db, "a").next_run_at == dt.datetime(2026, 1, 7, 1, 0, tzinfo=dt.UTC)


def test_delete_is_soft_and_create_revives_the_same_row(db: Database) -> None:
    apply(db, [spec("a"), spec("b")])
    first = row(db, "a")
    with db.session() as session:
        session.execute(
            insert(TaskExecution).values(
                task_name="a",
                celery_task_id="c1",
                trigger="schedule",
                status="success",
                args=[],
                kwargs={},
                queued_at=T0,
                retries=0,
            )
        )
    apply(db, [spec("b")], now=T1)
    gone = row(db, "a")
    assert gone.deleted_at == T1 and gone.next_run_at is None
    assert (gone.version, gone.change_seq) == (2, 2)
    with db.session() as session:
        state = store.read_current(session)
        assert [c.name for c in state.live] == ["b"]
        assert state.deleted_names == {"a"}
        assert store.is_deleted(session, "a")
        assert session.scalar(select(func.count()).select_from(TaskExecution)) == 1
    plan = apply(db, [spec("a", crontab="0 3 * * *"), spec("b")], now=T1 + dt.timedelta(hours=1))
    assert [c.name for c in plan.creates] == ["a"]
    back = row(db, "a")
    assert back.id == first.id
    assert back.deleted_at is None and back.version == 3 and back.change_seq == 3
    assert back.spec["crontab"]["hour"] == "3"
    assert back.created_at == T0
    assert back.next_run_at == dt.datetime(2026, 1, 6, 3, 0, tzinfo=dt.UTC)


def test_no_op_writes_nothing(db: Database) -> None:
    apply(db, [spec("a")])
    statements: list[str] = []

    def listener(*args: Any) -> None:
        statements.append(str(args[2]))

    from sqlalchemy import event

    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        apply(db, [spec("a")], now=T1)
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    writes = [
        s for s in statements if s.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
    ]
    assert writes == []
    assert row(db, "a").version == 1 and marker(db) == 1
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(ApplyRecord)) == 1


def test_relocation_is_recorded_quietly(db: Database) -> None:
    apply(db, [spec("a")])
    with db.session() as session:
        state = store.read_current(session)
        plan = make_plan([Sourced(spec("a"), "moved.yaml", 7)], state.live)
        assert not plan
        assert store.write_plan(session, plan, state, now=T1, next_run=first_slot, log=LOG) is None
    moved = row(db, "a")
    assert (moved.source_path, moved.source_line, moved.version) == ("moved.yaml", 7, 1)
    assert marker(db) == 1


def test_apply_record(db: Database) -> None:
    apply(db, [spec("a"), spec("b")])
    apply(
        db,
        [spec("a", owner="ops")],
        now=T1,
    )
    with db.session() as session:
        records = session.scalars(select(ApplyRecord).order_by(ApplyRecord.id)).all()
        last = records[-1]
        assert (last.created, last.updated, last.deleted, last.unchanged) == (0, 1, 1, 0)
        assert (last.updated_names, last.deleted_names, last.created_names) == (["a"], ["b"], [])
        assert last.applied_at == T1 and last.tasks_dir == "tasks.d" and last.duration_ms == 5


def test_bulk_create_and_progress(db: Database) -> None:
    seen: list[int] = []
    apply(db, [spec(f"t{i:04d}") for i in range(2500)], progress=seen.append)
    assert sum(seen) == 2500 and len(seen) == 3
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Task)) == 2500


def test_lock_times_out_while_another_apply_holds_it(db: Database) -> None:
    with db.session() as holder:
        store.lock(holder, 5)
        with db.session() as waiter, pytest.raises(LockTimeout) as info:
            store.lock(waiter, 0.2)
    assert str(info.value) == (
        "another reconciler held the apply lock for more than 0.2 s; "
        "try again, or raise --lock-timeout"
    )
    with db.session() as session:  # released with the holder's transaction
        store.lock(session, 1)


def test_status_rows_with_latest_execution(db: Database) -> None:
    apply(db, [spec("a"), spec("b"), spec("c")])
    with db.session() as session:
        for i, (name, status) in enumerate(
            [("a", "success"), ("a", "failure"), ("b", "started"), ("zz", "success")]
        ):
            session.execute(
                insert(TaskExecution).values(
                    task_name=name,
                    celery_task_id=f"id{i}",
                    trigger="schedule",
                    status=status,
                    args=[],
                    kwargs={},
                    queued_at=T0 + dt.timedelta(minutes=i),
                    retries=0,
                )
            )
        session.execute(
            update(Task)
            .where(Task.name == "a")
            .values(last_run_at=T0, skipped_count=2, missed_count=1)
        )
    with db.session() as session:
        rows = {r.name: r for r in store.status_rows(session)}
        assert sorted(rows) == ["a", "b", "c"]
        # The latest execution, not the slot beat last fired (``last_run_at`` above).
        latest = (rows["a"].last_status, rows["a"].last_queued_at)
        assert latest == ("failure", T0 + dt.timedelta(minutes=1))
        assert (rows["a"].skipped_count, rows["a"].missed_count) == (2, 1)
        assert rows["b"].last_status == "started"
        assert rows["c"].last_status is None
        assert [r.name for r in store.status_rows(session, "b")] == ["b"]


def test_specs_are_stored_as_their_exact_json_text(db: Database) -> None:
    # What makes an unchanged task cost one serialisation and a string comparison.
    tasks = [spec("a", kwargs={"z": 1, "a": [1, 2.5]}), spec("b", labels={"team": "x"})]
    apply(db, tasks)
    with db.session() as session:
        stored = {row.name: row.spec_json for row in store.read_current(session).live}
    assert stored == {task.name: task.model_dump_json() for task in tasks}
