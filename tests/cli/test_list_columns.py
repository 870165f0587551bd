"""The task list's denormalised columns, ``schedule_text`` and ``timezone``.

The spec's one-line schedule, its agreement with the stored JSON, the columns written
by apply and checked for drift, and migration 0002 filling them for existing rows.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import event, select, update

from reconciler.apply import reconcile
from reconciler.core.plan import FieldChange, make_plan
from reconciler.core.schedule import first_slot
from reconciler.core.schedulefields import schedule_text
from reconciler.core.spec import TaskSpec
from reconciler.files.loader import load_directory
from reconciler.store import tasks as store
from reconciler.store.database import Database, RawJSON, alembic_config, head_revision
from reconciler.store.tables import Task, UTCDateTime
from tests.core.test_plan import Sourced, stored
from tests.factories import spec
from tests.store.test_store import T0, T1, apply
from tests.support import ROOT

# Hand-picked specs and the schedule each shows.
CASES: list[tuple[dict[str, Any], str | None]] = [
    ({"crontab": "0 9 * * 1"}, "0 9 * * 1"),
    ({"crontab": {"minute": 30, "hour": "7", "day_of_week": "1-5"}}, "30 7 * * 1-5"),
    ({"crontab": "*/5 0-6 1,15 * *"}, "*/5 0-6 1,15 * *"),
    ({"crontab": None, "interval": {"hours": 1, "minutes": 30}}, "every 1h30m"),
    (
        {"crontab": None, "interval": {"days": 2, "hours": 3, "minutes": 4, "seconds": 5}},
        "every 2d3h4m5s",
    ),
    ({"crontab": None, "interval": {"seconds": 10}}, "every 10s"),
    (
        {"type": "scheduled", "crontab": None, "at": "2030-06-01T09:00:00"},
        "at 2030-06-01T09:00:00Z",
    ),
    (
        {
            "type": "scheduled",
            "crontab": None,
            "at": "2030-06-01T09:00:00",
            "timezone": "Europe/Berlin",
        },
        "at 2030-06-01T07:00:00Z",
    ),
    (
        {"type": "scheduled", "crontab": None, "at": "2030-06-01T09:00:00.250+02:00"},
        "at 2030-06-01T07:00:00.250000Z",
    ),
    ({"type": "async", "crontab": None}, "once, when applied"),
    ({"type": "async", "crontab": None, "enabled": False}, "once, when applied"),
]


def stored_json(task: TaskSpec) -> dict[str, Any]:
    """The spec as the store writes it into ``tasks.spec``, read back."""
    value: dict[str, Any] = json.loads(task.model_dump_json())
    return value


# --- the spec ----------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "expected"), CASES)
def test_schedule_text_of_hand_picked_specs(fields: dict[str, Any], expected: str | None) -> None:
    task = spec("t", **fields)
    assert task.schedule_text == expected
    assert schedule_text(stored_json(task)) == expected


def test_schedule_text_agrees_with_the_stored_json_for_every_example() -> None:
    specs = [item.spec for item in load_directory(ROOT / "tasks.d").tasks]
    assert {task.type for task in specs} == {"periodic", "scheduled", "async"}
    for task in specs:
        assert task.schedule_text == schedule_text(stored_json(task)), task.name
    shown = {task.name: task.schedule_text for task in specs}
    assert shown["monthly-invoices"] == "0 6 1 * *"  # crontab string
    assert shown["daily-report"] == "0 1 * * 1-5"  # crontab mapping
    assert shown["heartbeat"] == "every 10s"
    assert shown["product-launch"] == "at 2030-06-01T07:00:00Z"
    assert shown["hello"] == "once, when applied"


def test_schedule_text_of_json_without_a_schedule() -> None:
    assert schedule_text({"type": "periodic"}) is None
    assert schedule_text({}) is None
    assert schedule_text({"crontab": {"hour": "3"}}) == "* 3 * * *"


def test_the_cached_schedule_text_stays_out_of_dumps_and_equality() -> None:
    task, twin = spec("t"), spec("t")
    text, dumped = task.model_dump_json(), task.model_dump()
    assert task.schedule_text == "0 1 * * *"
    assert task.model_dump_json() == text and task.model_dump() == dumped
    assert task == twin  # only the twin has not worked it out yet
    assert task.content_hash == twin.content_hash


# --- the plan ----------------------------------------------------------------------------


def drifted(task: TaskSpec, **columns: Any) -> Any:
    row = stored(task)
    return type(row)(
        row.name,
        row.spec_json,
        row.content_hash,
        row.source_path,
        row.source_line,
        {**row.columns, **columns},
    )


def test_a_hand_edited_column_is_an_update_back() -> None:
    task = spec("t", timezone="Europe/Berlin")
    plan = make_plan([Sourced(task)], [drifted(task, schedule_text="every 1m")])
    assert plan.updates[0].fields == (FieldChange("schedule_text", "every 1m", "0 1 * * *"),)
    assert not plan.updates[0].schedule_changed
    plan = make_plan([Sourced(task)], [drifted(task, timezone="UTC")])
    assert plan.updates[0].fields == (FieldChange("timezone", "UTC", "Europe/Berlin"),)


def test_a_schedule_change_shows_its_fields_not_the_derived_column() -> None:
    every_5m: dict[str, Any] = {"crontab": None, "interval": {"minutes": 5}}
    for old, new, field in [
        ({}, {"crontab": "0 2 * * *"}, "crontab"),
        ({}, every_5m, "interval"),
        (every_5m, {"crontab": None, "interval": {"minutes": 6}}, "interval"),
        ({}, {"type": "async", "crontab": None}, "type"),
        ({}, {"timezone": "Europe/Berlin"}, "timezone"),
    ]:
        plan = make_plan([Sourced(spec("t", **new))], [stored(spec("t", **old))])
        names = [change.field for change in plan.updates[0].fields]
        assert field in names and "schedule_text" not in names
        assert names.count("timezone") <= 1


# --- the store ---------------------------------------------------------------------------


def columns(db: Database) -> dict[str, tuple[str | None, str]]:
    with db.session() as session:
        rows = session.execute(select(Task.name, Task.schedule_text, Task.timezone))
        return {row.name: (row.schedule_text, row.timezone) for row in rows}


def writes_of(db: Database, action: Any) -> list[str]:
    statements: list[str] = []

    def listener(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        action()
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    return [s for s in statements if s.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]


def case_specs() -> list[TaskSpec]:
    return [spec(f"case-{index:02d}", **fields) for index, (fields, _) in enumerate(CASES)]


def test_create_writes_the_columns_and_a_second_apply_writes_nothing(db: Database) -> None:
    specs = [*case_specs(), spec("berlin", timezone="Europe/Berlin")]
    apply(db, specs)
    expected = {task.name: (task.schedule_text, task.timezone) for task in specs}
    assert columns(db) == expected
    assert expected["case-00"] == ("0 9 * * 1", "UTC")
    assert expected["berlin"] == ("0 1 * * *", "Europe/Berlin")
    assert writes_of(db, lambda: apply(db, specs, now=T1)) == []


def test_update_writes_the_columns(db: Database) -> None:
    apply(db, [spec("cron"), spec("zone"), spec("words")])
    changed = [
        spec("cron", crontab=None, interval={"hours": 1, "minutes": 30}),
        spec("zone", timezone="America/New_York"),
        spec("words", description="only the description"),
    ]
    plan = apply(db, changed, now=T1)
    assert [c.name for c in plan.updates] == ["cron", "words", "zone"]
    assert columns(db) == {
        "cron": ("every 1h30m", "UTC"),
        "zone": ("0 1 * * *", "America/New_York"),
        "words": ("0 1 * * *", "UTC"),
    }


def test_a_revived_task_gets_the_columns_of_its_new_spec(db: Database) -> None:
    apply(db, [spec("a"), spec("b")])
    apply(db, [spec("b")], now=T1)
    assert columns(db)["a"] == ("0 1 * * *", "UTC")  # a deleted row keeps its values
    revived = spec(
        "a", type="scheduled", crontab=None, at="2030-06-01T09:00:00", timezone="Asia/Tokyo"
    )
    plan = apply(db, [revived, spec("b")], now=T1 + dt.timedelta(hours=1))
    assert [c.name for c in plan.creates] == ["a"]
    assert columns(db)["a"] == ("at 2030-06-01T00:00:00Z", "Asia/Tokyo")


def test_a_hand_edit_of_either_column_is_drift_and_is_reverted(db: Database) -> None:
    specs = [spec("a"), spec("b", timezone="Europe/Berlin"), spec("c")]
    apply(db, specs)
    with db.session() as session:
        session.execute(update(Task).where(Task.name == "a").values(schedule_text="hourly"))
        session.execute(update(Task).where(Task.name == "b").values(timezone="UTC"))
    plan = apply(db, specs, now=T1)
    assert [(c.name, c.fields) for c in plan.updates] == [
        ("a", (FieldChange("schedule_text", "hourly", "0 1 * * *"),)),
        ("b", (FieldChange("timezone", "UTC", "Europe/Berlin"),)),
    ]
    assert columns(db) == {
        "a": ("0 1 * * *", "UTC"),
        "b": ("0 1 * * *", "Europe/Berlin"),
        "c": ("0 1 * * *", "UTC"),
    }
    assert not apply(db, specs, now=T1)


def test_apply_of_the_examples_stores_columns_that_agree_with_the_stored_spec(
    db: Database,
) -> None:
    created = reconcile(db, ROOT / "tasks.d").plan.creates
    with db.session() as session:
        rows = session.execute(select(Task.spec, Task.schedule_text, Task.timezone)).all()
    assert len(rows) == len(created) > 0
    for row in rows:
        assert row.schedule_text == schedule_text(row.spec), row.spec["name"]
        assert row.timezone == row.spec["timezone"]
    assert not reconcile(db, ROOT / "tasks.d").plan


# --- migration 0002 ----------------------------------------------------------------------

# The tasks table as revision 0001 made it, for rows written before the new columns.
TASKS_0001 = sa.table(
    "tasks",
    *(
        sa.column(name, sa.Text())
        for name in ("name", "owner", "type", "task", "description", "content_hash")
    ),
    sa.column("enabled", sa.Boolean()),
    sa.column("spec", sa.JSON()),
    sa.column("source_path", sa.Text()),
    *(
        sa.column(name, sa.Integer())
        for name in ("source_line", "version", "change_seq", "skipped_count", "missed_count")
    ),
    *(
        sa.column(name, UTCDateTime())
        for name in ("created_at", "updated_at", "deleted_at", "schedule_anchor", "next_run_at")
    ),
)


def row_0001(task: TaskSpec, deleted_at: dt.datetime | None = None) -> dict[str, Any]:
    """The row apply wrote for ``task`` at revision 0001."""
    return {
        "name": task.name,
        "owner": task.owner,
        "type": task.type,
        "task": task.task,
        "description": task.description,
        "enabled": task.enabled,
        "spec": RawJSON(task.model_dump_json()),
        "content_hash": task.content_hash,
        "source_path": f"tasks.d/{task.name}.yaml",
        "source_line": 1,
        "version": 1,
        "change_seq": 1,
        "created_at": T0,
        "updated_at": T0,
        "deleted_at": deleted_at,
        "schedule_anchor": T0,
        "next_run_at": first_slot(task, T0),
        "skipped_count": 0,
        "missed_count": 0,
    }


def at_0001(url: str, rows: list[dict[str, Any]]) -> Database:
    db = Database.open(url, upgrade=False)
    with db.engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0001")
        connection.execute(sa.insert(TASKS_0001), rows)
    assert db.current_revision() == "0001"
    return db


def test_upgrade_fills_the_columns_of_existing_rows(database_url: str) -> None:
    specs = [*case_specs(), spec("berlin", timezone="Europe/Berlin")]
    # More rows than one backfill batch, so the paging is crossed.
    many = [spec(f"bulk-{index:04d}", crontab=f"{index % 60} 2 * * *") for index in range(2100)]
    gone = spec("gone", crontab=None, interval={"minutes": 7}, timezone="Asia/Tokyo")
    rows = [row_0001(task) for task in [*specs, *many]] + [row_0001(gone, deleted_at=T0)]
    db = at_0001(database_url, rows)
    try:
        assert db.upgrade() is True
        assert db.current_revision() == head_revision()
        filled = columns(db)
        assert filled["case-00"] == ("0 9 * * 1", "UTC")
        assert filled["berlin"] == ("0 1 * * *", "Europe/Berlin")
        assert filled["gone"] == ("every 7m", "Asia/Tokyo")
        for task in [*specs, *many, gone]:
            assert filled[task.name] == (task.schedule_text, task.timezone), task.name
        # What the backfill wrote is what apply would write: nothing to do.
        with db.session() as session:
            state = store.read_current(session)
            plan = make_plan(
                [Sourced(task, f"tasks.d/{task.name}.yaml", 1) for task in [*specs, *many]],
                state.live,
            )
        assert not plan and plan.unchanged == len(specs) + len(many)
    finally:
        db.dispose()


def test_downgrade_to_0001_and_upgrade_again(database_url: str) -> None:
    db = at_0001(database_url, [row_0001(spec("a", timezone="Europe/Berlin"))])
    try:
        db.upgrade()
        with db.engine.begin() as connection:
            command.downgrade(alembic_config(connection), "0001")
            names = {c["name"] for c in sa.inspect(connection).get_columns("tasks")}
            assert "schedule_text" not in names and "timezone" not in names
        assert db.upgrade() is True
        assert columns(db) == {"a": ("0 1 * * *", "Europe/Berlin")}
    finally:
        db.dispose()
