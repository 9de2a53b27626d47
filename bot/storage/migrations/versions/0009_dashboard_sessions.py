"""Dashboard sessions, Tarmac's own secrets, and the deployments' updated_at index (0009, 2026-12-01)."""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = "0008"


def upgrade() -> None:
    op.create_table(
        "dashboard_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("token_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("actor", sa.String(length=320), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("notice", sa.Text(), nullable=True),
        sa.Column("notice_is_error", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_dashboard_sessions")),
    )
    op.create_index(
        op.f("ix_dashboard_sessions_expires_at"), "dashboard_sessions", ["expires_at"], unique=False
    )
    op.create_table(
        "dashboard_secrets",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_dashboard_secrets")),
    )
    op.create_index(op.f("ix_deployments_updated_at"), "deployments", ["updated_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_deployments_updated_at"), table_name="deployments")
    op.drop_table("dashboard_secrets")
    op.drop_index(op.f("ix_dashboard_sessions_expires_at"), table_name="dashboard_sessions")
    op.drop_table("dashboard_sessions")
