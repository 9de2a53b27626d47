"""Finding projects and environments, and locking an environment for a decision."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core import errors
from bot.domain.names import is_valid_name
from bot.storage.lookup import one_or_not_found
from bot.storage.models import Environment, Project

# Built once: nearly every request runs it, and building it costs more than running it.
_PROJECT_BY_NAME = select(Project).where(Project.name == bindparam("name"))
_ENVIRONMENT = select(Environment).where(
    Environment.project_id == bindparam("project_id"), Environment.name == bindparam("name")
)
_LOCKED_ENVIRONMENT = _ENVIRONMENT.with_for_update(of=Environment)


@dataclass(frozen=True)
class ProjectRepositories:
    """The repositories that have projects in the database (removed ones included) and, for
    each, the workflows Tarmac runs there (build and deploy workflows, removed included), as
    the file names or ids the projects file gives. Read once per batch of webhook deliveries,
    so that events of other repositories, and CI runs of other workflows, cost no query."""

    workflows: Mapping[str, frozenset[str]]  # lower-case repository -> workflows

    def has_projects(self, repo: str) -> bool:
        return repo.lower() in self.workflows

    def workflows_of(self, repo: str) -> frozenset[str]:
        return self.workflows.get(repo.lower(), frozenset())


_REPOSITORY_WORKFLOWS = select(
    func.lower(Project.repo), Project.build_workflow, Environment.deploy_workflow
).outerjoin(Environment, Environment.project_id == Project.id)


async def project_repositories(session: AsyncSession) -> ProjectRepositories:
    workflows: dict[str, set[str]] = {}
    for repo, build_workflow, deploy_workflow in await session.execute(_REPOSITORY_WORKFLOWS):
        found = workflows.setdefault(repo, set())
        found.update(w for w in (build_workflow, deploy_workflow) if w)
    return ProjectRepositories({repo: frozenset(w) for repo, w in workflows.items()})


async def current_project_repositories(session: AsyncSession) -> list[tuple[str, str]]:
    """(name, repository) of every project in the file now, in the file's order."""
    rows = await session.execute(
        select(Project.name, Project.repo).where(Project.removed_at.is_(None)).order_by(Project.id)
    )
    return [(name, repo) for name, repo in rows]


async def find_project(session: AsyncSession, name: str) -> Project:
    # A name no projects file could declare (a NUL, a slash) is not asked of the database.
    if not is_valid_name(name):
        raise errors.not_found(errors.PROJECT_NOT_FOUND)
    return await one_or_not_found(
        session, _PROJECT_BY_NAME, errors.PROJECT_NOT_FOUND, {"name": name}
    )


async def find_environment(
    session: AsyncSession, project_name: str, environment_name: str, *, lock: bool = False
) -> Environment:
    """The environment, checked in order: project exists, then environment exists.

    With `lock`, the environment row is locked until the transaction ends (PostgreSQL
    `SELECT … FOR UPDATE`; on SQLite the write transaction already holds the only write lock).
    Every rule that decides from an environment's history locks it first, so two requests for
    the same environment take turns and each sees what the other wrote.
    """
    project = await find_project(session, project_name)
    if not is_valid_name(environment_name):
        raise errors.not_found(errors.ENVIRONMENT_NOT_FOUND)
    query = _LOCKED_ENVIRONMENT if lock else _ENVIRONMENT
    return await one_or_not_found(
        session,
        query,
        errors.ENVIRONMENT_NOT_FOUND,
        {"project_id": project.id, "name": environment_name},
    )


# --- batched reads for the GraphQL face (api/graphql/): one statement per kind of object ---


async def project_page(
    session: AsyncSession, scope: frozenset[str], after: str | None, limit: int
) -> list[Project]:
    """Projects by name, after the name `after` (keyset), at most `limit`; only those named in
    `scope` when it is not empty (a token's projects)."""
    query = select(Project).order_by(Project.name).limit(limit)
    if scope:
        query = query.where(Project.name.in_(sorted(scope)))
    if after is not None:
        query = query.where(Project.name > after)
    return list(await session.scalars(query))


async def projects_named(session: AsyncSession, names: list[str]) -> list[Project]:
    """The projects of these names (an unknown name is simply not among them)."""
    valid = [name for name in names if is_valid_name(name)]
    if not valid:
        return []
    return list(await session.scalars(select(Project).where(Project.name.in_(valid))))


async def projects_by_id(session: AsyncSession, ids: list[int]) -> list[Project]:
    return list(await session.scalars(select(Project).where(Project.id.in_(ids))))
