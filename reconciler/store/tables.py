"""The tables: tasks, executions, the apply log, beat and watch heartbeats, the change marker.

Times are stored as timezone-aware UTC. The alembic migrations under
``reconciler/store/migrations`` create exactly these; a test compares the two.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Id = BigInteger().with_variant(Integer(), "sqlite")

# The rows of ``ix_task_executions_outcomes`` (OR, not IN: SQLite uses a partial index
# only for a query that repeats one of its terms).
OUTCOMES = "status = 'success' OR status = 'failure'"


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Task(Base):
    """One managed task: its normalised spec, where it came from, and its schedule state.

    A row is never removed: a task deleted from the files gets ``deleted_at`` and keeps
    its history; created again under the same name, the same row comes back.
    """

    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    # Denormalised from the spec for filtering, search and access checks.
    owner: Mapped[str] = mapped_column(String(200), index=True)
    type: Mapped[str] = mapped_column(String(16))
    task: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # The schedule as the task list shows it (``core.schedulefields.schedule_text``) and the
    # spec's time zone, so the list is served without parsing each spec. The server
    # default lets migration 0002 add the NOT NULL column to existing rows (which it
    # then fills from their specs) without rebuilding the table on SQLite.
    schedule_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    timezone: Mapped[str] = mapped_column(Text, server_default="UTC")
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    content_hash: Mapped[str] = mapped_column(String(64))
    source_path: Mapped[str] = mapped_column(String(1000), default="")
    source_line: Mapped[int] = mapped_column(Integer, default=1)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # The value of ``change_marker.seq`` written by the apply that last touched the row;
    # the Beat scheduler reads only rows above the marker it last saw.
    change_seq: Mapped[int] = mapped_column(Id, default=0, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    # --- schedule state, owned by the Beat scheduler (apply resets it on schedule changes)
    # The instant the schedule counts from: creation, or the last change of its schedule
    # fields, or re-enabling.
    schedule_anchor: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The next slot to fire, UTC; NULL when nothing is left to fire (disabled, deleted,
    # an async or scheduled task already fired).
    next_run_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The slot beat last fired; what users see as the last run is ``last_queued_at`` below.
    last_run_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Slots not fired: skipped by ``overlap: skip``, missed (catch-up), dropped by a
    # calendar (migration 0011; by design, so no alert reads it).
    skipped_count: Mapped[int] = mapped_column(Integer, default=0)
    missed_count: Mapped[int] = mapped_column(Integer, default=0)
    calendar_skipped_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    # --- the latest execution (highest id) recorded under this name, kept by database
    # triggers on task_executions (migration 0003), so lists read it with the task row.
    last_execution_id: Mapped[int | None] = mapped_column(Id, nullable=True)
    last_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    last_queued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    # --- health: when the newest success and failure finished, and the failures that
    # finished after that success; kept by triggers too (migration 0007).
    last_success_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_failure_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (Index("ix_tasks_due", "next_run_at"),)


class TaskExecution(Base):
    """One execution of a task (docs/tracking.md); written at claim time, updated by tracking."""

    __tablename__ = "task_executions"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    task_name: Mapped[str] = mapped_column(String(128))
    celery_task_id: Mapped[str] = mapped_column(String(64), unique=True)
    trigger: Mapped[str] = mapped_column(String(16))  # a reconciler.vocabulary.Trigger
    # The slot fired for; NULL for manual and external runs.
    scheduled_for: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # a reconciler.vocabulary.Status
    args: Mapped[list[Any]] = mapped_column(JSON, default=list)
    kwargs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    queued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    duration_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(300), nullable=True)
    result: Mapped[Any | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    traceback: Mapped[str | None] = mapped_column(Text, nullable=True)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    # When a started execution counts as lost if it has not finished (worker reaper).
    deadline_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # When the message went to the broker; NULL while a claimed slot is not yet sent.
    # Beat writes the row (claim) before it publishes; a beat that died in between left
    # such rows, and the next tick sends them (or fails them by the catch-up policy).
    published_at: Mapped[dt.datetime | None] = mapped_column(
        UTCDateTime(), nullable=True, index=True
    )
    # The beat instance that claimed the slot, and until when (the database's clock) it
    # alone may publish it; another beat takes an unpublished row over only after that.
    claimed_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The attempt (Celery retry count) a worker claimed when its delivery started.
    claimed_attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Deliveries a worker refused to run: the execution had started or finished elsewhere.
    duplicates: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The task's owner when the execution was recorded: access follows the execution.
    owner: Mapped[str | None] = mapped_column(String(200), nullable=True)

    __table_args__ = (
        # One row per slot: the claim's second line of defence.
        UniqueConstraint("task_name", "scheduled_for"),
        # A task's executions newest first, and its latest one read from the index alone
        # (PostgreSQL: INCLUDE, migration 0002) where the triggers of migration 0003 look
        # it up again.
        Index(
            "ix_task_executions_task_id",
            "task_name",
            "id",
            postgresql_include=["status", "queued_at"],
        ),
        Index("ix_task_executions_status_id", "status", "id"),
        Index("ix_task_executions_queued_at", "queued_at"),
        Index("ix_task_executions_owner_id", "owner", "id"),
        # Finished successes and failures only, for the health triggers (migration 0007).
        Index(
            "ix_task_executions_outcomes",
            "task_name",
            "status",
            "finished_at",
            postgresql_where=text(OUTCOMES),
            sqlite_where=text(OUTCOMES),
        ),
        # Finished rows by finish time, for the daily statistics' roll-up (migration 0010).
        Index(
            "ix_task_executions_finished_at",
            "finished_at",
            postgresql_where=text("finished_at IS NOT NULL"),
            sqlite_where=text("finished_at IS NOT NULL"),
        ),
    )


class TaskStatsDay(Base):
    """One task's executions that finished on one UTC day: counts by final status and the
    duration's percentiles, kept a year whatever the history's retention (migration 0010,
    docs/design/retention.md)."""

    __tablename__ = "task_stats_daily"

    task_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True, index=True)
    successes: Mapped[int] = mapped_column(Integer)
    failures: Mapped[int] = mapped_column(Integer)
    revoked: Mapped[int] = mapped_column(Integer)
    duration_p50_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    duration_p95_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    duration_max_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class HistoryRetention(Base):
    """One row: the days before ``rolled_up_until`` are in ``task_stats_daily``; pruners
    take turns holding it locked; ``pruning`` tells SQLite's delete triggers to stand
    aside for the pruner's own deletes (migration 0010)."""

    __tablename__ = "history_retention"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rolled_up_until: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    pruning: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    last_pass_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ApplyRecord(Base):
    """One apply attempt of the reconciler, applied or not (docs/plan-and-apply.md, "The
    apply log and sync status"), served by ``GET /api/v1/applies``; ``applied_at`` is when
    it was made."""

    __tablename__ = "applies"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    applied_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    created: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    deleted: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    created_names: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_names: Mapped[list[str]] = mapped_column(JSON, default=list)
    deleted_names: Mapped[list[str]] = mapped_column(JSON, default=list)
    tasks_dir: Mapped[str] = mapped_column(String(1000), default="")
    git_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    git_dirty: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    # What became of the attempt (``reconciler.vocabulary.Outcome``), how many errors it
    # had and the first of them as located lines (migration 0005).
    outcome: Mapped[str] = mapped_column(String(16), server_default="applied")
    error_count: Mapped[int] = mapped_column(Integer, server_default="0")
    errors: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # A failure repeated identically stays one row: how often, and the latest time.
    attempts: Mapped[int] = mapped_column(Integer, server_default="1")
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (Index("ix_applies_outcome_id", "outcome", "id"),)


class BeatHeartbeat(Base):
    """The last tick of each running Beat, for ``status``, ``doctor`` and ``/metrics``.

    One row per beat process (``instance``, the owner its claims carry) under the beat's
    stable ``name`` (docs/beat.md, "Heartbeats and names"): a beat that stops removes
    its row, and any beat removes rows that stopped ticking minutes ago (migration 0006).
    """

    __tablename__ = "beat_heartbeats"

    instance: Mapped[str] = mapped_column(String(200), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(300))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_tick_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    # NULL only in a row written by a beat older than migration 0006.
    name: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True, index=True)
    # The name asked for, when another live beat held it and this one took another.
    wanted_name: Mapped[str | None] = mapped_column(String(200), nullable=True)


class WatchHeartbeat(Base):
    """The last pass of each running ``reconcile watch`` loop and of its ``--git-pull``.

    Kept like beat's (one row per process under a stable name, removed when the loop
    stops), except that a dead loop's row stays for ``doctor`` to report (migration 0006).
    """

    __tablename__ = "watch_heartbeats"

    instance: Mapped[str] = mapped_column(String(200), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, index=True)
    hostname: Mapped[str] = mapped_column(String(300))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    tasks_dir: Mapped[str] = mapped_column(String(1000), default="")
    wanted_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # ``--git-pull`` interval in seconds (NULL: the loop does not pull), the commit the
    # checkout was at after the last pull, and the pulls that failed since one worked.
    git_pull_every: Mapped[float | None] = mapped_column(Float, nullable=True)
    git_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_pull_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    pull_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    pull_failing_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    pull_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class ChangeMarker(Base):
    """A single row whose ``seq`` every apply that changes tasks bumps in its transaction.

    The reconciler also takes its serialising lock on this row (``SELECT ... FOR UPDATE``
    on PostgreSQL; SQLite serialises writers itself).
    """

    __tablename__ = "change_marker"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Id, default=0)
    changed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class NotifyTarget(Base):
    """Where one owner's alerts go, as the defaults document's ``notify`` says at the last
    apply (docs/task-files.md, "The defaults document"); only the variable's name is kept,
    the URL is read from the environment where alerts are sent. Migration 0009."""

    __tablename__ = "notify_targets"

    owner: Mapped[str] = mapped_column(String(200), primary_key=True)
    webhook_url_env: Mapped[str] = mapped_column(String(200))
    format: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Alert(Base):
    """One alert episode of a task's condition (docs/beat.md, "Alerts"), sent once and
    resolved once whichever beat sends it (migration 0008).

    Unique on task, condition and ``episode`` (a key every beat derives alike from what
    fired it), so two beats that see the same condition keep one row. The row is pending
    while ``next_try_at`` is set; a beat claims it by moving ``next_try_at`` forward.
    """

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    task_name: Mapped[str] = mapped_column(String(128))
    condition: Mapped[str] = mapped_column(String(32))
    episode: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(200))
    # When the condition began (a failure's end, a deadline passed), and when it was seen.
    since: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    fired_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    summary: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(
        UTCDateTime(), nullable=True, index=True
    )
    # Why it ended (``reconciler.core.alerting.Resolution``).
    resolution: Mapped[str | None] = mapped_column(String(32), nullable=True)
    notified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    resolved_notified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Failed sends of the pending message, the next try (or a claim's end), the reason.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_try_at: Mapped[dt.datetime | None] = mapped_column(
        UTCDateTime(), nullable=True, index=True
    )
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (UniqueConstraint("task_name", "condition", "episode"),)
