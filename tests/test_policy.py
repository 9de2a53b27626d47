"""The release policy's rules through the use cases, over a real database on each backend:
promotion order and soak, force with a reason, approvals, bad candidates, the audit.

The doors (REST, GraphQL, pull-request commands, the dashboard, the protection rule) have
their own tests; these hold the rules they all go through.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from bot.app import operations
from bot.app.operations import Mirror
from bot.app.releases import create_release_candidate
from bot.app.timeouts import sweep_stuck_deployments
from bot.config.projects_file import ProjectsFileError, parse_projects
from bot.config.projects_sync import sync_projects
from bot.core import errors
from bot.core.errors import DomainError
from bot.domain.approvals import Approver
from bot.domain.policy import Door
from bot.domain.statuses import DeploymentStatus
from bot.storage.db import Database
from bot.storage.models import AuditEvent, Deployment, OutboxItem
from bot.storage.outbox import Action
from bot.storage.projects import find_project
from tests.conftest import SHA_A

pytestmark = pytest.mark.both_databases

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # a Monday
MIRROR = Mirror(enabled=True)

POLICY_YAML = """
projects:
  - name: Backend
    repo: acme/backend
    build:
      workflow: build.yml
    environments:
      - name: staging
        deploy_workflow: deploy.yml
        auto_deploy: true
      - name: production
        deploy_workflow: deploy.yml
        production: true
        requires: [staging]
        soak_minutes: 60
      - name: vault
        deploy_workflow: deploy.yml
        approvals: {required: 2}
      - name: audited
        deploy_workflow: deploy.yml
        auto_deploy: true
        approvals: {required: 1, from: ["@acme/release-managers"]}
"""


class Policy:
    """The use cases called as the service calls them, one transaction each; the clock
    moves only when the story says so."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.now = T0

    def clock(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    async def candidate(self, version: str) -> None:
        async with self.db.write() as session:
            await create_release_candidate(
                session,
                await find_project(session, "Backend"),
                version=version,
                repo="acme/backend",
                commit=SHA_A,
                build=False,
                now=self.now,
            )

    async def deploy(self, environment: str, version: str, **ask: Any) -> Deployment:
        ask.setdefault("actor", "dev@example.com")
        async with self.db.write() as session:
            return await operations.deploy(
                session,
                MIRROR,
                project_name="Backend",
                environment_name=environment,
                version=version,
                clock=self.clock,
                **ask,
            )

    async def refused(self, environment: str, version: str, **ask: Any) -> DomainError:
        with pytest.raises(DomainError) as caught:
            await self.deploy(environment, version, **ask)
        return caught.value

    async def succeed(self, environment: str, version: str) -> Deployment:
        async with self.db.write() as session:
            reported = await operations.report_status(
                session,
                MIRROR,
                project_name="Backend",
                environment_name=environment,
                version=version,
                status=DeploymentStatus.SUCCESS,
                actor="ci",
                clock=self.clock,
            )
        return reported.deployment

    async def approve(self, deployment: Deployment, approver: Approver) -> Deployment:
        async with self.db.write() as session:
            return await operations.approve(
                session,
                MIRROR,
                project_name="Backend",
                environment_name=deployment.environment.name,
                deployment_id=deployment.id,
                approver=approver,
                door=Door.API,
                clock=self.clock,
            )

    async def mark_bad(self, version: str, reason: str = "corrupts sessions") -> None:
        async with self.db.write() as session:
            await operations.mark_bad(
                session,
                project_name="Backend",
                version=version,
                actor="oncall",
                reason=reason,
                door=Door.API,
                clock=self.clock,
            )

    async def dispatches(self, deployment: Deployment) -> int:
        async with self.db.read() as session:
            found = await session.scalar(
                select(func.count())
                .select_from(OutboxItem)
                .where(
                    OutboxItem.action == Action.DISPATCH_DEPLOY_WORKFLOW,
                    OutboxItem.deployment_id == deployment.id,
                )
            )
        return int(found or 0)

    async def audit(self) -> list[tuple[str, str, str, str | None]]:
        """(action, decision, door, reason) of every audit row, oldest first."""
        async with self.db.read() as session:
            rows = await session.scalars(select(AuditEvent).order_by(AuditEvent.id))
            return [(r.action, r.decision, r.door, r.reason) for r in rows]

    async def deployments(self, environment: str) -> list[Deployment]:
        async with self.db.read() as session:
            found = await session.scalars(
                select(Deployment).order_by(Deployment.id).where(Deployment.kind == "deploy")
            )
            return [d for d in found if d.environment.name == environment]


@pytest.fixture
async def policy(db: Database) -> Policy:
    config = parse_projects(yaml.safe_load(POLICY_YAML), Path("tarmac.yml"))
    async with db.write() as session:
        await sync_projects(session, config, T0)
    return Policy(db)


# --- promotion order and soak --------------------------------------------------------------


async def test_a_candidate_goes_to_production_only_after_soaking_in_staging(
    policy: Policy,
) -> None:
    await policy.candidate("v2.0.0-rc2")

    before = await policy.refused("production", "v2.0.0-rc2")
    assert before.code is errors.NOT_PROMOTED
    assert before.message == (
        "v2.0.0-rc2 must succeed in staging before it goes to production (it runs none); "
        "deploy it to staging first"
    )

    await policy.deploy("staging", "v2.0.0-rc2")
    policy.advance(minutes=5)
    await policy.succeed("staging", "v2.0.0-rc2")
    policy.advance(minutes=12)
    soaking = await policy.refused("production", "v2.0.0-rc2")
    assert soaking.code is errors.STILL_SOAKING
    assert soaking.message == (
        "v2.0.0-rc2 has soaked in staging for 12 of the 60 minutes production requires: it may "
        "go to production from 2026-03-02 16:05:00 UTC (48 minutes from now)"
    )

    policy.advance(minutes=48)
    deployed = await policy.deploy("production", "v2.0.0-rc2")
    assert deployed.status == DeploymentStatus.PENDING
    assert await policy.dispatches(deployed) == 1
    assert [a[:2] for a in await policy.audit()] == [
        ("deploy", "refused"),
        ("deploy", "allowed"),  # staging
        ("deploy", "refused"),
        ("deploy", "allowed"),
    ]


async def test_a_candidate_no_longer_in_staging_is_not_promoted(policy: Policy) -> None:
    for version in ("v2.0.0-rc1", "v2.0.0-rc2"):
        await policy.candidate(version)
        await policy.deploy("staging", version)
        await policy.succeed("staging", version)
    policy.advance(hours=2)

    replaced = await policy.refused("production", "v2.0.0-rc1")

    assert replaced.message.startswith(
        "v2.0.0-rc1 must succeed in staging before it goes to production (it runs v2.0.0-rc2)"
    )


async def test_a_failure_in_staging_since_stops_the_promotion(policy: Policy) -> None:
    await policy.candidate("v2.0.0-rc1")
    await policy.candidate("v2.0.0-rc2")
    await policy.deploy("staging", "v2.0.0-rc1")
    await policy.succeed("staging", "v2.0.0-rc1")
    policy.advance(hours=2)
    await policy.deploy("staging", "v2.0.0-rc2")
    async with policy.db.write() as session:
        await operations.report_status(
            session,
            MIRROR,
            project_name="Backend",
            environment_name="staging",
            version="v2.0.0-rc2",
            status=DeploymentStatus.FAILURE,
            actor="ci",
            clock=policy.clock,
        )

    refused = await policy.refused("production", "v2.0.0-rc1")

    assert "its deployment there ended failure" not in refused.message  # that was rc2's
    assert refused.message.startswith(
        "v2.0.0-rc1 must succeed in staging before it goes to production (it runs v2.0.0-rc1)"
    )


async def test_force_needs_a_reason_and_is_audited(policy: Policy) -> None:
    await policy.candidate("v2.0.0-rc2")

    unexplained = await policy.refused("production", "v2.0.0-rc2", force=True)
    assert unexplained.code is errors.FORCE_NEEDS_REASON
    blank = await policy.refused("production", "v2.0.0-rc2", force=True, reason="  ")
    assert blank.code is errors.FORCE_NEEDS_REASON

    forced = await policy.deploy(
        "production", "v2.0.0-rc2", force=True, reason="hotfix INC-42", door=Door.PULL_REQUEST
    )

    assert forced.status == DeploymentStatus.PENDING
    action, decision, door, reason = (await policy.audit())[-1]
    assert (action, decision, door) == ("deploy", "forced", "pull_request")
    assert reason is not None
    assert reason.startswith("hotfix INC-42 (overrode: v2.0.0-rc2 must")


async def test_a_refusal_changes_nothing_but_is_on_record(policy: Policy) -> None:
    await policy.candidate("v2.0.0-rc2")

    await policy.refused("production", "v2.0.0-rc2", actor="eve", door=Door.DASHBOARD)

    assert await policy.deployments("production") == []
    async with policy.db.read() as session:
        row = await session.scalar(select(AuditEvent))
    assert row is not None
    assert (row.actor, row.door, row.action, row.decision) == (
        "eve",
        "dashboard",
        "deploy",
        "refused",
    )
    assert row.at == T0
    assert row.release_candidate_id is not None


async def test_rollbacks_skip_the_order(policy: Policy) -> None:
    for version in ("v2.0.0-rc1", "v2.0.0-rc2"):
        await policy.candidate(version)
        await policy.deploy("production", version, force=True, reason="bootstrap")
        await policy.succeed("production", version)

    async with policy.db.write() as session:
        done = await operations.roll_back(
            session,
            MIRROR,
            project_name="Backend",
            environment_name="production",
            actor="oncall",
            force=False,
            clock=policy.clock,
        )

    assert done.deployment.release_candidate.version == "v2.0.0-rc1"


# --- approvals -----------------------------------------------------------------------------


async def test_two_others_approve_and_the_workflow_is_dispatched_once(policy: Policy) -> None:
    await policy.candidate("v2.0.0-rc1")
    waiting = await policy.deploy("vault", "v2.0.0-rc1", actor="alice")
    assert (waiting.status, waiting.waiting_for) == ("pending", "approval (0 of 2)")
    assert await policy.dispatches(waiting) == 0

    with pytest.raises(DomainError) as own:
        await policy.approve(waiting, Approver(actor="alice"))
    assert own.value.code is errors.SELF_APPROVAL

    first = await policy.approve(waiting, Approver(actor="bob"))
    assert first.waiting_for == "approval (1 of 2)"
    again = await policy.approve(waiting, Approver(actor="bob"))
    assert again.waiting_for == "approval (1 of 2)"
    assert await policy.dispatches(waiting) == 0

    done = await policy.approve(waiting, Approver(actor="carol"))
    assert done.waiting_for is None
    assert done.approved_at == T0
    assert await policy.dispatches(waiting) == 1
    with pytest.raises(DomainError) as late:
        await policy.approve(waiting, Approver(actor="dave"))
    assert late.value.code is errors.NOT_WAITING_FOR_APPROVAL
    assert await policy.dispatches(waiting) == 1
    assert [a[:2] for a in await policy.audit()] == [
        ("deploy", "waiting"),
        ("approve", "refused"),
        ("approve", "approved"),
        ("approve", "approved"),
        ("approve", "refused"),
    ]


async def test_an_approval_expires(policy: Policy) -> None:
    await policy.candidate("v2.0.0-rc1")
    waiting = await policy.deploy("vault", "v2.0.0-rc1", actor="alice")
    await policy.approve(waiting, Approver(actor="bob"))

    policy.advance(days=1, seconds=1)
    carol = await policy.approve(waiting, Approver(actor="carol"))

    assert carol.waiting_for == "approval (1 of 2)"  # bob's no longer counts
    renewed = await policy.approve(waiting, Approver(actor="bob"))
    assert renewed.waiting_for is None
    assert await policy.dispatches(waiting) == 1


async def test_approvals_from_a_team_need_a_github_member(policy: Policy) -> None:
    await policy.candidate("v2.0.0-rc1")
    waiting = await policy.deploy("audited", "v2.0.0-rc1", actor="alice")

    with pytest.raises(DomainError) as token:
        await policy.approve(waiting, Approver(actor="ci-token"))
    with pytest.raises(DomainError) as outsider:
        await policy.approve(
            waiting, Approver(actor="bob", role="admin", teams=frozenset(), via_github=True)
        )
    member = Approver(
        actor="carol", role="write", teams=frozenset({"acme/Release-Managers"}), via_github=True
    )
    approved = await policy.approve(waiting, member)

    assert token.value.code is outsider.value.code is errors.NOT_AN_APPROVER
    assert "approvals here come from @acme/release-managers" in token.value.message
    assert approved.approved_at is not None


async def test_a_deployment_waiting_for_approval_is_never_timed_out(policy: Policy) -> None:
    await policy.candidate("v2.0.0-rc1")
    waiting = await policy.deploy("vault", "v2.0.0-rc1", actor="alice")
    policy.advance(hours=5)

    await sweep_stuck_deployments(policy.db, policy.clock, MIRROR)

    (still,) = await policy.deployments("vault")
    assert (still.id, still.status) == (waiting.id, "pending")


async def test_rejecting_cancels_the_waiting_deployment(policy: Policy) -> None:
    await policy.candidate("v2.0.0-rc1")
    waiting = await policy.deploy("vault", "v2.0.0-rc1", actor="alice")

    async with policy.db.write() as session:
        rejected = await operations.reject_deployment(
            session,
            MIRROR,
            project_name="Backend",
            environment_name="vault",
            deployment_id=waiting.id,
            actor="bob",
            reason="not during the audit",
            door=Door.API,
            clock=policy.clock,
        )

    assert (rejected.status, rejected.error_message) == (
        "canceled",
        "Rejected by bob: not during the audit",
    )
    assert await policy.dispatches(waiting) == 0


# --- bad candidates ------------------------------------------------------------------------


async def test_a_candidate_marked_bad_is_refused_even_with_force(policy: Policy) -> None:
    await policy.candidate("v2.0.0-rc1")
    await policy.mark_bad("v2.0.0-rc1")

    plain = await policy.refused("staging", "v2.0.0-rc1")
    forced = await policy.refused("staging", "v2.0.0-rc1", force=True, reason="trust me")

    assert plain.code is forced.code is errors.CANDIDATE_REJECTED
    assert plain.message == (
        "Release candidate is marked bad by oncall: corrupts sessions; clear the mark to deploy it"
    )
    async with policy.db.write() as session:
        await operations.clear_bad(
            session,
            project_name="Backend",
            version="v2.0.0-rc1",
            actor="oncall",
            door=Door.API,
            clock=policy.clock,
        )
    assert (await policy.deploy("staging", "v2.0.0-rc1")).status == "pending"


async def test_the_rollback_rule_skips_a_candidate_marked_bad(policy: Policy) -> None:
    for version in ("v2.0.0-rc1", "v2.0.0-rc2", "v2.0.0-rc3"):
        await policy.candidate(version)
        await policy.deploy("staging", version)
        await policy.succeed("staging", version)
    await policy.mark_bad("v2.0.0-rc2")

    async with policy.db.write() as session:
        done = await operations.roll_back(
            session,
            MIRROR,
            project_name="Backend",
            environment_name="staging",
            actor="oncall",
            force=False,
            clock=policy.clock,
        )

    assert done.deployment.release_candidate.version == "v2.0.0-rc1"


async def test_auto_deploy_refuses_a_candidate_it_may_not_deploy_and_says_so(
    policy: Policy,
) -> None:
    await policy.candidate("v2.0.0-rc1")
    async with policy.db.write() as session:
        project = await find_project(session, "Backend")
        created = await create_release_candidate(
            session,
            project,
            version="v2.0.0-rc2",
            repo="acme/backend",
            commit=SHA_A,
            build=True,
            now=policy.now,
        )
        candidate_id = created.candidate.id
    await policy.mark_bad("v2.0.0-rc2")

    async with policy.db.write() as session:
        candidate = await session.get_one(type(created.candidate), candidate_id)
        started = await operations.finish_build(
            session, MIRROR, candidate, succeeded=True, run_url=None, now=policy.now
        )

    assert started == []
    refusals = [a for a in await policy.audit() if a[1] == "refused"]
    assert {(a[0], a[2]) for a in refusals} == {("deploy", "auto_deploy")}
    assert len(refusals) == 2  # staging and audited, the environments that auto-deploy


# --- the projects file ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environment", "problem"),
    [
        (
            "requires: [qa]",
            "environments[1].requires: 'qa' is not an environment of this project",
        ),
        ("requires: [production]", "environments[1].requires: an environment cannot require"),
        ("soak_minutes: 30", "soaking needs `requires`"),
        (
            "freezes: [{name: w, reason: r, timezone: Mars/Olympus, rrule: FREQ=DAILY, "
            "duration: 1h}]",
            "'Mars/Olympus' is not an IANA time zone",
        ),
        (
            "freezes: [{name: w, reason: r, rrule: FREQ=HOURLY, duration: 1h}]",
            "a freeze recurs at most daily",
        ),
        (
            "freezes: [{name: w, reason: r, rrule: FREQ=WEEKLY}]",
            "a recurring window needs both rrule and duration",
        ),
        (
            "freezes: [{name: w, reason: r, from: '2026-12-24 18:00', until: '2026-12-24 09:00'}]",
            "until must be after from",
        ),
        ("approvals: {required: 0}", "approvals.required"),
        ("approvals: {required: 1, from: [everyone]}", "'everyone' is neither a role"),
    ],
)
def test_the_projects_file_refuses_a_policy_that_cannot_hold(
    environment: str, problem: str
) -> None:
    text = f"""
projects:
  - name: Backend
    repo: acme/backend
    environments:
      - name: staging
      - name: production
        {environment}
"""
    with pytest.raises(ProjectsFileError) as caught:
        parse_projects(yaml.safe_load(text), Path("tarmac.yml"))

    assert any(problem in line for line in caught.value.problems), caught.value.problems


def test_a_cycle_in_the_order_is_refused() -> None:
    text = """
projects:
  - name: Backend
    repo: acme/backend
    environments:
      - name: staging
        requires: [production]
      - name: production
        requires: [staging]
"""
    with pytest.raises(ProjectsFileError) as caught:
        parse_projects(yaml.safe_load(text), Path("tarmac.yml"))

    assert any("(a cycle)" in line for line in caught.value.problems)
