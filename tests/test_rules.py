"""The domain rules, each on its own, over a real database on each backend (no HTTP).

Projects and environments come from the test projects file through the same sync the service
runs at start-up; the clock is a plain datetime the story moves forward.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.app.deployments import ReportedStatus, list_deployments, record_deployment
from bot.app.operations import Mirror, Rollback, deploy, expire_stuck, report_status, roll_back
from bot.app.releases import create_release_candidate
from bot.app.timeouts import BUILD_TIMED_OUT_MESSAGE, sweep_stuck_builds, sweep_stuck_deployments
from bot.config.projects_file import parse_projects
from bot.config.projects_sync import SyncReport, sync_projects
from bot.core import errors
from bot.core.errors import DomainError, Refusal
from bot.core.pages import PageRequest
from bot.domain.freeze import current_freeze, freeze_environment, unfreeze_environment
from bot.domain.rollback import CANCELED_BY_ROLLBACK, target_search
from bot.domain.rollback import rollback_target as rule_target
from bot.domain.statuses import (
    SUPERSEDED_MESSAGE,
    TIMED_OUT_MESSAGE,
    BuildStatus,
    DeploymentKind,
    DeploymentStatus,
)
from bot.storage.db import Database
from bot.storage.deployments import newest_deployment, rollback_target, running_release_candidate
from bot.storage.models import Deployment, Environment, Project, ReleaseCandidate
from bot.storage.projects import find_environment, find_project
from bot.storage.releases import find_release_candidate
from tests.conftest import PROJECTS_WITHOUT_STAGING_YAML, PROJECTS_YAML, SHA_A

# SQL is what these tests check: both databases in make test (tests/databases.py).
pytestmark = pytest.mark.both_databases

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ACTOR = "dev@example.com"
NO_MIRROR = Mirror(enabled=False)

# PROJECTS_YAML with Backend's settings changed.
CHANGED_YAML = """
projects:
  - name: Backend
    repo: acme/backend
    build:
      workflow: release.yml
      inputs: {target: release}
      timeout_minutes: 20
    environments:
      - name: staging
        deploy_workflow: deploy.yml
        auto_deploy: true
        url: https://staging.example.com
      - name: production
        deploy_workflow: deploy-production.yml
        production: true
        timeout_minutes: 45
        inputs: {region: eu-west-1}
  - name: Frontend
    repo: acme/monorepo
    tag_prefix: frontend/
    environments:
      - name: production
        production: true
"""

WITHOUT_STAGING_YAML = PROJECTS_WITHOUT_STAGING_YAML

# PROJECTS_YAML without the Frontend project.
WITHOUT_FRONTEND_YAML = PROJECTS_YAML.split("  - name: Frontend")[0]


async def sync(db: Database, projects_yaml: str = PROJECTS_YAML, now: datetime = T0) -> SyncReport:
    config = parse_projects(yaml.safe_load(projects_yaml), Path("tarmac.yml"))
    async with db.write() as session:
        return await sync_projects(session, config, now)


class Story:
    """The rules called the way the service calls them: one write transaction each, the
    clock a second later every time."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.now = T0

    def tick(self, **delta: float) -> datetime:
        self.now += timedelta(**delta) if delta else timedelta(seconds=1)
        return self.now

    async def create_rc(
        self, version: str, *, build: bool = False, project: str = "Backend"
    ) -> ReleaseCandidate:
        repo = "acme/backend" if project == "Backend" else "acme/monorepo"
        async with self.db.write() as session:
            created = await create_release_candidate(
                session,
                await find_project(session, project),
                version=version,
                repo=repo,
                commit=SHA_A,
                build=build,
                now=self.tick(),
            )
        return created.candidate

    async def set_build_status(self, version: str, status: BuildStatus) -> None:
        async with self.db.write() as session:
            await session.execute(
                update(ReleaseCandidate)
                .where(ReleaseCandidate.version == version)
                .values(build_status=status)
            )

    async def deploy(
        self, environment: str, version: str, *, project: str = "Backend"
    ) -> Deployment:
        async with self.db.write() as session:
            return await deploy(
                session,
                NO_MIRROR,
                project_name=project,
                environment_name=environment,
                version=version,
                actor=ACTOR,
                clock=self.tick,
            )

    async def report(
        self,
        environment: str,
        version: str,
        status: DeploymentStatus,
        *,
        error_message: str | None = None,
    ) -> ReportedStatus:
        async with self.db.write() as session:
            return await report_status(
                session,
                NO_MIRROR,
                project_name="Backend",
                environment_name=environment,
                version=version,
                status=status,
                actor=ACTOR,
                clock=self.tick,
                error_message=error_message,
            )

    async def ship(self, environment: str, version: str) -> Deployment:
        """Create the RC, deploy it and report success: it is now running."""
        await self.create_rc(version)
        await self.deploy(environment, version)
        return (await self.report(environment, version, DeploymentStatus.SUCCESS)).deployment

    async def roll_back(self, environment: str, *, force: bool = False) -> Rollback:
        async with self.db.write() as session:
            return await roll_back(
                session,
                NO_MIRROR,
                project_name="Backend",
                environment_name=environment,
                actor=ACTOR,
                force=force,
                clock=self.tick,
            )

    async def freeze(
        self, environment: str, *, until: datetime | None = None, reason: str = "release week"
    ) -> None:
        async with self.db.write() as session:
            env = await find_environment(session, "Backend", environment, lock=True)
            freeze_environment(env, reason=reason, by=ACTOR, until=until, now=self.tick())

    async def unfreeze(self, environment: str) -> None:
        async with self.db.write() as session:
            env = await find_environment(session, "Backend", environment, lock=True)
            unfreeze_environment(env)

    async def environment(self, name: str, project: str = "Backend") -> Environment:
        async with self.db.read() as session:
            return await find_environment(session, project, name)

    async def running(self, environment: str) -> str | None:
        async with self.db.read() as session:
            env = await find_environment(session, "Backend", environment)
            running = await running_release_candidate(session, env)
        return running.version if running is not None else None

    async def history(self, environment: str, project: str = "Backend") -> list[Deployment]:
        """Every deployment of the environment, oldest first."""
        async with self.db.read() as session:
            env = await find_environment(session, project, environment)
            found = await session.scalars(
                select(Deployment)
                .where(Deployment.environment_id == env.id)
                .order_by(Deployment.id)
            )
            return list(found)


@pytest.fixture
async def story(db: Database) -> Story:
    await sync(db)
    return Story(db)


async def refusal(awaitable: Awaitable[Any]) -> tuple[Refusal, str]:
    with pytest.raises(DomainError) as caught:
        await awaitable
    return caught.value.refusal, caught.value.message


def versions(deployments: list[Deployment]) -> list[tuple[str, str | None, str]]:
    """(RC, from RC, status) of each deployment."""
    return [
        (
            d.release_candidate.version,
            d.from_release_candidate.version if d.from_release_candidate else None,
            d.status,
        )
        for d in deployments
    ]


# --- running version and from_* --------------------------------------------------------------


async def test_an_environment_never_deployed_runs_nothing(story: Story) -> None:
    assert await story.running("production") is None


async def test_the_running_version_is_the_rc_of_the_newest_success(story: Story) -> None:
    await story.ship("production", "v1-rc1")
    assert await story.running("production") == "v1-rc1"

    await story.create_rc("v1-rc2")
    await story.deploy("production", "v1-rc2")
    assert await story.running("production") == "v1-rc1"  # still pending
    await story.report("production", "v1-rc2", DeploymentStatus.FAILURE)
    assert await story.running("production") == "v1-rc1"

    await story.ship("production", "v1-rc3")
    assert await story.running("production") == "v1-rc3"
    # An older RC deployed again and successful is what runs now.
    await story.deploy("production", "v1-rc1")
    await story.report("production", "v1-rc1", DeploymentStatus.SUCCESS)
    assert await story.running("production") == "v1-rc1"
    # Each environment has its own running version.
    assert await story.running("staging") is None


async def test_from_is_what_ran_when_the_deployment_was_created(story: Story) -> None:
    first = await story.ship("production", "v1-rc1")
    assert first.from_release_candidate is None

    await story.create_rc("v1-rc2")
    pending = await story.deploy("production", "v1-rc2")
    assert pending.from_release_candidate is not None
    assert pending.from_release_candidate.version == "v1-rc1"

    # Something else succeeds meanwhile (superseding the pending deployment, whose from_*
    # stays as it was); a success of v1-rc2 reported after that is a new deployment from it.
    await story.create_rc("v1-rc3")
    reported = await story.report("production", "v1-rc3", DeploymentStatus.SUCCESS)
    assert reported.created
    assert [d.id for d in reported.superseded] == [pending.id]
    await story.report("production", "v1-rc2", DeploymentStatus.SUCCESS)

    assert versions(await story.history("production")) == [
        ("v1-rc1", None, "success"),
        ("v1-rc2", "v1-rc1", "canceled"),
        ("v1-rc3", "v1-rc1", "success"),
        ("v1-rc2", "v1-rc3", "success"),
    ]


async def test_record_deployment_takes_from_the_running_rc(story: Story) -> None:
    await story.ship("staging", "v1-rc1")
    candidate = await story.create_rc("v1-rc2")
    async with story.db.write() as session:
        env = await find_environment(session, "Backend", "staging", lock=True)
        recorded = await record_deployment(
            session,
            env,
            await find_release_candidate(session, env.project, candidate.version),
            kind=DeploymentKind.DEPLOY,
            status=DeploymentStatus.ERROR,
            actor=None,
            now=story.tick(),
            error_message="boom",
        )
    recorded = recorded.deployment
    assert recorded.from_release_candidate is not None
    assert recorded.from_release_candidate.version == "v1-rc1"
    assert recorded.deploy_start_at == story.now
    assert recorded.deploy_end_at == story.now  # created final, so already ended
    assert recorded.error_message == "boom"


# --- creating a deployment ---------------------------------------------------------------------


@pytest.fixture
async def obstacles(story: Story) -> Story:
    """staging removed from the projects file, production frozen, RCs in every build state."""
    await story.create_rc("v1-rc1")
    await story.create_rc("v1-rc2", build=True)
    await story.create_rc("v1-rc3", build=True)
    await story.set_build_status("v1-rc3", BuildStatus.FAILED)
    await story.create_rc("frontend-rc1", project="Frontend")
    await sync(story.db, WITHOUT_STAGING_YAML)
    await story.freeze("production")
    return story


@pytest.mark.parametrize(
    ("project", "environment", "version", "refused"),
    [
        ("Nope", "nope", "not a version", (Refusal.NOT_FOUND, errors.PROJECT_NOT_FOUND)),
        ("Backend", "nope", "not a version", (Refusal.NOT_FOUND, errors.ENVIRONMENT_NOT_FOUND)),
        ("Backend", "staging", "not a version", (Refusal.INVALID, errors.INVALID_RC_VERSION)),
        ("Backend", "staging", "v9-rc9", (Refusal.INVALID, errors.ENVIRONMENT_REMOVED)),
        ("Backend", "staging", "v1-rc2", (Refusal.INVALID, errors.ENVIRONMENT_REMOVED)),
        ("Backend", "production", "v9-rc9", (Refusal.NOT_FOUND, errors.RELEASE_NOT_FOUND)),
        # RCs belong to one project.
        ("Backend", "production", "frontend-rc1", (Refusal.NOT_FOUND, errors.RELEASE_NOT_FOUND)),
        ("Backend", "production", "v1-rc2", (Refusal.INVALID, errors.RC_STILL_BUILDING)),
        ("Backend", "production", "v1-rc3", (Refusal.INVALID, errors.RC_BUILD_FAILED)),
        ("Backend", "production", "v1-rc1", (Refusal.INVALID, errors.ENVIRONMENT_FROZEN)),
    ],
)
async def test_create_deployment_checks_in_order(
    obstacles: Story,
    project: str,
    environment: str,
    version: str,
    refused: tuple[Refusal, str],
) -> None:
    assert await refusal(obstacles.deploy(environment, version, project=project)) == refused
    async with obstacles.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(Deployment)) == 0


async def test_a_deployment_starts_pending_once_nothing_stands_in_the_way(
    obstacles: Story,
) -> None:
    await obstacles.unfreeze("production")
    deployment = await obstacles.deploy("production", "v1-rc1")
    assert deployment.kind == DeploymentKind.DEPLOY
    assert deployment.status == DeploymentStatus.PENDING
    assert deployment.actor == ACTOR
    assert deployment.deploy_start_at == obstacles.now
    assert deployment.deploy_end_at is None
    assert deployment.environment.name == "production"
    assert deployment.release_candidate.version == "v1-rc1"


# --- reported statuses -------------------------------------------------------------------------


async def test_a_report_without_a_deployment_records_one(story: Story) -> None:
    await story.ship("production", "v1-rc1")
    await story.create_rc("v1-rc2")
    reported = await story.report("production", "v1-rc2", DeploymentStatus.IN_PROGRESS)
    assert reported.created
    assert reported.changed
    assert reported.previous_status is None
    assert reported.deployment.kind == DeploymentKind.REPORTED
    assert reported.deployment.status == DeploymentStatus.IN_PROGRESS
    assert reported.deployment.from_release_candidate is not None
    assert reported.deployment.from_release_candidate.version == "v1-rc1"


async def test_a_report_moves_the_open_deployment_of_that_rc(story: Story) -> None:
    await story.create_rc("v1-rc1")
    deployed = await story.deploy("production", "v1-rc1")

    moving = await story.report("production", "v1-rc1", DeploymentStatus.IN_PROGRESS)
    assert (moving.deployment.id, moving.created, moving.previous_status) == (
        deployed.id,
        False,
        "pending",
    )
    assert moving.deployment.deploy_end_at is None

    unsure = await story.report("production", "v1-rc1", DeploymentStatus.UNKNOWN)
    assert unsure.deployment.id == deployed.id  # unknown is still open

    done = await story.report(
        "production", "v1-rc1", DeploymentStatus.SUCCESS, error_message="took a while"
    )
    assert done.deployment.id == deployed.id
    assert done.changed
    assert done.deployment.status == DeploymentStatus.SUCCESS
    assert done.deployment.deploy_end_at == story.now
    assert done.deployment.updated_at == story.now
    assert done.deployment.error_message == "took a while"
    assert len(await story.history("production")) == 1


async def test_the_same_final_status_again_is_a_retry_and_changes_nothing(story: Story) -> None:
    await story.create_rc("v1-rc1")
    await story.deploy("production", "v1-rc1")
    first = await story.report("production", "v1-rc1", DeploymentStatus.FAILURE)
    ended = story.now

    again = await story.report("production", "v1-rc1", DeploymentStatus.FAILURE)
    assert again.deployment.id == first.deployment.id
    assert not again.created
    assert not again.changed
    assert again.deployment.updated_at == ended
    assert again.deployment.deploy_end_at == ended
    assert len(await story.history("production")) == 1


async def test_another_status_after_a_final_one_is_a_new_deployment(story: Story) -> None:
    await story.create_rc("v1-rc1")
    await story.deploy("production", "v1-rc1")
    failed = await story.report("production", "v1-rc1", DeploymentStatus.FAILURE)

    retried = await story.report("production", "v1-rc1", DeploymentStatus.IN_PROGRESS)
    assert retried.created
    assert retried.deployment.id != failed.deployment.id
    assert retried.deployment.kind == DeploymentKind.REPORTED
    # ... which the next report moves.
    done = await story.report("production", "v1-rc1", DeploymentStatus.SUCCESS)
    assert done.deployment.id == retried.deployment.id
    assert versions(await story.history("production")) == [
        ("v1-rc1", None, "failure"),
        ("v1-rc1", None, "success"),
    ]


async def test_reports_are_not_blocked_by_a_freeze(story: Story) -> None:
    await story.create_rc("v1-rc1")
    await story.deploy("production", "v1-rc1")
    await story.create_rc("v1-rc2")
    await story.freeze("production")
    await story.report("production", "v1-rc1", DeploymentStatus.SUCCESS)
    assert (await story.report("production", "v1-rc2", DeploymentStatus.SUCCESS)).created
    assert await story.running("production") == "v1-rc2"


async def test_a_report_to_a_removed_environment_finishes_but_never_starts(
    story: Story,
) -> None:
    await story.create_rc("v1-rc1")
    await story.create_rc("v1-rc2")
    under_way = await story.deploy("staging", "v1-rc1")
    await sync(story.db, WITHOUT_STAGING_YAML)

    finished = await story.report("staging", "v1-rc1", DeploymentStatus.SUCCESS)
    assert finished.deployment.id == under_way.id
    assert await refusal(story.report("staging", "v1-rc2", DeploymentStatus.SUCCESS)) == (
        Refusal.INVALID,
        errors.ENVIRONMENT_REMOVED,
    )


@pytest.mark.parametrize(
    ("version", "refused"),
    [
        ("v1", (Refusal.INVALID, errors.INVALID_RC_VERSION)),
        ("v9-rc9", (Refusal.NOT_FOUND, errors.RELEASE_NOT_FOUND)),
    ],
)
async def test_a_report_needs_a_known_rc(
    story: Story, version: str, refused: tuple[Refusal, str]
) -> None:
    assert await refusal(story.report("production", version, DeploymentStatus.SUCCESS)) == refused


# --- rollback ----------------------------------------------------------------------------------


async def target_of(story: Story, environment: str) -> str | None:
    async with story.db.read() as session:
        env = await find_environment(session, "Backend", environment)
        newest = await newest_deployment(session, env)
        assert newest is not None
        target = await rollback_target(session, env, target_search(newest))
        history = list(
            await session.scalars(
                select(Deployment)
                .where(Deployment.environment_id == env.id)
                .order_by(Deployment.id.desc())
            )
        )
    # The one indexed SELECT finds what the rule finds over the whole history.
    in_memory = rule_target(history)
    assert (target.id if target else None) == (in_memory.id if in_memory else None)
    return target.release_candidate.version if target is not None else None


async def test_nothing_deployed_means_nothing_to_roll_back_to(story: Story) -> None:
    assert await refusal(story.roll_back("production")) == (
        Refusal.NOT_FOUND,
        errors.NOTHING_TO_ROLL_BACK_TO,
    )


async def test_one_success_alone_has_nothing_to_roll_back_to(story: Story) -> None:
    await story.ship("production", "v1-rc1")
    assert await target_of(story, "production") is None
    assert await refusal(story.roll_back("production")) == (
        Refusal.NOT_FOUND,
        errors.NOTHING_TO_ROLL_BACK_TO,
    )
    assert len(await story.history("production")) == 1


async def test_a_rollback_goes_back_to_the_rc_that_ran_before(story: Story) -> None:
    for version in ("v1-rc1", "v1-rc2", "v1-rc3"):
        shipped = await story.ship("production", version)
    assert shipped.from_release_candidate is not None
    assert await target_of(story, "production") == shipped.from_release_candidate.version

    done = await story.roll_back("production")
    assert done.deployment.kind == DeploymentKind.ROLLBACK
    assert done.deployment.status == DeploymentStatus.PENDING
    assert done.deployment.actor == ACTOR
    assert done.deployment.release_candidate.version == "v1-rc2"
    assert done.deployment.from_release_candidate is not None
    assert done.deployment.from_release_candidate.version == "v1-rc3"
    assert done.rolled_back_from.version == "v1-rc3"
    assert done.canceled == []


async def test_rolling_back_twice_goes_back_two_versions_and_never_forward(story: Story) -> None:
    for version in ("v1-rc1", "v1-rc2", "v1-rc3"):
        await story.ship("production", version)

    first = await story.roll_back("production")
    assert first.deployment.release_candidate.version == "v1-rc2"
    await story.report("production", "v1-rc2", DeploymentStatus.SUCCESS)

    second = await story.roll_back("production")
    assert second.deployment.release_candidate.version == "v1-rc1"
    assert second.rolled_back_from.version == "v1-rc2"
    await story.report("production", "v1-rc1", DeploymentStatus.SUCCESS)
    assert await story.running("production") == "v1-rc1"

    # rc2 and rc3 were rolled away from: a third rollback does not go forward to them.
    assert await target_of(story, "production") is None
    before = versions(await story.history("production"))
    assert await refusal(story.roll_back("production")) == (
        Refusal.NOT_FOUND,
        errors.NOTHING_TO_ROLL_BACK_TO,
    )
    assert versions(await story.history("production")) == before


async def test_after_a_failure_the_running_rc_is_deployed_again(story: Story) -> None:
    for version in ("v1-rc1", "v1-rc2", "v1-rc3"):
        await story.ship("production", version)
    # rc2 is deployed again and fails this time.
    await story.deploy("production", "v1-rc2")
    await story.report("production", "v1-rc2", DeploymentStatus.FAILURE)
    assert await target_of(story, "production") == "v1-rc3"

    done = await story.roll_back("production")
    assert done.deployment.release_candidate.version == "v1-rc3"
    assert done.deployment.from_release_candidate is not None
    assert done.deployment.from_release_candidate.version == "v1-rc3"
    assert done.rolled_back_from.version == "v1-rc2"
    await story.report("production", "v1-rc3", DeploymentStatus.SUCCESS)

    # rc2 is remembered as rolled back, so the next rollback skips it.
    rc2_successes = [
        d
        for d in await story.history("production")
        if d.release_candidate.version == "v1-rc2" and d.status == "success"
    ]
    assert [d.rolled_back_at for d in rc2_successes] == [done.deployment.deploy_start_at]
    assert await target_of(story, "production") == "v1-rc1"


async def test_a_rollback_cancels_what_is_under_way_and_redeploys_the_running_rc(
    story: Story,
) -> None:
    await story.ship("production", "v1-rc1")
    await story.ship("production", "v1-rc2")
    await story.create_rc("v1-rc3")
    await story.create_rc("v1-rc4")
    rc3 = await story.deploy("production", "v1-rc3")
    await story.report("production", "v1-rc3", DeploymentStatus.IN_PROGRESS)
    rc4 = await story.deploy("production", "v1-rc4")
    other_environment = await story.deploy("staging", "v1-rc4")

    done = await story.roll_back("production")
    assert done.deployment.release_candidate.version == "v1-rc2"
    assert done.rolled_back_from.version == "v1-rc4"
    assert [d.id for d in done.canceled] == [rc4.id]

    history = {d.id: d for d in await story.history("production")}
    assert history[rc4.id].status == DeploymentStatus.CANCELED
    assert history[rc4.id].error_message == CANCELED_BY_ROLLBACK
    # rc3 was under way until rc4 superseded it.
    assert history[rc3.id].status == DeploymentStatus.CANCELED
    assert history[rc3.id].error_message == SUPERSEDED_MESSAGE.format(id=rc4.id)
    assert history[rc4.id].deploy_end_at == story.now
    active = [d for d in history.values() if d.status in ("pending", "in_progress", "canceling")]
    assert [d.id for d in active] == [done.deployment.id]
    # Another environment's deployment is left alone.
    assert (await story.history("staging"))[0].id == other_environment.id
    assert (await story.history("staging"))[0].status == DeploymentStatus.PENDING


async def deployment_rows(session: AsyncSession) -> list[tuple[Any, ...]]:
    rows = await session.execute(
        select(
            Deployment.id,
            Deployment.status,
            Deployment.error_message,
            Deployment.rolled_back_at,
            Deployment.updated_at,
            Deployment.deploy_end_at,
        ).order_by(Deployment.id)
    )
    return [tuple(row) for row in rows]


async def test_a_frozen_environment_refuses_a_rollback_before_changing_anything(
    story: Story,
) -> None:
    for version in ("v1-rc1", "v1-rc2"):
        await story.ship("production", version)
    await story.create_rc("v1-rc3")
    await story.deploy("production", "v1-rc3")
    await story.freeze("production")

    # Looked at inside the refused rollback's own transaction, before it is rolled back.
    async with story.db.write() as session:
        before = await deployment_rows(session)
        with pytest.raises(DomainError) as caught:
            await roll_back(
                session,
                NO_MIRROR,
                project_name="Backend",
                environment_name="production",
                actor=ACTOR,
                force=False,
                clock=story.tick,
            )
        assert caught.value.message == errors.ENVIRONMENT_FROZEN
        assert caught.value.refusal == Refusal.INVALID
        assert await deployment_rows(session) == before


async def test_force_rolls_back_a_frozen_environment(story: Story) -> None:
    for version in ("v1-rc1", "v1-rc2"):
        await story.ship("production", version)
    await story.freeze("production")
    done = await story.roll_back("production", force=True)
    assert done.deployment.release_candidate.version == "v1-rc1"
    # The freeze still holds for ordinary deployments.
    assert await refusal(story.deploy("production", "v1-rc2")) == (
        Refusal.INVALID,
        errors.ENVIRONMENT_FROZEN,
    )


async def test_a_removed_environment_is_not_rolled_back(story: Story) -> None:
    for version in ("v1-rc1", "v1-rc2"):
        await story.ship("staging", version)
    await sync(story.db, WITHOUT_STAGING_YAML)
    assert await refusal(story.roll_back("staging")) == (
        Refusal.INVALID,
        errors.ENVIRONMENT_REMOVED,
    )


# --- freezes -----------------------------------------------------------------------------------


async def test_a_freeze_lasts_until_its_end(story: Story) -> None:
    assert current_freeze(await story.environment("production"), story.now) is None
    until = story.now + timedelta(hours=2)
    await story.freeze("production", until=until, reason="launch")
    since = story.now

    environment = await story.environment("production")
    freeze = current_freeze(environment, story.now)
    assert freeze is not None
    assert (freeze.reason, freeze.by, freeze.since, freeze.until) == (
        "launch",
        ACTOR,
        since,
        until,
    )
    assert current_freeze(environment, until - timedelta(seconds=1)) is not None
    assert current_freeze(environment, until) is None
    assert current_freeze(environment, until + timedelta(days=1)) is None
    # Only production is frozen.
    assert current_freeze(await story.environment("staging"), story.now) is None


async def test_freezing_again_keeps_since_and_takes_the_new_reason(story: Story) -> None:
    await story.freeze("production", reason="first")
    since = story.now
    story.tick(minutes=10)
    until = story.now + timedelta(hours=1)
    await story.freeze("production", reason="second", until=until)

    freeze = current_freeze(await story.environment("production"), story.now)
    assert freeze is not None
    assert (freeze.reason, freeze.since, freeze.until) == ("second", since, until)


async def test_a_freeze_after_the_last_one_ended_starts_afresh(story: Story) -> None:
    await story.freeze("production", until=story.now + timedelta(minutes=5))
    story.tick(minutes=10)
    await story.freeze("production", reason="again")
    freeze = current_freeze(await story.environment("production"), story.now)
    assert freeze is not None
    assert (freeze.since, freeze.until) == (story.now, None)


@pytest.mark.parametrize("until", [timedelta(0), timedelta(seconds=-1), timedelta(days=-3)])
def test_a_freeze_cannot_end_in_the_past(until: timedelta) -> None:
    environment = Environment(name="scratch")
    with pytest.raises(DomainError) as caught:
        freeze_environment(environment, reason="x", by=ACTOR, until=T0 + until, now=T0)
    assert (caught.value.refusal, caught.value.message) == (
        Refusal.INVALID,
        errors.FREEZE_UNTIL_IN_PAST,
    )
    assert environment.frozen_at is None
    assert current_freeze(environment, T0) is None


async def test_unfreezing_lets_deployments_through(story: Story) -> None:
    await story.create_rc("v1-rc1")
    await story.freeze("production")
    await story.unfreeze("production")
    assert current_freeze(await story.environment("production"), story.now) is None
    assert (await story.deploy("production", "v1-rc1")).status == DeploymentStatus.PENDING


async def test_an_expired_freeze_no_longer_blocks(story: Story) -> None:
    await story.create_rc("v1-rc1")
    await story.freeze("production", until=story.now + timedelta(minutes=30))
    assert await refusal(story.deploy("production", "v1-rc1")) == (
        Refusal.INVALID,
        errors.ENVIRONMENT_FROZEN,
    )
    story.tick(minutes=30)
    assert (await story.deploy("production", "v1-rc1")).status == DeploymentStatus.PENDING


# --- stuck deployments -------------------------------------------------------------------------


async def test_an_active_deployment_past_the_timeout_becomes_error(story: Story) -> None:
    await story.create_rc("v1-rc1")
    await story.create_rc("v1-rc2")
    old = await story.deploy("production", "v1-rc1")  # production: 30 minutes
    story.tick(minutes=20)
    recent = await story.deploy("staging", "v1-rc2")
    expires = old.deploy_start_at + timedelta(minutes=30)

    async with story.db.write() as session:
        env = await find_environment(session, "Backend", "production", lock=True)
        assert await expire_stuck(session, NO_MIRROR, env, expires) == []
        expired = await expire_stuck(session, NO_MIRROR, env, expires + timedelta(seconds=1))
    assert [d.id for d in expired] == [old.id]

    history = {d.id: d for d in await story.history("production")}
    assert history[old.id].status == DeploymentStatus.ERROR
    assert history[old.id].error_message == TIMED_OUT_MESSAGE.format(minutes=30)
    assert history[old.id].deploy_end_at == expires + timedelta(seconds=1)
    assert (await story.history("staging"))[0].id == recent.id
    assert (await story.history("staging"))[0].status == DeploymentStatus.PENDING


async def test_the_sweep_expires_stuck_deployments_in_every_environment(story: Story) -> None:
    for version in ("v1-rc1", "v1-rc2", "v1-rc3", "v1-rc4"):
        await story.create_rc(version)
    finished = await story.report("production", "v1-rc3", DeploymentStatus.SUCCESS)
    production = await story.deploy("production", "v1-rc1")
    await story.report("production", "v1-rc1", DeploymentStatus.IN_PROGRESS)
    unsure = await story.report("production", "v1-rc2", DeploymentStatus.UNKNOWN)
    story.tick(minutes=45)
    staging = await story.deploy("staging", "v1-rc1")  # staging: the default 60 minutes

    now = story.tick()
    assert await sweep_stuck_deployments(story.db, lambda: now, Mirror(enabled=False)) == 1
    assert await sweep_stuck_deployments(story.db, lambda: now, Mirror(enabled=False)) == 0

    statuses = {
        d.id: (d.status, d.error_message)
        for env in ("production", "staging")
        for d in await story.history(env)
    }
    assert statuses == {
        production.id: ("error", "Deployment timed out: no final status after 30 minutes"),
        staging.id: ("pending", None),  # 1 minute in, of 60
        unsure.deployment.id: ("unknown", None),  # not active: the reporter does not know
        finished.deployment.id: ("success", None),
    }

    later = story.tick(minutes=60)
    assert await sweep_stuck_deployments(story.db, lambda: later, Mirror(enabled=False)) == 1
    assert (await story.history("staging"))[0].error_message == TIMED_OUT_MESSAGE.format(minutes=60)


async def test_the_sweep_fails_builds_that_outlast_their_projects_timeout(story: Story) -> None:
    stuck = await story.create_rc("v1-rc1", build=True)
    story.tick(minutes=30)
    recent = await story.create_rc("v1-rc2", build=True)
    built = await story.create_rc("v1-rc3", build=True)
    await story.set_build_status("v1-rc3", BuildStatus.READY)
    lapsed = stuck.created_at + timedelta(minutes=60)

    assert await sweep_stuck_builds(story.db, lambda: lapsed, Mirror(enabled=False)) == 0
    later = lapsed + timedelta(seconds=1)
    assert await sweep_stuck_builds(story.db, lambda: later, Mirror(enabled=False)) == 1
    assert await sweep_stuck_builds(story.db, lambda: later, Mirror(enabled=False)) == 0

    async with story.db.read() as session:
        found = {
            c.id: (c.build_status, c.build_error)
            for c in await session.scalars(select(ReleaseCandidate))
        }
    assert found == {
        stuck.id: ("failed", BUILD_TIMED_OUT_MESSAGE.format(minutes=60)),
        recent.id: ("building", None),  # 30 minutes in, of 60
        built.id: ("ready", None),
    }
    # A failed build deploys nowhere, and auto-deploy never saw it.
    assert await story.history("staging") == []
    assert await refusal(story.deploy("staging", "v1-rc1")) == (
        Refusal.INVALID,
        errors.RC_BUILD_FAILED,
    )

    # The project's own timeout, from the projects file.
    await sync(story.db, CHANGED_YAML)
    soon = recent.created_at + timedelta(minutes=20, seconds=1)
    assert await sweep_stuck_builds(story.db, lambda: soon, Mirror(enabled=False)) == 1
    async with story.db.read() as session:
        candidate = await session.get(ReleaseCandidate, recent.id)
    assert candidate is not None
    assert candidate.build_error == BUILD_TIMED_OUT_MESSAGE.format(minutes=20)


# --- the projects file -------------------------------------------------------------------------


async def test_a_first_sync_adds_every_project_and_environment(db: Database) -> None:
    report = await sync(db)
    assert report.added == [
        "Backend",
        "Backend/staging",
        "Backend/production",
        "Frontend",
        "Frontend/production",
    ]
    assert (report.updated, report.removed) == ([], [])
    async with db.read() as session:
        backend = await find_project(session, "Backend")
        production = await find_environment(session, "Backend", "production")
        staging = await find_environment(session, "Backend", "staging")
        frontend = await find_project(session, "Frontend")
    assert (backend.repo, backend.build_workflow, backend.tag_prefix) == (
        "acme/backend",
        "build.yml",
        "",
    )
    assert (frontend.tag_prefix, frontend.build_workflow) == ("frontend/", None)
    assert (backend.build_timeout_minutes, frontend.build_timeout_minutes) == (60, 60)
    assert (production.production, production.timeout_minutes) == (True, 30)
    assert (staging.auto_deploy, staging.url, staging.timeout_minutes) == (
        True,
        "https://staging.example.com",
        60,
    )

    again = await sync(db)
    assert (again.added, again.updated, again.removed) == ([], [], [])


async def test_changed_settings_are_updated(story: Story) -> None:
    before = await story.environment("production")
    report = await sync(story.db, CHANGED_YAML)
    assert (report.added, report.updated, report.removed) == (
        [],
        ["Backend", "Backend/production"],
        [],
    )
    async with story.db.read() as session:
        backend = await find_project(session, "Backend")
        production = await find_environment(session, "Backend", "production")
    assert (backend.build_workflow, backend.build_inputs) == ("release.yml", {"target": "release"})
    assert backend.build_timeout_minutes == 20
    assert production.id == before.id
    assert (
        production.deploy_workflow,
        production.timeout_minutes,
        production.deploy_inputs,
    ) == ("deploy-production.yml", 45, {"region": "eu-west-1"})


async def test_a_removed_environment_keeps_its_history_and_refuses_deployments(
    story: Story,
) -> None:
    await story.ship("staging", "v1-rc1")
    await story.create_rc("v1-rc2")

    report = await sync(story.db, WITHOUT_STAGING_YAML, now=story.tick())
    assert report.removed == ["Backend/staging"]
    assert (await story.environment("staging")).removed_at == story.now

    async with story.db.read() as session:
        page = await list_deployments(session, "Backend", "staging", PageRequest())
    assert [d.release_candidate.version for d in page.items] == ["v1-rc1"]
    assert await story.running("staging") == "v1-rc1"
    assert await refusal(story.deploy("staging", "v1-rc2")) == (
        Refusal.INVALID,
        errors.ENVIRONMENT_REMOVED,
    )
    # Syncing the same file again removes nothing more.
    assert (await sync(story.db, WITHOUT_STAGING_YAML)).removed == []

    # Added back, it is the same environment, history and all.
    restored = await sync(story.db)
    assert (restored.added, restored.updated) == ([], ["Backend/staging"])
    assert (await story.environment("staging")).removed_at is None
    deployed = await story.deploy("staging", "v1-rc2")
    assert deployed.from_release_candidate is not None
    assert deployed.from_release_candidate.version == "v1-rc1"
    assert len(await story.history("staging")) == 2


async def test_a_removed_project_keeps_its_history_and_takes_nothing_new(story: Story) -> None:
    await story.create_rc("frontend-rc1", project="Frontend")
    await story.deploy("production", "frontend-rc1", project="Frontend")

    report = await sync(story.db, WITHOUT_FRONTEND_YAML, now=story.tick())
    assert report.removed == ["Frontend"]
    async with story.db.read() as session:
        frontend = await find_project(session, "Frontend")
        production = await find_environment(session, "Frontend", "production")
    assert frontend.removed_at == story.now
    assert production.removed_at == story.now
    assert len(await story.history("production", project="Frontend")) == 1

    assert await refusal(story.create_rc("frontend-rc2", project="Frontend")) == (
        Refusal.INVALID,
        errors.PROJECT_REMOVED,
    )
    assert await refusal(story.deploy("production", "frontend-rc1", project="Frontend")) == (
        Refusal.INVALID,
        errors.ENVIRONMENT_REMOVED,
    )
    # Backend is untouched.
    assert (await story.environment("production")).removed_at is None

    restored = await sync(story.db)
    assert restored.updated == ["Frontend", "Frontend/production"]
    await story.create_rc("frontend-rc2", project="Frontend")
    await story.deploy("production", "frontend-rc2", project="Frontend")
    async with story.db.read() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(Deployment)
            .join(Environment)
            .join(Project)
            .where(Project.name == "Frontend")
        )
    assert count == 2
