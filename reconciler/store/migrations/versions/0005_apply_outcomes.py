"""Every apply attempt recorded with its outcome and first errors.

``applies`` held only the applies that changed something. It now holds every attempt
(docs/plan-and-apply.md, "The apply log and sync status"):

- ``outcome``: ``applied``, ``invalid`` (the task files have errors), ``refused`` (the
  mass-delete guard, a missing tasks directory, a value the database does not take) or
  ``failed`` (a lock timeout, a database error); existing rows were all applied;
- ``error_count`` and ``errors``: how many errors, and the first 20 as located lines
  (``path:line:column: field: message``, as ``reconcile validate`` prints them);
- ``attempts`` and ``last_attempt_at``: a failure repeated identically (the watch loop
  retries every resync) stays one row whose count and latest time move.

The index on (outcome, id) finds the last applied attempt without scanning the log.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None

# The columns the backfill reads and writes, spelled out (not the models; see 0001).
applies = sa.table(
    "applies",
    sa.column("applied_at", sa.DateTime(timezone=True)),
    sa.column("last_attempt_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    op.add_column(
        "applies", sa.Column("outcome", sa.String(16), server_default="applied", nullable=False)
    )
    op.add_column(
        "applies", sa.Column("error_count", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("applies", sa.Column("errors", sa.JSON(), nullable=True))
    op.add_column(
        "applies", sa.Column("attempts", sa.Integer(), server_default="1", nullable=False)
    )
    op.add_column(
        "applies", sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute(applies.update().values(last_attempt_at=applies.c.applied_at))
    op.create_index("ix_applies_outcome_id", "applies", ["outcome", "id"])


def downgrade() -> None:
    op.drop_index("ix_applies_outcome_id", table_name="applies")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+), as in 0004.
    for column in ("last_attempt_at", "attempts", "errors", "error_count", "outcome"):
        op.drop_column("applies", column)
