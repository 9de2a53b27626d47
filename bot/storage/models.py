"""Database tables. The rules that read and write them live in their own modules."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC; always hands back timezone-aware UTC, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    repo: Mapped[str] = mapped_column(String(200))
    tag_prefix: Mapped[str] = mapped_column(String(100), default="")
    build_workflow: Mapped[str | None] = mapped_column(String(200))
    build_inputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # A build that has not finished this long after its RC was made fails.
    build_timeout_minutes: Mapped[int] = mapped_column(Integer, default=60, server_default="60")
    # Switches from the projects file: Tarmac's note on each pull request that ships, and the
    # GitHub Release of a tag that first succeeds in production.
    pull_request_comments: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default=true()
    )
    github_releases: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Set when the project left the projects file: it keeps its history, takes nothing new.
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # `paths:` in the projects file: the globs a commit must touch to count in a change report
    # (a monorepo's project); empty, every commit counts.
    paths: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    # The receivers told about the project's events (NotificationConfig.stored: names of
    # environment variables, never secrets).
    notifications: Mapped[list[dict[str, Any]]] = mapped_column(
        JSON, default=list, server_default="[]"
    )

    environments: Mapped[list[Environment]] = relationship(
        back_populates="project", order_by="Environment.id", lazy="raise"
    )


class Environment(Base):
    __tablename__ = "environments"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(String(100))
    production: Mapped[bool] = mapped_column(Boolean, default=False)
    deploy_workflow: Mapped[str | None] = mapped_column(String(200))
    deploy_inputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    url: Mapped[str | None] = mapped_column(Text)
    auto_deploy: Mapped[bool] = mapped_column(Boolean, default=False)
    timeout_minutes: Mapped[int] = mapped_column(Integer, default=60)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    frozen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    frozen_by: Mapped[str | None] = mapped_column(String(320))
    frozen_reason: Mapped[str | None] = mapped_column(Text)
    frozen_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set by a rollback: auto-deploy leaves this environment alone until someone deploys
    # explicitly (an automatic deploy must not undo a human's rollback).
    auto_deploy_paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # `tarmac` or `workflow` (bot/config/projects_file.py): who makes its deploys' GitHub
    # Deployments.
    github_deployment: Mapped[str] = mapped_column(
        String(20), default="tarmac", server_default="tarmac"
    )
    # Receivers told about this environment's events besides the project's.
    notifications: Mapped[list[dict[str, Any]]] = mapped_column(
        JSON, default=list, server_default="[]"
    )
    # The release policy of the projects file (order and soak, calendar freezes, approvals),
    # as bot/domain/policy.py `EnvironmentPolicy.stored` writes it.
    policy: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    # Up to when the openings and closings of its calendar windows have been told
    # (bot/app/freeze_windows.py); None until the sweeper first sees its windows.
    calendar_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    project: Mapped[Project] = relationship(
        back_populates="environments", lazy="joined", innerjoin=True
    )


class Release(Base):
    __tablename__ = "releases"
    __table_args__ = (
        UniqueConstraint("project_id", "version"),
        Index("ix_releases_project_id_id", "project_id", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    version: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ReleaseCandidate(Base):
    __tablename__ = "release_candidates"
    __table_args__ = (
        UniqueConstraint("project_id", "version"),
        Index("ix_release_candidates_release_id_number", "release_id", "number"),
        # A workflow_run event finds its build by run id.
        Index("ix_release_candidates_build_run_id", "build_run_id"),
        # The timeout sweep finds the builds under way (few) among every RC.
        Index("ix_release_candidates_build_status", "build_status"),
        # The rollback rule skips a project's candidates marked bad (few) among every RC.
        Index("ix_release_candidates_project_id_rejected_at", "project_id", "rejected_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id"))
    version: Mapped[str] = mapped_column(String(220))
    number: Mapped[int] = mapped_column(BigInteger)
    commit_sha: Mapped[str] = mapped_column(String(40))
    repo: Mapped[str] = mapped_column(String(200))
    build_status: Mapped[str] = mapped_column(String(20))
    build_run_id: Mapped[int | None] = mapped_column(BigInteger)
    build_run_url: Mapped[str | None] = mapped_column(Text)
    # Why the build failed, when it did.
    build_error: Mapped[str | None] = mapped_column(Text)
    # The git tag that made this RC (None for RCs created through the API).
    tag: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Marked bad: refused for every deploy and never a rollback target until cleared.
    rejected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rejected_by: Mapped[str | None] = mapped_column(String(320))
    rejected_reason: Mapped[str | None] = mapped_column(Text)

    # "unnested": under Deployment.from_release_candidate (an outer join) this renders as a
    # second LEFT JOIN, not a nested join that SQLite answers by scanning every RC.
    release: Mapped[Release] = relationship(
        lazy="joined",
        innerjoin="unnested",  # type: ignore[arg-type]  # documented, typed as bool
    )


class Deployment(Base):
    __tablename__ = "deployments"
    __table_args__ = (
        # A page of history and the newest deployment of an environment.
        Index("ix_deployments_environment_id_id", "environment_id", "id"),
        # Running version and rollback target: newest successes of an environment.
        Index("ix_deployments_environment_id_status_id", "environment_id", "status", "id"),
        # PATCH: newest deployment of one RC in one environment.
        Index(
            "ix_deployments_environment_id_release_candidate_id_id",
            "environment_id",
            "release_candidate_id",
            "id",
        ),
        Index("ix_deployments_release_candidate_id_id", "release_candidate_id", "id"),
        # A workflow_run event finds its deployment by run id.
        Index("ix_deployments_workflow_run_id", "workflow_run_id"),
        # The dashboard's change mark: the newest change to any deployment, in one seek.
        Index("ix_deployments_updated_at", "updated_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id"))
    release_candidate_id: Mapped[int] = mapped_column(ForeignKey("release_candidates.id"))
    from_release_candidate_id: Mapped[int | None] = mapped_column(
        ForeignKey("release_candidates.id")
    )
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str | None] = mapped_column(String(320))
    deploy_start_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deploy_end_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    error_message: Mapped[str | None] = mapped_column(Text)
    # Set on the deployments of an RC that a rollback rolled away from in this environment:
    # such a deployment is never a rollback target again.
    rolled_back_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    github_deployment_id: Mapped[int | None] = mapped_column(BigInteger)
    workflow_run_id: Mapped[int | None] = mapped_column(BigInteger)
    workflow_run_url: Mapped[str | None] = mapped_column(Text)
    # Its GitHub Deployment is the one GitHub Actions made for its run's job (decided when the
    # deployment was made, so a later change of the projects file does not split it).
    github_deployment_by_actions: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # What its run waits for before it deploys (a GitHub environment's protection rules, or
    # Tarmac's own approvals).
    waiting_for: Mapped[str | None] = mapped_column(Text)
    # How many distinct approvals it needs before its workflow is dispatched (0: none), and
    # when it got the last of them.
    approvals_required: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    release_candidate: Mapped[ReleaseCandidate] = relationship(
        foreign_keys=[release_candidate_id], lazy="joined", innerjoin=True
    )
    from_release_candidate: Mapped[ReleaseCandidate | None] = relationship(
        foreign_keys=[from_release_candidate_id], lazy="joined"
    )
    environment: Mapped[Environment] = relationship(lazy="joined", innerjoin=True)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # SHA-256 of the token: tokens are 256-bit random, so a fast hash is as safe as a slow one.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    projects: Mapped[list[str]] = mapped_column(JSON, default=list)
    actor: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Installation(Base):
    """A GitHub App installation (its id is GitHub's)."""

    __tablename__ = "installations"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    account: Mapped[str] = mapped_column(String(200))
    suspended: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class InstallationRepository(Base):
    """Which installation serves a repository (`repo` is `owner/name` in lower case)."""

    __tablename__ = "installation_repositories"

    repo: Mapped[str] = mapped_column(String(200), primary_key=True)
    installation_id: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    """Every accepted delivery, by `X-GitHub-Delivery`: a redelivery finds its row and stops."""

    __tablename__ = "webhook_deliveries"

    delivery_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    event: Mapped[str] = mapped_column(String(100))
    action: Mapped[str | None] = mapped_column(String(100))
    outcome: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookInboxItem(Base):
    """A verified delivery, stored as it came and waiting to be handled, in arrival (id) order
    (bot/github/inbound/inbox.py); its row goes when it has been handled."""

    __tablename__ = "webhook_inbox"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(100), unique=True)
    event: Mapped[str] = mapped_column(String(100))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OutboxItem(Base):
    """A GitHub call that a committed change implies, written in the same transaction.

    Items with the same `ordering_key` (e.g. `deployment:42`) are delivered one after the
    other in id order; different keys go in parallel.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_outbox_ordering_key_id", "ordering_key", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    ordering_key: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(50))
    repo: Mapped[str] = mapped_column(String(200))
    deployment_id: Mapped[int | None] = mapped_column(ForeignKey("deployments.id"))
    release_candidate_id: Mapped[int | None] = mapped_column(ForeignKey("release_candidates.id"))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # pending -> delivered, or failed (a refusal that retrying cannot change).
    state: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The last attempt may have reached GitHub without an answer: check before repeating.
    uncertain: Mapped[bool] = mapped_column(Boolean, default=False)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PullRequestNote(Base):
    """Tarmac's one comment on a pull request (`repo` in lower case), saying where it runs."""

    __tablename__ = "pr_notes"
    __table_args__ = (UniqueConstraint("repo", "number"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    repo: Mapped[str] = mapped_column(String(200))
    number: Mapped[int] = mapped_column(BigInteger)
    # GitHub's id of the comment, once its creation was recorded.
    comment_id: Mapped[int | None] = mapped_column(BigInteger)
    # What the comment says on GitHub as far as Tarmac knows: an update that renders the same
    # makes no call.
    posted_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PullRequestNoteEnvironment(Base):
    """Where a noted pull request stands in one environment: in since `at` with `version`, or
    out again after a rollback to `version` (bot/domain/pull_request_notes.py)."""

    __tablename__ = "pr_note_environments"
    __table_args__ = (UniqueConstraint("note_id", "environment_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    note_id: Mapped[int] = mapped_column(ForeignKey("pr_notes.id"))
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id"))
    release_candidate_id: Mapped[int] = mapped_column(ForeignKey("release_candidates.id"))
    version: Mapped[str] = mapped_column(String(220))
    presence: Mapped[str] = mapped_column(String(10))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class IdempotencyKey(Base):
    """The answer a write with an `Idempotency-Key` got, kept so its retries get it again.

    Scoped to the token that sent it; stored in the same transaction as the change it answers.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("token_id", "key"),
        Index("ix_idempotency_keys_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    # No foreign key: a revoked token's keys can no longer be presented, and expire unread.
    token_id: Mapped[int] = mapped_column(Id)
    key: Mapped[str] = mapped_column(String(255))
    # SHA-256 of the request's method, path, query and body.
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ChangeReport(Base):
    """The commits and pull requests from one commit to another, under one set of `paths:`.
    Two commits' report never changes: computed once (bot/github/outbound/change_reports.py),
    served from here ever after."""

    __tablename__ = "change_reports"
    __table_args__ = (UniqueConstraint("repo", "base_commit", "head_commit", "paths_digest"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    repo: Mapped[str] = mapped_column(String(200))  # lower case
    base_commit: Mapped[str] = mapped_column(String(40))
    head_commit: Mapped[str] = mapped_column(String(40))
    # SHA-256 of the sorted globs (bot/domain/changes.py `PathFilter.key`); the globs beside it.
    paths_digest: Mapped[str] = mapped_column(String(64))
    paths: Mapped[list[str]] = mapped_column(JSON, default=list)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # None while it is being fetched.
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ahead_by: Mapped[int] = mapped_column(Integer, default=0)
    behind_by: Mapped[int] = mapped_column(Integer, default=0)
    diverged: Mapped[bool] = mapped_column(Boolean, default=False)
    commits: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    pull_requests: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    github_calls: Mapped[int] = mapped_column(Integer, default=0)  # what computing it took
    # Set (with completed_at) when GitHub refused to compare: said once, then the row is
    # removed so that the next request asks again.
    error: Mapped[str | None] = mapped_column(Text)


class DashboardSession(Base):
    """A person signed in to the dashboard (bot/storage/dashboard_sessions.py). The cookie holds
    the session's random id, signed; only its SHA-256 is stored, so a copy of the database
    signs no one in."""

    __tablename__ = "dashboard_sessions"
    __table_args__ = (Index("ix_dashboard_sessions_expires_at", "expires_at"),)

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The API token signed in with: its scope is read at every request, so revoking the token
    # ends its sessions. None for a GitHub sign-in, which fills `github_user_id`.
    token_id: Mapped[int | None] = mapped_column(Id)
    # The GitHub user signed in with (their id; `actor` is their login). No user token is kept:
    # their permissions are read with the installation's token.
    github_user_id: Mapped[int | None] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(320))
    # Every form of the session carries it (CSRF).
    csrf_token: Mapped[str] = mapped_column(String(64))
    # One message for the next page (a refusal, what an action did), shown once.
    notice: Mapped[str | None] = mapped_column(Text)
    notice_is_error: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DashboardSecret(Base):
    """Secrets Tarmac makes for itself, once, by name: the dashboard's cookie signing key
    when TARMAC_SESSION_SECRET is not set."""

    __tablename__ = "dashboard_secrets"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Approval(Base):
    """One person's approval of one deployment (bot/domain/approvals.py)."""

    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("deployment_id", "approver"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"))
    approver: Mapped[str] = mapped_column(String(320))
    door: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuditEvent(Base):
    """A decision of the release policy: what was allowed, refused, forced, approved or
    overridden, by whom, when, why and through which door (bot/app/audit.py)."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_project_id_id", "project_id", "id"),
        Index("ix_audit_events_environment_id_id", "environment_id", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    environment_id: Mapped[int | None] = mapped_column(ForeignKey("environments.id"))
    release_candidate_id: Mapped[int | None] = mapped_column(ForeignKey("release_candidates.id"))
    deployment_id: Mapped[int | None] = mapped_column(ForeignKey("deployments.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    door: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str | None] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(30))
    decision: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
