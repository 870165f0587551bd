"""Slots a calendar drops, counted apart from those ``overlap: skip`` skips.

``tasks.calendar_skipped_count`` counts the slots whose date a task's ``skip_on`` /
``only_on`` excludes (docs/beat.md, "Schedules"); ``skipped_count`` keeps the overlap
skips only, which the ``missed`` alert reports. Existing rows start at 0: the drops
counted before stay in ``skipped_count``, as beat wrote them. The downgrade adds the
column back into ``skipped_count``, which counted both before this revision.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision: str | None = "0010"
branch_labels = None
depends_on = None

COLUMN = "calendar_skipped_count"


def upgrade() -> None:
    op.add_column("tasks", sa.Column(COLUMN, sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    op.execute(f"UPDATE tasks SET skipped_count = skipped_count + {COLUMN} WHERE {COLUMN} > 0")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+), as in 0007.
    op.drop_column("tasks", COLUMN)
