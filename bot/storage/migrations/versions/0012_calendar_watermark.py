"""Calendar freeze notifications: each environment's watermark, up to when its windows'
openings and closings have been told (0012)."""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision: str | None = "0011"


def upgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.add_column(
            sa.Column("calendar_checked_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.drop_column("calendar_checked_at")
