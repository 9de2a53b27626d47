"""Pull-request notes and GitHub Releases: their tables and switches (0007, 2026-12-01)."""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"


def upgrade() -> None:
    # Plain ADD COLUMN, as in 0005: batch mode may rebuild the table (see there).
    # On by default, as the projects file has them; it sets each project's at start.
    op.add_column(
        "projects",
        sa.Column("pull_request_comments", sa.Boolean(), nullable=False, server_default=sa.true()),
    )
    op.add_column(
        "projects",
        sa.Column("github_releases", sa.Boolean(), nullable=False, server_default=sa.true()),
    )
    op.create_table(
        "pr_notes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("repo", sa.String(length=200), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("comment_id", sa.BigInteger(), nullable=True),
        sa.Column("posted_body", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pr_notes")),
        sa.UniqueConstraint("repo", "number", name=op.f("uq_pr_notes_repo_number")),
    )
    op.create_table(
        "pr_note_environments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("note_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "environment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "release_candidate_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("version", sa.String(length=220), nullable=False),
        sa.Column("presence", sa.String(length=10), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["note_id"],
            ["pr_notes.id"],
            name=op.f("fk_pr_note_environments_note_id_pr_notes"),
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_pr_note_environments_environment_id_environments"),
        ),
        sa.ForeignKeyConstraint(
            ["release_candidate_id"],
            ["release_candidates.id"],
            name=op.f("fk_pr_note_environments_release_candidate_id_release_candidates"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pr_note_environments")),
        sa.UniqueConstraint(
            "note_id",
            "environment_id",
            name=op.f("uq_pr_note_environments_note_id_environment_id"),
        ),
    )


def downgrade() -> None:
    op.drop_table("pr_note_environments")
    op.drop_table("pr_notes")
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("github_releases")
        batch_op.drop_column("pull_request_comments")
