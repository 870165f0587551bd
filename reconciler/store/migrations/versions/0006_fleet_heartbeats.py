"""Heartbeats of beats and watch loops under stable names.

``beat_heartbeats`` gains ``name``, the beat's stable name (the host name, or
``RECONCILER_BEAT_NAME``), unique among the rows, and ``wanted_name``, the name a beat
asked for when another live beat held it. Rows stay one per process (``instance``, the
owner of its claims), so a beat of an older version keeps writing its row (``name``
NULL) until it is restarted.

``watch_heartbeats`` is new: one row per running ``reconcile watch`` under its stable
name, with its ``--git-pull`` state (the commit it last pulled, the failures since a
pull last worked, the last error).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels = None
depends_on = None


def utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("beat_heartbeats", sa.Column("name", sa.String(200), nullable=True))
    op.add_column("beat_heartbeats", sa.Column("wanted_name", sa.String(200), nullable=True))
    op.create_index("ix_beat_heartbeats_name", "beat_heartbeats", ["name"], unique=True)
    op.create_table(
        "watch_heartbeats",
        sa.Column("instance", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("hostname", sa.String(300), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", utc(), nullable=False),
        sa.Column("last_seen_at", utc(), nullable=False),
        sa.Column("tasks_dir", sa.String(1000), nullable=False),
        sa.Column("wanted_name", sa.String(200), nullable=True),
        sa.Column("git_pull_every", sa.Float(), nullable=True),
        sa.Column("git_commit", sa.String(64), nullable=True),
        sa.Column("last_pull_at", utc(), nullable=True),
        sa.Column("pull_failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("pull_failing_since", utc(), nullable=True),
        sa.Column("pull_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("instance", name="pk_watch_heartbeats"),
    )
    op.create_index("ix_watch_heartbeats_name", "watch_heartbeats", ["name"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_watch_heartbeats_name", table_name="watch_heartbeats")
    op.drop_table("watch_heartbeats")
    op.drop_index("ix_beat_heartbeats_name", table_name="beat_heartbeats")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+), as in 0004.
    for column in ("wanted_name", "name"):
        op.drop_column("beat_heartbeats", column)
