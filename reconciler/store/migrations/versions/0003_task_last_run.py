"""Each task row carries its latest execution, kept by the database itself.

The task list showed each task's last run by looking up the newest execution of every
task on the page: one index probe per row, which was most of what a page cost the
database, and a sort by last run had to probe every task. ``tasks`` gains
``last_execution_id``, ``last_status`` and ``last_queued_at``, and triggers on
``task_executions`` keep them equal to the row with the highest id under the task's
name, whoever writes it (beat, ``reconcile trigger``, tracking, the reaper, or a hand
edit):

- a new execution becomes the task's latest when its id is the highest (on PostgreSQL
  once per statement, over all the rows it inserted);
- a change of status or queue time of the latest is copied;
- deleting the latest makes the next one the latest;
- a task row created after executions were recorded under its name starts with them.

The writes happen in the transaction that changes the execution, so the list can never
disagree with the history. Existing rows are filled from the executions index.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None

COLUMNS = ("last_execution_id", "last_status", "last_queued_at")
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# The three columns set to the newest execution under a name (a row-value assignment).
_SET_LATEST = f"""({", ".join(COLUMNS)}) =
    (SELECT e.id, e.status, e.queued_at FROM task_executions e
     WHERE e.task_name = {{name}} ORDER BY e.id DESC LIMIT 1)"""

_POSTGRES = [
    # New executions: once per statement, over all the rows it inserted (beat inserts a
    # batch of fired slots in one statement, and this makes one set-based update of it).
    """
    CREATE FUNCTION reconciler_executions_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE tasks SET last_execution_id = n.id, last_status = n.status,
                         last_queued_at = n.queued_at
        FROM (SELECT DISTINCT ON (task_name) task_name, id, status, queued_at
              FROM inserted ORDER BY task_name, id DESC) AS n
        WHERE tasks.name = n.task_name
          AND (tasks.last_execution_id IS NULL OR tasks.last_execution_id < n.id);
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER tr_task_executions_inserted AFTER INSERT ON task_executions
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION reconciler_executions_inserted()
    """,
    # Changed and deleted executions: row by row (tracking writes one row per statement).
    f"""
    CREATE FUNCTION reconciler_execution_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            UPDATE tasks SET {_SET_LATEST.format(name="OLD.task_name")}
            WHERE name = OLD.task_name AND last_execution_id = OLD.id;
        ELSE
            UPDATE tasks SET last_status = NEW.status, last_queued_at = NEW.queued_at
            WHERE name = NEW.task_name AND last_execution_id = NEW.id
              AND (last_status IS DISTINCT FROM NEW.status
                   OR last_queued_at IS DISTINCT FROM NEW.queued_at);
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER tr_task_executions_changed
    AFTER DELETE OR UPDATE OF status, queued_at ON task_executions
    FOR EACH ROW EXECUTE FUNCTION reconciler_execution_changed()
    """,
    """
    CREATE FUNCTION reconciler_task_created() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        SELECT e.id, e.status, e.queued_at
        INTO NEW.last_execution_id, NEW.last_status, NEW.last_queued_at
        FROM task_executions e WHERE e.task_name = NEW.name ORDER BY e.id DESC LIMIT 1;
        RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER tr_tasks_latest BEFORE INSERT ON tasks
    FOR EACH ROW EXECUTE FUNCTION reconciler_task_created()
    """,
]
_POSTGRES_DOWN = [
    "DROP TRIGGER tr_tasks_latest ON tasks",
    "DROP FUNCTION reconciler_task_created()",
    "DROP TRIGGER tr_task_executions_changed ON task_executions",
    "DROP FUNCTION reconciler_execution_changed()",
    "DROP TRIGGER tr_task_executions_inserted ON task_executions",
    "DROP FUNCTION reconciler_executions_inserted()",
]

_SQLITE = [
    """
    CREATE TRIGGER tr_task_executions_latest_insert AFTER INSERT ON task_executions
    BEGIN
        UPDATE tasks SET last_execution_id = NEW.id, last_status = NEW.status,
                         last_queued_at = NEW.queued_at
        WHERE name = NEW.task_name
          AND (last_execution_id IS NULL OR last_execution_id <= NEW.id);
    END
    """,
    """
    CREATE TRIGGER tr_task_executions_latest_update
    AFTER UPDATE OF status, queued_at ON task_executions
    BEGIN
        UPDATE tasks SET last_status = NEW.status, last_queued_at = NEW.queued_at
        WHERE name = NEW.task_name AND last_execution_id = NEW.id;
    END
    """,
    f"""
    CREATE TRIGGER tr_task_executions_latest_delete AFTER DELETE ON task_executions
    BEGIN
        UPDATE tasks SET {_SET_LATEST.format(name="OLD.task_name")}
        WHERE name = OLD.task_name AND last_execution_id = OLD.id;
    END
    """,
    f"""
    CREATE TRIGGER tr_tasks_latest AFTER INSERT ON tasks
    BEGIN
        UPDATE tasks SET {_SET_LATEST.format(name="NEW.name")}
        WHERE id = NEW.id;
    END
    """,
]
_SQLITE_DOWN = [
    "DROP TRIGGER tr_tasks_latest",
    "DROP TRIGGER tr_task_executions_latest_delete",
    "DROP TRIGGER tr_task_executions_latest_update",
    "DROP TRIGGER tr_task_executions_latest_insert",
]


def upgrade() -> None:
    op.add_column("tasks", sa.Column("last_execution_id", Id, nullable=True))
    op.add_column("tasks", sa.Column("last_status", sa.String(16), nullable=True))
    op.add_column("tasks", sa.Column("last_queued_at", sa.DateTime(timezone=True), nullable=True))
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in _POSTGRES if postgres else _SQLITE:
        op.execute(statement)
    # Every row (deleted ones too), one index probe each.
    op.execute(f"UPDATE tasks SET {_SET_LATEST.format(name='tasks.name')}")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in _POSTGRES_DOWN if postgres else _SQLITE_DOWN:
        op.execute(statement)
    with op.batch_alter_table("tasks") as batch:
        for column in reversed(COLUMNS):
            batch.drop_column(column)
