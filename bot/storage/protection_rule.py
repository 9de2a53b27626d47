"""The queries behind a GitHub deployment protection rule's review request
(bot/github/inbound/deployment_protection_rule.py): where a gated run goes, and what it
deploys."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain.statuses import ACTIVE_STATUSES
from bot.storage.models import Deployment, Environment, Project, ReleaseCandidate


async def projects_on(session: AsyncSession, repo: str) -> list[Project]:
    """The repository's projects in the projects file now, in its order."""
    found = await session.scalars(
        select(Project)
        .where(func.lower(Project.repo) == repo.lower(), Project.removed_at.is_(None))
        .order_by(Project.id)
    )
    return list(found)


async def environments_named(
    session: AsyncSession, projects: Sequence[Project], name: str
) -> list[Environment]:
    """The environments called `name` of those projects (one removed from the file too:
    the deploy rules say it takes no deployment), locked in id order for the decision, as
    every deploy locks its environment before it reads or changes its deployments."""
    if not projects:
        return []
    found = await session.scalars(
        select(Environment)
        .where(Environment.project_id.in_([p.id for p in projects]), Environment.name == name)
        .order_by(Environment.id)
        .with_for_update(of=Environment)
    )
    return list(found)


async def deployment_of_github_deployment(
    session: AsyncSession, environment_ids: Sequence[int], github_deployment_id: int
) -> Deployment | None:
    """The deployment under way that recorded the GitHub Deployment Actions made for the
    gated job (its `deployment` event came first), locked; through the (environment, status,
    id) index: only what is under way is read."""
    found: Deployment | None = await session.scalar(
        select(Deployment)
        .where(
            Deployment.environment_id.in_(environment_ids),
            Deployment.status.in_(ACTIVE_STATUSES),
            Deployment.github_deployment_id == github_deployment_id,
        )
        .order_by(Deployment.id.desc())
        .limit(1)
        .with_for_update(of=Deployment)
    )
    return found


async def newest_candidate_at(
    session: AsyncSession, project_id: int, commit_sha: str
) -> ReleaseCandidate | None:
    """The project's newest candidate at a commit. Through (project, version): a project's
    candidates, not the whole table (no index on the commit)."""
    found: ReleaseCandidate | None = await session.scalar(
        select(ReleaseCandidate)
        .where(ReleaseCandidate.project_id == project_id, ReleaseCandidate.commit_sha == commit_sha)
        .order_by(ReleaseCandidate.id.desc())
        .limit(1)
    )
    return found


async def candidate_of_version(
    session: AsyncSession, project_id: int, version: str
) -> ReleaseCandidate | None:
    found: ReleaseCandidate | None = await session.scalar(
        select(ReleaseCandidate).where(
            ReleaseCandidate.project_id == project_id, ReleaseCandidate.version == version
        )
    )
    return found
