"""What the task list reads without touching each spec: its last run and its schedule.

The (task_name, id) index of executions also carries status and queued_at, so a
task's last run is read from the index alone (an index-only scan), without a visit to
the table. PostgreSQL only (INCLUDE); on SQLite the index stays as it was. The index is
rebuilt inside the upgrade's transaction (not CONCURRENTLY), so writes to executions
wait while it builds: seconds for a million executions.

``tasks`` gains ``schedule_text`` and ``timezone``, denormalised from the spec like
owner or type, so the list shows a task's schedule without parsing its JSON spec.
Existing rows are filled from their stored specs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from alembic import op

# A pure function of the stored JSON: the backfill writes what apply would write.
from reconciler.core.schedulefields import schedule_text

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None

INDEX = "ix_task_executions_task_id"
# Rows read and updated per statement while filling the new columns.
BATCH = 1000

# The columns the backfill reads and writes, spelled out (not the models; see 0001).
tasks = sa.table(
    "tasks",
    sa.column("name", sa.String()),
    sa.column("spec", sa.JSON()),
    sa.column("schedule_text", sa.Text()),
    sa.column("timezone", sa.Text()),
)


def upgrade() -> None:
    _include_status_in_the_executions_index()
    op.add_column("tasks", sa.Column("schedule_text", sa.Text(), nullable=True))
    # The server default fills the existing rows, which the backfill then corrects.
    op.add_column("tasks", sa.Column("timezone", sa.Text(), server_default="UTC", nullable=False))
    _backfill(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("timezone")
        batch.drop_column("schedule_text")
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index(INDEX, table_name="task_executions")
    op.create_index(INDEX, "task_executions", ["task_name", "id"])


def _include_status_in_the_executions_index() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index(INDEX, table_name="task_executions")
    op.create_index(
        INDEX,
        "task_executions",
        ["task_name", "id"],
        postgresql_include=["status", "queued_at"],
    )


def _backfill(connection: sa.Connection) -> None:
    """Fill both columns of every row (deleted ones too) from its stored spec.

    Pages are keyset on the unique name, so each read is an index range and memory
    stays at one batch however many tasks there are.
    """
    page = (
        sa.select(tasks.c.name, tasks.c.spec)
        .where(tasks.c.name > sa.bindparam("after"))
        .order_by(tasks.c.name)
        .limit(BATCH)
    )
    fill = (
        tasks.update()
        .where(tasks.c.name == sa.bindparam("b_name"))
        .values(schedule_text=sa.bindparam("b_schedule_text"), timezone=sa.bindparam("b_timezone"))
    )
    after = ""
    while rows := connection.execute(page, {"after": after}).all():
        connection.execute(fill, [_columns(row.name, row.spec) for row in rows])
        after = rows[-1].name


def _columns(name: str, spec: Any) -> dict[str, Any]:
    """The new columns' values for one row; a spec that is not a mapping gets the
    defaults, and the next apply sees the disagreement as drift and repairs it."""
    values: Mapping[str, Any] = spec if isinstance(spec, Mapping) else {}
    return {
        "b_name": name,
        "b_schedule_text": schedule_text(values),
        "b_timezone": str(values.get("timezone") or "UTC"),
    }
