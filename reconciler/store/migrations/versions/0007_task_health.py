"""Per-task health kept by the database: last success, last failure, failures in a row.

``tasks`` gains ``last_success_at`` and ``last_failure_at`` (the finish time of the
newest ``success`` and ``failure`` under the task's name) and ``consecutive_failures``
(the failures that finished after the last success). Triggers on ``task_executions``
keep them, whoever writes the execution (tracking, beat, the reaper, a hand edit):

- an execution becoming ``success`` resets the count (to the failures that finished
  after it, normally none) unless a newer success is already known;
- one becoming ``failure`` (the reaper's ``worker lost`` too) counts one more when it
  finished after the last success;
- ``retry`` and ``revoked`` change nothing: a retry is not a failure, and a revoke is
  neither a failure nor a success, so it does not reset the count either;
- a row leaving a counted state (the reaper's guess replaced by the real report or a
  redelivery, a hand edit, a delete) has the three recounted from the rows.

A partial index on the finished successes and failures makes each of these a probe;
a task row created after executions were recorded under its name starts with them, and
existing rows are filled from the executions.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels = None
depends_on = None

COLUMNS = ("last_success_at", "last_failure_at", "consecutive_failures")
INDEX = "ix_task_executions_outcomes"
OUTCOMES = "status = 'success' OR status = 'failure'"  # OR, not IN: SQLite's planner needs it

_LAST = """(SELECT max(x.finished_at) FROM task_executions x
     WHERE x.task_name = {name} AND x.status = '{status}')"""

# The three columns recounted from the rows of one name.
_RECOUNT = f"""last_success_at = {_LAST.format(name="{name}", status="success")},
    last_failure_at = {_LAST.format(name="{name}", status="failure")},
    consecutive_failures = (SELECT count(*) FROM task_executions f
        WHERE f.task_name = {{name}} AND f.status = 'failure'
          AND COALESCE(f.finished_at > {_LAST.format(name="{name}", status="success")}, TRUE))"""

# NEW became a success: the newest one resets the count to the failures after it.
_SUCCEEDED = """UPDATE tasks SET last_success_at = NEW.finished_at,
        consecutive_failures = (SELECT count(*) FROM task_executions f
            WHERE f.task_name = NEW.task_name AND f.status = 'failure'
              AND f.finished_at > NEW.finished_at)
    WHERE name = NEW.task_name AND NEW.finished_at IS NOT NULL
      AND (last_success_at IS NULL OR last_success_at <= NEW.finished_at)"""

# NEW became a failure: one more in a row when it finished after the last success.
_FAILED = """UPDATE tasks SET
        last_failure_at = CASE WHEN last_failure_at IS NULL
            OR last_failure_at < NEW.finished_at THEN NEW.finished_at
            ELSE last_failure_at END,
        consecutive_failures = consecutive_failures
            + CASE WHEN COALESCE(NEW.finished_at > last_success_at, TRUE) THEN 1 ELSE 0 END
    WHERE name = NEW.task_name"""

_COUNTED = "('success', 'failure')"

_POSTGRES = [
    f"""
    CREATE FUNCTION reconciler_execution_health() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            UPDATE tasks SET {_RECOUNT.format(name="OLD.task_name")}
            WHERE name = OLD.task_name;
        ELSIF TG_OP = 'UPDATE' AND OLD.status IN {_COUNTED} THEN
            UPDATE tasks SET {_RECOUNT.format(name="NEW.task_name")}
            WHERE name = NEW.task_name;
        ELSIF NEW.status = 'success' THEN
            {_SUCCEEDED};
        ELSIF NEW.status = 'failure' THEN
            {_FAILED};
        END IF;
        RETURN NULL;
    END $$
    """,
    # Row by row, but only rows that reach or leave a counted state call the function:
    # beat's batches of pending rows and tracking's started and retry steps do not.
    f"""
    CREATE TRIGGER tr_task_executions_health_inserted AFTER INSERT ON task_executions
    FOR EACH ROW WHEN (NEW.status IN {_COUNTED})
    EXECUTE FUNCTION reconciler_execution_health()
    """,
    f"""
    CREATE TRIGGER tr_task_executions_health_changed
    AFTER UPDATE OF status, finished_at ON task_executions
    FOR EACH ROW WHEN ((OLD.status IN {_COUNTED} OR NEW.status IN {_COUNTED})
        AND (OLD.status IS DISTINCT FROM NEW.status
             OR OLD.finished_at IS DISTINCT FROM NEW.finished_at))
    EXECUTE FUNCTION reconciler_execution_health()
    """,
    f"""
    CREATE TRIGGER tr_task_executions_health_deleted AFTER DELETE ON task_executions
    FOR EACH ROW WHEN (OLD.status IN {_COUNTED})
    EXECUTE FUNCTION reconciler_execution_health()
    """,
    f"""
    CREATE FUNCTION reconciler_task_health() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        NEW.last_success_at := {_LAST.format(name="NEW.name", status="success")};
        NEW.last_failure_at := {_LAST.format(name="NEW.name", status="failure")};
        NEW.consecutive_failures := (SELECT count(*) FROM task_executions f
            WHERE f.task_name = NEW.name AND f.status = 'failure'
              AND COALESCE(f.finished_at > NEW.last_success_at, TRUE));
        RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER tr_tasks_health BEFORE INSERT ON tasks
    FOR EACH ROW EXECUTE FUNCTION reconciler_task_health()
    """,
]
_POSTGRES_DOWN = [
    "DROP TRIGGER tr_tasks_health ON tasks",
    "DROP FUNCTION reconciler_task_health()",
    "DROP TRIGGER tr_task_executions_health_deleted ON task_executions",
    "DROP TRIGGER tr_task_executions_health_changed ON task_executions",
    "DROP TRIGGER tr_task_executions_health_inserted ON task_executions",
    "DROP FUNCTION reconciler_execution_health()",
]

_SQLITE = [
    f"""
    CREATE TRIGGER tr_task_executions_health_succeeded AFTER INSERT ON task_executions
    WHEN NEW.status = 'success'
    BEGIN {_SUCCEEDED}; END
    """,
    f"""
    CREATE TRIGGER tr_task_executions_health_failed AFTER INSERT ON task_executions
    WHEN NEW.status = 'failure'
    BEGIN {_FAILED}; END
    """,
    f"""
    CREATE TRIGGER tr_task_executions_health_became_success
    AFTER UPDATE OF status, finished_at ON task_executions
    WHEN OLD.status NOT IN {_COUNTED} AND NEW.status = 'success'
    BEGIN {_SUCCEEDED}; END
    """,
    f"""
    CREATE TRIGGER tr_task_executions_health_became_failure
    AFTER UPDATE OF status, finished_at ON task_executions
    WHEN OLD.status NOT IN {_COUNTED} AND NEW.status = 'failure'
    BEGIN {_FAILED}; END
    """,
    f"""
    CREATE TRIGGER tr_task_executions_health_changed
    AFTER UPDATE OF status, finished_at ON task_executions
    WHEN OLD.status IN {_COUNTED}
        AND (OLD.status IS NOT NEW.status OR OLD.finished_at IS NOT NEW.finished_at)
    BEGIN
        UPDATE tasks SET {_RECOUNT.format(name="NEW.task_name")} WHERE name = NEW.task_name;
    END
    """,
    f"""
    CREATE TRIGGER tr_task_executions_health_deleted AFTER DELETE ON task_executions
    WHEN OLD.status IN {_COUNTED}
    BEGIN
        UPDATE tasks SET {_RECOUNT.format(name="OLD.task_name")} WHERE name = OLD.task_name;
    END
    """,
    f"""
    CREATE TRIGGER tr_tasks_health AFTER INSERT ON tasks
    BEGIN
        UPDATE tasks SET {_RECOUNT.format(name="NEW.name")} WHERE id = NEW.id;
    END
    """,
]
_SQLITE_DOWN = [
    "DROP TRIGGER tr_tasks_health",
    "DROP TRIGGER tr_task_executions_health_deleted",
    "DROP TRIGGER tr_task_executions_health_changed",
    "DROP TRIGGER tr_task_executions_health_became_failure",
    "DROP TRIGGER tr_task_executions_health_became_success",
    "DROP TRIGGER tr_task_executions_health_failed",
    "DROP TRIGGER tr_task_executions_health_succeeded",
]


def _postgres() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def upgrade() -> None:
    op.add_column("tasks", sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("tasks", sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "tasks",
        sa.Column("consecutive_failures", sa.Integer(), server_default="0", nullable=False),
    )
    op.create_index(
        INDEX,
        "task_executions",
        ["task_name", "status", "finished_at"],
        postgresql_where=sa.text(OUTCOMES),
        sqlite_where=sa.text(OUTCOMES),
    )
    for statement in _POSTGRES if _postgres() else _SQLITE:
        op.execute(statement)
    # Every row (deleted ones too), a few index probes each.
    op.execute(f"UPDATE tasks SET {_RECOUNT.format(name='tasks.name')}")


def downgrade() -> None:
    for statement in _POSTGRES_DOWN if _postgres() else _SQLITE_DOWN:
        op.execute(statement)
    op.drop_index(INDEX, table_name="task_executions")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+), as in 0004: a batch copy of the
    # table would trip the triggers that name it.
    for column in reversed(COLUMNS):
        op.drop_column("tasks", column)
