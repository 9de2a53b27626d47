"""Release policy: environments' rules, bad candidates, approvals and the audit (0011)."""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision: str | None = "0010"

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.add_column(sa.Column("policy", sa.JSON(), nullable=False, server_default="{}"))
    with op.batch_alter_table("release_candidates") as batch:
        batch.add_column(sa.Column("rejected_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("rejected_by", sa.String(320), nullable=True))
        batch.add_column(sa.Column("rejected_reason", sa.Text(), nullable=True))
        batch.create_index(
            "ix_release_candidates_project_id_rejected_at", ["project_id", "rejected_at"]
        )
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(
            sa.Column("approvals_required", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "approvals",
        sa.Column("id", Id, nullable=False),
        sa.Column("deployment_id", Id, nullable=False),
        sa.Column("approver", sa.String(320), nullable=False),
        sa.Column("door", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_approvals_deployment_id_deployments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
        sa.UniqueConstraint(
            "deployment_id", "approver", name=op.f("uq_approvals_deployment_id_approver")
        ),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", Id, nullable=False),
        sa.Column("project_id", Id, nullable=False),
        sa.Column("environment_id", Id, nullable=True),
        sa.Column("release_candidate_id", Id, nullable=True),
        sa.Column("deployment_id", Id, nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("door", sa.String(20), nullable=False),
        sa.Column("actor", sa.String(320), nullable=True),
        sa.Column("action", sa.String(30), nullable=False),
        sa.Column("decision", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_audit_events_project_id_projects")
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_audit_events_environment_id_environments"),
        ),
        sa.ForeignKeyConstraint(
            ["release_candidate_id"],
            ["release_candidates.id"],
            name=op.f("fk_audit_events_release_candidate_id_release_candidates"),
        ),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_audit_events_deployment_id_deployments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index("ix_audit_events_project_id_id", "audit_events", ["project_id", "id"])
    op.create_index("ix_audit_events_environment_id_id", "audit_events", ["environment_id", "id"])


def downgrade() -> None:
    op.drop_table("audit_events")
    op.drop_table("approvals")
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("approved_at")
        batch.drop_column("approvals_required")
    with op.batch_alter_table("release_candidates") as batch:
        batch.drop_index("ix_release_candidates_project_id_rejected_at")
        batch.drop_column("rejected_reason")
        batch.drop_column("rejected_by")
        batch.drop_column("rejected_at")
    with op.batch_alter_table("environments") as batch:
        batch.drop_column("policy")
