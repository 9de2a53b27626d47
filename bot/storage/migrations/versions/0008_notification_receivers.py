"""Notification receivers of projects and environments, from the projects file (0008, 2026-12-01)."""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"


def upgrade() -> None:
    # Plain ADD COLUMN, as in 0005 (batch mode could reorder SQLite's indexes). No receivers
    # until the projects file names some; it is synced at start.
    op.add_column(
        "projects", sa.Column("notifications", sa.JSON(), nullable=False, server_default="[]")
    )
    op.add_column(
        "environments", sa.Column("notifications", sa.JSON(), nullable=False, server_default="[]")
    )


def downgrade() -> None:
    with op.batch_alter_table("environments", schema=None) as batch_op:
        batch_op.drop_column("notifications")

    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("notifications")
