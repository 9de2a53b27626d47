"""Initial schema (0001, 2026-11-28)."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("projects", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(length=320), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("name", name=op.f("uq_api_tokens_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_table(
        "projects",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("repo", sa.String(length=200), nullable=False),
        sa.Column("tag_prefix", sa.String(length=100), nullable=False),
        sa.Column("build_workflow", sa.String(length=200), nullable=True),
        sa.Column("build_inputs", sa.JSON(), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("name", name=op.f("uq_projects_name")),
    )
    op.create_table(
        "environments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "project_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("production", sa.Boolean(), nullable=False),
        sa.Column("deploy_workflow", sa.String(length=200), nullable=True),
        sa.Column("deploy_inputs", sa.JSON(), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("auto_deploy", sa.Boolean(), nullable=False),
        sa.Column("timeout_minutes", sa.Integer(), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("frozen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("frozen_by", sa.String(length=320), nullable=True),
        sa.Column("frozen_reason", sa.Text(), nullable=True),
        sa.Column("frozen_until", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_environments_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_environments")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_environments_project_id_name")),
    )
    op.create_table(
        "releases",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "project_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("version", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_releases_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_releases")),
        sa.UniqueConstraint("project_id", "version", name=op.f("uq_releases_project_id_version")),
    )
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.create_index("ix_releases_project_id_id", ["project_id", "id"], unique=False)

    op.create_table(
        "release_candidates",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "project_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "release_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("version", sa.String(length=220), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("commit_sha", sa.String(length=40), nullable=False),
        sa.Column("repo", sa.String(length=200), nullable=False),
        sa.Column("build_status", sa.String(length=20), nullable=False),
        sa.Column("build_run_id", sa.BigInteger(), nullable=True),
        sa.Column("build_run_url", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_release_candidates_project_id_projects")
        ),
        sa.ForeignKeyConstraint(
            ["release_id"], ["releases.id"], name=op.f("fk_release_candidates_release_id_releases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_release_candidates")),
        sa.UniqueConstraint(
            "project_id", "version", name=op.f("uq_release_candidates_project_id_version")
        ),
    )
    with op.batch_alter_table("release_candidates", schema=None) as batch_op:
        batch_op.create_index(
            "ix_release_candidates_release_id_number", ["release_id", "number"], unique=False
        )

    op.create_table(
        "deployments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "environment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "release_candidate_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column(
            "from_release_candidate_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("actor", sa.String(length=320), nullable=True),
        sa.Column("deploy_start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deploy_end_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("rolled_back_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("github_deployment_id", sa.BigInteger(), nullable=True),
        sa.Column("workflow_run_id", sa.BigInteger(), nullable=True),
        sa.Column("workflow_run_url", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_deployments_environment_id_environments"),
        ),
        sa.ForeignKeyConstraint(
            ["from_release_candidate_id"],
            ["release_candidates.id"],
            name=op.f("fk_deployments_from_release_candidate_id_release_candidates"),
        ),
        sa.ForeignKeyConstraint(
            ["release_candidate_id"],
            ["release_candidates.id"],
            name=op.f("fk_deployments_release_candidate_id_release_candidates"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
    )
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_deployments_environment_id_id", ["environment_id", "id"], unique=False
        )
        batch_op.create_index(
            "ix_deployments_environment_id_release_candidate_id_id",
            ["environment_id", "release_candidate_id", "id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_deployments_environment_id_status_id",
            ["environment_id", "status", "id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_deployments_release_candidate_id_id", ["release_candidate_id", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_index("ix_deployments_release_candidate_id_id")
        batch_op.drop_index("ix_deployments_environment_id_status_id")
        batch_op.drop_index("ix_deployments_environment_id_release_candidate_id_id")
        batch_op.drop_index("ix_deployments_environment_id_id")

    op.drop_table("deployments")
    with op.batch_alter_table("release_candidates", schema=None) as batch_op:
        batch_op.drop_index("ix_release_candidates_release_id_number")

    op.drop_table("release_candidates")
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.drop_index("ix_releases_project_id_id")

    op.drop_table("releases")
    op.drop_table("environments")
    op.drop_table("projects")
    op.drop_table("api_tokens")
