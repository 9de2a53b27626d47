"""Change reports between commits, and a project's `paths:` (0006, 2026-12-01)."""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"


def upgrade() -> None:
    op.add_column("projects", sa.Column("paths", sa.JSON(), nullable=False, server_default="[]"))
    op.create_table(
        "change_reports",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("repo", sa.String(length=200), nullable=False),
        sa.Column("base_commit", sa.String(length=40), nullable=False),
        sa.Column("head_commit", sa.String(length=40), nullable=False),
        sa.Column("paths_digest", sa.String(length=64), nullable=False),
        sa.Column("paths", sa.JSON(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ahead_by", sa.Integer(), nullable=False),
        sa.Column("behind_by", sa.Integer(), nullable=False),
        sa.Column("diverged", sa.Boolean(), nullable=False),
        sa.Column("commits", sa.JSON(), nullable=False),
        sa.Column("pull_requests", sa.JSON(), nullable=False),
        sa.Column("github_calls", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_reports")),
        sa.UniqueConstraint(
            "repo",
            "base_commit",
            "head_commit",
            "paths_digest",
            name=op.f("uq_change_reports_repo_base_commit_head_commit_paths_digest"),
        ),
    )


def downgrade() -> None:
    op.drop_table("change_reports")
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("paths")
