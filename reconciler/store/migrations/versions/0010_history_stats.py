"""History retention and per-task statistics that survive pruning.

- ``task_stats_daily``: per task and UTC day of finishing, the counts by final status
  and the duration's p50, p95 and max, rolled up from the rows before any of them can be
  pruned (docs/design/retention.md), kept a year.
- ``history_retention``: one row, how far the days are rolled up, the pruners' lease
  (a beat prunes while it holds the row locked) and, on SQLite, the flag below.
- ``ix_task_executions_finished_at``: finished rows by finish time, for the roll-up.
- The latest-execution and health triggers of migrations 0003 and 0007 skip the rows
  the pruner deletes: it never deletes a task's latest execution, latest success or
  latest failure, so there is nothing for them to do, and a recount per deleted row
  would cost more than the delete. On PostgreSQL the pruner's transaction sets
  ``reconciler.pruning``; on SQLite it sets ``history_retention.pruning`` and clears it
  before it commits (writers are serialised there, so no other write sees it).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision: str | None = "0009"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
FINISHED_INDEX = "ix_task_executions_finished_at"

_last_run = importlib.import_module("reconciler.store.migrations.versions.0003_task_last_run")
_health = importlib.import_module("reconciler.store.migrations.versions.0007_task_health")

_NOT_PRUNING_PG = "current_setting('reconciler.pruning', true) IS DISTINCT FROM 'on'"
_NOT_PRUNING_SQLITE = "(SELECT pruning FROM history_retention WHERE id = 1) IS NOT 1"
_COUNTED = "('success', 'failure')"

_POSTGRES = [
    "DROP TRIGGER tr_task_executions_changed ON task_executions",
    """
    CREATE TRIGGER tr_task_executions_changed
    AFTER UPDATE OF status, queued_at ON task_executions
    FOR EACH ROW EXECUTE FUNCTION reconciler_execution_changed()
    """,
    f"""
    CREATE TRIGGER tr_task_executions_deleted AFTER DELETE ON task_executions
    FOR EACH ROW WHEN ({_NOT_PRUNING_PG})
    EXECUTE FUNCTION reconciler_execution_changed()
    """,
    "DROP TRIGGER tr_task_executions_health_deleted ON task_executions",
    f"""
    CREATE TRIGGER tr_task_executions_health_deleted AFTER DELETE ON task_executions
    FOR EACH ROW WHEN (OLD.status IN {_COUNTED} AND {_NOT_PRUNING_PG})
    EXECUTE FUNCTION reconciler_execution_health()
    """,
]
_POSTGRES_DOWN = [
    "DROP TRIGGER tr_task_executions_deleted ON task_executions",
    "DROP TRIGGER tr_task_executions_changed ON task_executions",
    """
    CREATE TRIGGER tr_task_executions_changed
    AFTER DELETE OR UPDATE OF status, queued_at ON task_executions
    FOR EACH ROW EXECUTE FUNCTION reconciler_execution_changed()
    """,
    "DROP TRIGGER tr_task_executions_health_deleted ON task_executions",
    f"""
    CREATE TRIGGER tr_task_executions_health_deleted AFTER DELETE ON task_executions
    FOR EACH ROW WHEN (OLD.status IN {_COUNTED})
    EXECUTE FUNCTION reconciler_execution_health()
    """,
]


def _sqlite(condition: str) -> list[str]:
    """The SQLite delete triggers, with ``condition`` added to when they run."""
    latest_when = f"WHEN {condition}" if condition else ""
    health_when = f"WHEN OLD.status IN {_COUNTED}" + (f" AND {condition}" if condition else "")
    latest = _last_run._SET_LATEST.format(name="OLD.task_name")
    recount = _health._RECOUNT.format(name="OLD.task_name")
    return [
        "DROP TRIGGER tr_task_executions_latest_delete",
        f"""
        CREATE TRIGGER tr_task_executions_latest_delete AFTER DELETE ON task_executions
        {latest_when}
        BEGIN
            UPDATE tasks SET {latest}
            WHERE name = OLD.task_name AND last_execution_id = OLD.id;
        END
        """,
        "DROP TRIGGER tr_task_executions_health_deleted",
        f"""
        CREATE TRIGGER tr_task_executions_health_deleted AFTER DELETE ON task_executions
        {health_when}
        BEGIN
            UPDATE tasks SET {recount} WHERE name = OLD.task_name;
        END
        """,
    ]


def _postgres() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def upgrade() -> None:
    op.create_table(
        "task_stats_daily",
        sa.Column("task_name", sa.String(128), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("successes", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("revoked", sa.Integer(), nullable=False),
        sa.Column("duration_p50_ms", sa.Float(), nullable=True),
        sa.Column("duration_p95_ms", sa.Float(), nullable=True),
        sa.Column("duration_max_ms", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_task_stats_daily_day", "task_stats_daily", ["day"])
    op.create_table(
        "history_retention",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("rolled_up_until", sa.Date(), nullable=True),
        sa.Column("pruning", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("last_pass_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.execute("INSERT INTO history_retention (id, pruning) VALUES (1, false)")
    op.create_index(
        FINISHED_INDEX,
        "task_executions",
        ["finished_at"],
        postgresql_where=sa.text("finished_at IS NOT NULL"),
        sqlite_where=sa.text("finished_at IS NOT NULL"),
    )
    for statement in _POSTGRES if _postgres() else _sqlite(_NOT_PRUNING_SQLITE):
        op.execute(statement)


def downgrade() -> None:
    for statement in _POSTGRES_DOWN if _postgres() else _sqlite(""):
        op.execute(statement)
    op.drop_index(FINISHED_INDEX, table_name="task_executions")
    op.drop_table("history_retention")
    op.drop_index("ix_task_stats_daily_day", table_name="task_stats_daily")
    op.drop_table("task_stats_daily")
