"""Build timeouts (0004, 2026-12-01)."""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"


def upgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        # Existing projects get the default; the projects file sets theirs at every start.
        batch_op.add_column(
            sa.Column("build_timeout_minutes", sa.Integer(), nullable=False, server_default="60")
        )

    with op.batch_alter_table("release_candidates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("build_error", sa.Text(), nullable=True))
        batch_op.create_index("ix_release_candidates_build_status", ["build_status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("release_candidates", schema=None) as batch_op:
        batch_op.drop_index("ix_release_candidates_build_status")
        batch_op.drop_column("build_error")

    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("build_timeout_minutes")
