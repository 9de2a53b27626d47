"""GitHub deployments made by the deploy workflow's job; what a run waits for (0005, 2026-12-01)."""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"


def upgrade() -> None:
    # Plain ADD COLUMN, not batch mode: on SQLite batch mode may copy the table and create its
    # indexes again in another order, and SQLite (without statistics) breaks ties between
    # equally good indexes by their order, which would change the plans tests/test_query_plans.py
    # checks.
    # Today's behaviour for existing environments; the projects file sets theirs at start.
    op.add_column(
        "environments",
        sa.Column(
            "github_deployment", sa.String(length=20), nullable=False, server_default="tarmac"
        ),
    )
    op.add_column(
        "deployments",
        sa.Column(
            "github_deployment_by_actions", sa.Boolean(), nullable=False, server_default=sa.false()
        ),
    )
    op.add_column("deployments", sa.Column("waiting_for", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_column("waiting_for")
        batch_op.drop_column("github_deployment_by_actions")

    with op.batch_alter_table("environments", schema=None) as batch_op:
        batch_op.drop_column("github_deployment")
