"""The first schema: tasks, task_executions, applies, beat_heartbeats, change_marker.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None

# Migrations spell their types out instead of importing the models, so a later
# change to tables.py cannot silently rewrite history.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("task", sa.String(300), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("source_path", sa.String(1000), nullable=False),
        sa.Column("source_line", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("change_seq", Id, nullable=False),
        sa.Column("created_at", utc(), nullable=False),
        sa.Column("updated_at", utc(), nullable=False),
        sa.Column("deleted_at", utc(), nullable=True),
        sa.Column("schedule_anchor", utc(), nullable=True),
        sa.Column("next_run_at", utc(), nullable=True),
        sa.Column("last_run_at", utc(), nullable=True),
        sa.Column("skipped_count", sa.Integer(), nullable=False),
        sa.Column("missed_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
        sa.UniqueConstraint("name", name="uq_tasks_name"),
    )
    op.create_index("ix_tasks_owner", "tasks", ["owner"])
    op.create_index("ix_tasks_change_seq", "tasks", ["change_seq"])
    op.create_index("ix_tasks_due", "tasks", ["next_run_at"])

    op.create_table(
        "task_executions",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("task_name", sa.String(128), nullable=False),
        sa.Column("celery_task_id", sa.String(64), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("scheduled_for", utc(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("kwargs", sa.JSON(), nullable=False),
        sa.Column("queued_at", utc(), nullable=False),
        sa.Column("started_at", utc(), nullable=True),
        sa.Column("finished_at", utc(), nullable=True),
        sa.Column("duration_ms", sa.BigInteger(), nullable=True),
        sa.Column("worker", sa.String(300), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("deadline_at", utc(), nullable=True),
        sa.Column("published_at", utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_task_executions"),
        sa.UniqueConstraint("celery_task_id", name="uq_task_executions_celery_task_id"),
        sa.UniqueConstraint(
            "task_name", "scheduled_for", name="uq_task_executions_task_name_scheduled_for"
        ),
    )
    op.create_index("ix_task_executions_task_id", "task_executions", ["task_name", "id"])
    op.create_index("ix_task_executions_status_id", "task_executions", ["status", "id"])
    op.create_index("ix_task_executions_queued_at", "task_executions", ["queued_at"])
    op.create_index("ix_task_executions_published_at", "task_executions", ["published_at"])

    op.create_table(
        "applies",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("applied_at", utc(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("created_names", sa.JSON(), nullable=False),
        sa.Column("updated_names", sa.JSON(), nullable=False),
        sa.Column("deleted_names", sa.JSON(), nullable=False),
        sa.Column("tasks_dir", sa.String(1000), nullable=False),
        sa.Column("git_commit", sa.String(64), nullable=True),
        sa.Column("git_dirty", sa.Boolean(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_applies"),
    )
    op.create_index("ix_applies_applied_at", "applies", ["applied_at"])

    op.create_table(
        "beat_heartbeats",
        sa.Column("instance", sa.String(200), nullable=False),
        sa.Column("hostname", sa.String(300), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", utc(), nullable=False),
        sa.Column("last_tick_at", utc(), nullable=False),
        sa.PrimaryKeyConstraint("instance", name="pk_beat_heartbeats"),
    )
    op.create_index("ix_beat_heartbeats_last_tick_at", "beat_heartbeats", ["last_tick_at"])

    change_marker = op.create_table(
        "change_marker",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", Id, nullable=False),
        sa.Column("changed_at", utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_change_marker"),
    )
    # The single row every apply locks and bumps.
    op.bulk_insert(change_marker, [{"id": 1, "seq": 0, "changed_at": None}])


def downgrade() -> None:
    for table in ("change_marker", "beat_heartbeats", "applies", "task_executions", "tasks"):
        op.drop_table(table)
