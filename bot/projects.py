"""Finding projects and environments, and locking an environment for a decision."""

from __future__ import annotations

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import errors
from bot.models import Environment, Project
from bot.projects_file import is_valid_name

# Built once: nearly every request runs it, and building it costs more than running it.
_PROJECT_BY_NAME = select(Project).where(Project.name == bindparam("name"))
_ENVIRONMENT = select(Environment).where(
    Environment.project_id == bindparam("project_id"), Environment.name == bindparam("name")
)
_LOCKED_ENVIRONMENT = _ENVIRONMENT.with_for_update(of=Environment)


_REPOSITORIES = select(func.lower(Project.repo)).distinct()


async def repositories_with_projects(session: AsyncSession) -> frozenset[str]:
    """The repository (lower case) of every project in the database, removed ones included."""
    return frozenset(await session.scalars(_REPOSITORIES))


async def find_project(session: AsyncSession, name: str) -> Project:
    # A name no projects file could declare (a NUL, a slash) is not asked of the database.
    if not is_valid_name(name):
        raise errors.not_found(errors.PROJECT_NOT_FOUND)
    project = await session.scalar(_PROJECT_BY_NAME, {"name": name})
    if project is None:
        raise errors.not_found(errors.PROJECT_NOT_FOUND)
    return project


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
    environment = await session.scalar(query, {"project_id": project.id, "name": environment_name})
    if environment is None:
        raise errors.not_found(errors.ENVIRONMENT_NOT_FOUND)
    return environment


def ensure_accepts_deployments(environment: Environment) -> None:
    if environment.removed_at is not None:
        raise errors.invalid(errors.ENVIRONMENT_REMOVED)
