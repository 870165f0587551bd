"""Where each owner's alerts go: the defaults document's ``notify``, written by apply.

``notify_targets`` holds one row per owner: the name of the environment variable that
holds the webhook URL (never the URL) and the body's format (``json`` or ``slack``).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    timestamp = sa.DateTime(timezone=True)
    op.create_table(
        "notify_targets",
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("webhook_url_env", sa.String(200), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("updated_at", timestamp, nullable=False),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_notify_targets")),
    )


def downgrade() -> None:
    op.drop_table("notify_targets")
