"""Alert state, so each alert is sent once and resolved once, whichever beat sends it.

``alerts`` holds one row per alert *episode*: a task, one of its conditions
(docs/beat.md, "Alerts") and a key that names the episode (the failed execution's id,
the last success the dead-man's switch counts from...). Two beats that see the same
condition write the same key, and the unique constraint keeps one row. A row is
pending while ``next_try_at`` is set: its firing message, then its resolved one, are
sent by whichever beat claims it by compare-and-set on that column.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("task_name", sa.String(128), nullable=False),
        sa.Column("condition", sa.String(32), nullable=False),
        sa.Column("episode", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.String(32), nullable=True),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_try_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.UniqueConstraint(
            "task_name", "condition", "episode", name="uq_alerts_task_name_condition_episode"
        ),
    )
    op.create_index("ix_alerts_next_try_at", "alerts", ["next_try_at"])
    op.create_index("ix_alerts_resolved_at", "alerts", ["resolved_at"])


def downgrade() -> None:
    op.drop_index("ix_alerts_resolved_at", table_name="alerts")
    op.drop_index("ix_alerts_next_try_at", table_name="alerts")
    op.drop_table("alerts")
