"""The tasks table as the reconciler sees it: current state, the apply lock, and applying a plan.

``reconciler.apply`` calls these inside one transaction: ``lock`` (serialises
reconcilers), ``read_current`` (one SELECT), ``write_plan`` (bulk statements of the rows
``store.taskrows`` makes, renames with the history kept under the name, soft delete and
revive, the change marker, the apply-log row).
``status_rows`` is the read side of ``reconcile status``. Beat and tracking own the
run-time columns.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    Text,
    bindparam,
    cast,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from reconciler.core.plan import COLUMN_FIELDS, Change, Current, Plan
from reconciler.errors import LockTimeout
from reconciler.store.notify import Targets, read_targets, write_changes
from reconciler.store.tables import (
    Alert,
    ApplyRecord,
    ChangeMarker,
    Task,
    TaskExecution,
    TaskStatsDay,
)
from reconciler.store.taskrows import (
    SCHEDULED_COLUMNS,
    SPEC_COLUMNS,
    NextRun,
    assignments,
    batches,
    changed_row,
    created_row,
)
from reconciler.vocabulary import Outcome

Progress = Callable[[int], None]

tasks: Table = Task.__table__  # type: ignore[assignment]
# What is recorded under a task's name besides its row, executions first: moved with it
# by a rename.
NAMED_HISTORY: tuple[Table, ...] = tuple(
    table.__table__  # type: ignore[misc]
    for table in (TaskExecution, TaskStatsDay, Alert)
)


@dataclass
class StoredState:
    """The live tasks, plus the names of soft-deleted rows a create revives."""

    live: list[Current]
    deleted_names: set[str] = field(default_factory=set)
    # Where each owner's alerts go (``store.notify``), compared with the defaults document.
    notify: Targets = field(default_factory=dict)


@dataclass(frozen=True)
class ApplyLog:
    """What the apply-log row records besides the plan's counts and names."""

    tasks_dir: str
    git_commit: str | None
    git_dirty: bool | None
    duration_ms: int


def lock(session: Session, timeout: float) -> None:
    """Take the apply lock for this transaction, waiting at most ``timeout`` seconds.

    PostgreSQL: a row lock on ``change_marker`` id 1 with ``lock_timeout``. SQLite: the
    database write lock (``BEGIN IMMEDIATE``) with the busy timeout. Must be the first
    statement of the transaction.
    """
    timeout_ms = max(1, int(timeout * 1000))
    message = (
        f"another reconciler held the apply lock for more than {timeout:g} s; "
        f"try again, or raise --lock-timeout"
    )
    connection = session.connection()
    dialect = connection.dialect.name
    if dialect == "sqlite":
        busy = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {timeout_ms}")
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except OperationalError as exc:
            if "locked" in str(exc.orig) or "busy" in str(exc.orig):
                raise LockTimeout(message) from exc
            raise
        finally:
            connection.exec_driver_sql(f"PRAGMA busy_timeout = {int(busy or 0)}")
        return
    if dialect == "postgresql":
        from reconciler.store import stall  # psycopg: only for PostgreSQL

        # The role's statement deadline must not cut the wait short (docs/deadlines.md).
        previous = connection.execute(
            text("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')")
        ).one()
        waits = {"lock_timeout": f"{timeout_ms}ms", "statement_timeout": f"{timeout_ms + 1000}ms"}
        _set_local(connection, waits)
        try:
            with stall.extended(connection.connection.dbapi_connection, timeout + 2):
                _ensure_marker(session)
                connection.execute(
                    select(ChangeMarker.id).where(ChangeMarker.id == 1).with_for_update()
                )
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
                raise LockTimeout(message) from exc
            raise
        _set_local(connection, {"lock_timeout": previous[0], "statement_timeout": previous[1]})
        return
    _ensure_marker(session)
    connection.execute(select(ChangeMarker.id).where(ChangeMarker.id == 1).with_for_update())


def _set_local(connection: Connection, settings: dict[str, str]) -> None:
    """Session settings for the rest of this transaction only."""
    for name, value in settings.items():
        connection.execute(
            text("SELECT set_config(:name, :value, true)"), {"name": name, "value": value}
        )


def _ensure_marker(session: Session) -> None:
    if session.execute(select(ChangeMarker.id).where(ChangeMarker.id == 1)).first() is None:
        session.execute(insert(ChangeMarker).values(id=1, seq=0, changed_at=None))


def read_current(session: Session) -> StoredState:
    """Every task row in one SELECT, without the run-time columns or ORM objects.

    Rows are unpacked by position: every apply reads every task, and attribute access
    on a result row costs more than the rest of building its ``Current``.
    """
    columns = [tasks.c[name] for name in COLUMN_FIELDS]
    query = select(
        tasks.c.name,
        # The stored text as written, compared with the desired text without parsing it.
        cast(tasks.c.spec, Text).label("spec_json"),
        tasks.c.content_hash,
        tasks.c.source_path,
        tasks.c.source_line,
        tasks.c.deleted_at,
        *columns,
    )
    state = StoredState(live=[])
    for name, spec_json, content_hash, path, line, deleted_at, *values in session.execute(query):
        if deleted_at is not None:
            state.deleted_names.add(name)
            continue
        state.live.append(
            Current(
                name=name,
                spec_json=spec_json,
                content_hash=content_hash,
                source_path=path,
                source_line=line,
                columns=dict(zip(COLUMN_FIELDS, values, strict=True)),
            )
        )
    state.notify = read_targets(session)
    return state


def write_plan(
    session: Session,
    plan: Plan,
    state: StoredState,
    *,
    now: dt.datetime,
    next_run: NextRun,
    log: ApplyLog | None,
    progress: Progress | None = None,
    record_no_op: bool = False,
) -> int | None:
    """Apply ``plan`` in the caller's transaction; return the apply-log row id, if any.

    A plan without changes writes no task row (relocations aside) and no marker bump,
    and no apply-log row unless ``record_no_op`` (it puts the files back in sync).
    """
    step = progress or (lambda _count: None)
    _relocate(session, plan)
    write_changes(session, plan.notify, now)
    if not plan:
        return None if log is None or not record_no_op else record_apply(session, plan, log, now)
    seq = _bump_marker(session, now)
    if plan.renames:
        _rename(session, plan.renames, seq, now, next_run)
        step(len(plan.renames))
    revived = [c for c in plan.creates if c.name in state.deleted_names]
    fresh = [c for c in plan.creates if c.name not in state.deleted_names]
    for batch in batches(fresh):
        session.execute(insert(tasks), [created_row(c, seq, now, next_run) for c in batch])
        step(len(batch))
    revive = (
        update(tasks)
        .where(tasks.c.name == bindparam("b_name"))
        .values(version=tasks.c.version + 1, deleted_at=None, **assignments(SCHEDULED_COLUMNS))
    )
    for batch in batches(revived):
        session.execute(revive, [changed_row(c, seq, now, next_run, True) for c in batch])
        step(len(batch))
    keep_schedule = [c for c in plan.updates if not c.schedule_changed]
    restart = [c for c in plan.updates if c.schedule_changed]
    for group, scheduled in ((keep_schedule, False), (restart, True)):
        statement = (
            update(tasks)
            .where(tasks.c.name == bindparam("b_name"))
            .values(
                version=tasks.c.version + 1,
                **assignments(SCHEDULED_COLUMNS if scheduled else SPEC_COLUMNS),
            )
        )
        for batch in batches(group):
            session.execute(
                statement, [changed_row(c, seq, now, next_run, scheduled) for c in batch]
            )
            step(len(batch))
    delete = (
        update(tasks)
        .where(tasks.c.name == bindparam("b_name"))
        .values(
            version=tasks.c.version + 1,
            deleted_at=bindparam("b_now"),
            updated_at=bindparam("b_now"),
            next_run_at=None,
            change_seq=bindparam("b_seq"),
        )
    )
    for batch in batches(plan.deletes):
        session.execute(delete, [{"b_name": c.name, "b_now": now, "b_seq": seq} for c in batch])
        step(len(batch))
    if log is None:
        return None
    return record_apply(session, plan, log, now)


def record_apply(session: Session, plan: Plan, log: ApplyLog, now: dt.datetime) -> int:
    result = session.execute(
        insert(ApplyRecord)
        .values(
            applied_at=now,
            created=len(plan.creates),
            # A rename counts as an update of the task under its new name.
            updated=len(plan.updates) + len(plan.renames),
            deleted=len(plan.deletes),
            unchanged=plan.unchanged,
            created_names=[c.name for c in plan.creates],
            updated_names=[c.name for c in (*plan.updates, *plan.renames)],
            deleted_names=[c.name for c in plan.deletes],
            tasks_dir=log.tasks_dir,
            git_commit=log.git_commit,
            git_dirty=log.git_dirty,
            duration_ms=log.duration_ms,
            outcome=Outcome.APPLIED,
            error_count=0,
            attempts=1,
            last_attempt_at=now,
        )
        .returning(ApplyRecord.id)
    )
    return int(result.scalar_one())


def _rename(
    session: Session, renames: tuple[Change, ...], seq: int, now: dt.datetime, next_run: NextRun
) -> None:
    """Each renamed row under its new name, with everything recorded under the old one.

    The row keeps its id, counters, health and, unless its schedule changes (or it was a
    deleted task's, which comes back like a revived one), its schedule anchor and next
    slot. The history moves before the row, in the order tracking takes its locks (an
    execution, then its task's row, by trigger), and the executions once more after it:
    on PostgreSQL writing the row waits for a beat that holds it, and that beat's slots
    are recorded under the old name.
    """
    _move_history(session, renames, NAMED_HISTORY)
    groups: tuple[tuple[list[Change], tuple[str, ...], dict[str, Any]], ...] = (
        ([c for c in renames if not c.revived and not c.schedule_changed], SPEC_COLUMNS, {}),
        ([c for c in renames if not c.revived and c.schedule_changed], SCHEDULED_COLUMNS, {}),
        ([c for c in renames if c.revived], SCHEDULED_COLUMNS, {"deleted_at": None}),
    )
    for group, columns, extra in groups:
        statement = (
            update(tasks)
            .where(tasks.c.name == bindparam("b_previous"))
            .values(
                name=bindparam("b_name"),
                version=tasks.c.version + 1,
                **assignments(columns),
                **extra,
            )
        )
        scheduled = columns is SCHEDULED_COLUMNS
        for batch in batches(group):
            session.execute(
                statement,
                [
                    changed_row(c, seq, now, next_run, scheduled) | {"b_previous": c.previous}
                    for c in batch
                ],
            )
    _move_history(session, renames, NAMED_HISTORY[:1])


def _move_history(session: Session, renames: tuple[Change, ...], tables: tuple[Table, ...]) -> None:
    for table in tables:
        statement = (
            update(table)
            .where(table.c.task_name == bindparam("b_previous"))
            .values(task_name=bindparam("b_name"))
        )
        for batch in batches(renames):
            session.execute(
                statement, [{"b_previous": c.previous, "b_name": c.name} for c in batch]
            )


def _bump_marker(session: Session, now: dt.datetime) -> int:
    result = session.execute(
        update(ChangeMarker)
        .where(ChangeMarker.id == 1)
        .values(seq=ChangeMarker.seq + 1, changed_at=now)
        .returning(ChangeMarker.seq)
    )
    seq = result.scalar_one_or_none()
    if seq is None:
        session.execute(insert(ChangeMarker).values(id=1, seq=1, changed_at=now))
        return 1
    return int(seq)


def _relocate(session: Session, plan: Plan) -> None:
    if not plan.relocations:
        return
    statement = (
        update(tasks)
        .where(tasks.c.name == bindparam("b_name"))
        .values(source_path=bindparam("b_source_path"), source_line=bindparam("b_source_line"))
    )
    for batch in batches(plan.relocations):
        session.execute(
            statement,
            [{"b_name": r.name, "b_source_path": r.path, "b_source_line": r.line} for r in batch],
        )


# --- read side of ``reconcile status`` ---------------------------------------------------


@dataclass(frozen=True)
class StatusRow:
    """A live task as ``reconcile status`` shows it: its latest execution (queued, status)
    whatever triggered it (docs/tracking.md, "Last run"); ``type``, ``enabled`` and
    ``owner`` are the row's own copies, shown when ``spec`` cannot be read."""

    name: str
    type: str
    enabled: bool
    owner: str
    spec: Any  # as stored: ``reconciler.core.spec.stored_spec`` reads it
    source_path: str
    source_line: int
    next_run_at: dt.datetime | None
    last_queued_at: dt.datetime | None
    last_status: str | None
    skipped_count: int
    missed_count: int
    calendar_skipped_count: int
    # Health, kept on the row by the database (migration 0007).
    last_success_at: dt.datetime | None
    last_failure_at: dt.datetime | None
    consecutive_failures: int


_STATUS_COLUMNS = [tasks.c[column.name] for column in fields(StatusRow)]


def status_rows(session: Session, name: str | None = None) -> list[StatusRow]:
    """Live tasks (or the one named) with their latest execution, in one query (the
    database keeps the latest on the task row)."""
    query = select(*_STATUS_COLUMNS).where(tasks.c.deleted_at.is_(None)).order_by(tasks.c.name)
    if name is not None:
        query = query.where(tasks.c.name == name)
    return [StatusRow(**row._mapping) for row in session.execute(query)]


@dataclass(frozen=True)
class StoredSchedule:
    """Where beat stands with a task: its stored spec, schedule anchor and next slot."""

    spec: Any
    schedule_anchor: dt.datetime | None
    next_run_at: dt.datetime | None


def stored_schedule(session: Session, name: str) -> StoredSchedule | None:
    """The live task ``name`` as beat reads it; None when there is none (or no schema yet)."""
    if not inspect(session.get_bind()).has_table("tasks"):
        return None
    row = session.execute(
        select(tasks.c.spec, tasks.c.schedule_anchor, tasks.c.next_run_at).where(
            tasks.c.name == name, tasks.c.deleted_at.is_(None)
        )
    ).first()
    return None if row is None else StoredSchedule(row.spec, row.schedule_anchor, row.next_run_at)


def is_deleted(session: Session, name: str) -> bool:
    """True when ``name`` exists only as a soft-deleted row (its history is kept)."""
    row = session.execute(select(tasks.c.deleted_at).where(tasks.c.name == name)).first()
    return row is not None and row.deleted_at is not None
