"""Claims with an owner and a lease, deliveries refused at the worker, and the owner an
execution ran under.

``task_executions`` gains:

- ``claimed_by`` and ``lease_until``: the beat instance that claimed a slot and until
  when (by the database's clock) only it may publish it. Another beat takes an
  unpublished row over only once its lease has lapsed, by compare-and-set.
- ``claimed_attempt``: the attempt (Celery's retry count) a worker claimed the
  execution for when its delivery started; a second delivery of the same attempt does
  not run. No indexed column changes, so the claim stays a cheap single-row update.
- ``duplicates``: how many deliveries of the execution a worker refused to run
  because the execution had already started or finished elsewhere.
- ``owner``: the task's owner when the execution was recorded, so access to history
  follows the execution, not the task's current owner. A trigger fills it from the
  task row when a row is inserted without one, whoever inserts it (beat, ``reconcile
  trigger``, tracking, a hand edit). Existing rows take their task's owner of today,
  the best that is known of them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None

# The columns the backfill reads and writes, spelled out (not the models; see 0001).
tasks = sa.table("tasks", sa.column("name", sa.String()), sa.column("owner", sa.String()))
executions = sa.table(
    "task_executions", sa.column("task_name", sa.String()), sa.column("owner", sa.String())
)


_POSTGRES = [
    """
    CREATE FUNCTION reconciler_execution_owner() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.owner IS NULL THEN
            SELECT t.owner INTO NEW.owner FROM tasks t WHERE t.name = NEW.task_name;
        END IF;
        RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER tr_task_executions_owner BEFORE INSERT ON task_executions
    FOR EACH ROW EXECUTE FUNCTION reconciler_execution_owner()
    """,
]
_POSTGRES_DOWN = [
    "DROP TRIGGER tr_task_executions_owner ON task_executions",
    "DROP FUNCTION reconciler_execution_owner()",
]
_SQLITE = [
    """
    CREATE TRIGGER tr_task_executions_owner AFTER INSERT ON task_executions
    WHEN NEW.owner IS NULL
    BEGIN
        UPDATE task_executions
        SET owner = (SELECT t.owner FROM tasks t WHERE t.name = NEW.task_name)
        WHERE id = NEW.id;
    END
    """
]
_SQLITE_DOWN = ["DROP TRIGGER tr_task_executions_owner"]


def _postgres() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def upgrade() -> None:
    op.add_column("task_executions", sa.Column("claimed_by", sa.String(200), nullable=True))
    op.add_column(
        "task_executions", sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("task_executions", sa.Column("claimed_attempt", sa.Integer(), nullable=True))
    op.add_column(
        "task_executions",
        sa.Column("duplicates", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column("task_executions", sa.Column("owner", sa.String(200), nullable=True))
    op.create_index("ix_task_executions_owner_id", "task_executions", ["owner", "id"])
    owner = sa.select(tasks.c.owner).where(tasks.c.name == executions.c.task_name).scalar_subquery()
    op.execute(executions.update().values(owner=owner))
    for statement in _POSTGRES if _postgres() else _SQLITE:
        op.execute(statement)


def downgrade() -> None:
    for statement in _POSTGRES_DOWN if _postgres() else _SQLITE_DOWN:
        op.execute(statement)
    op.drop_index("ix_task_executions_owner_id", table_name="task_executions")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): a batch copy of the table would
    # trip migration 0003's trigger on tasks, which names task_executions.
    for column in ("owner", "duplicates", "claimed_attempt", "lease_until", "claimed_by"):
        op.drop_column("task_executions", column)
