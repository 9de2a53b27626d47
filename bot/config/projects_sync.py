"""Bringing the database in line with the projects file at start-up.

New projects and environments appear; changed settings are updated; a project or environment
that left the file keeps its history and refuses new deployments (it comes back, history and
all, if it is added again).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config.projects_file import (
    DEFAULT_BUILD_TIMEOUT_MINUTES,
    EnvironmentConfig,
    ProjectConfig,
    ProjectsConfig,
)
from bot.storage.models import Environment, Project

# Any constant works; it only has to be the same in every replica.
SYNC_ADVISORY_LOCK = 7_243_571_002


@dataclass
class SyncReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


async def sync_projects(session: AsyncSession, config: ProjectsConfig, now: datetime) -> SyncReport:
    if session.get_bind().dialect.name == "postgresql":
        # Replicas starting together sync one after the other.
        await session.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": SYNC_ADVISORY_LOCK}
        )
    report = SyncReport()
    projects = {p.name: p for p in await session.scalars(select(Project))}
    environments: dict[int, dict[str, Environment]] = {}
    for row in await session.scalars(select(Environment)):
        environments.setdefault(row.project_id, {})[row.name] = row

    for wanted in config.projects:
        project = projects.get(wanted.name)
        if project is None:
            project = Project(name=wanted.name)
            session.add(project)
            report.added.append(wanted.name)
        if _apply_project(project, wanted) and wanted.name not in report.added:
            report.updated.append(wanted.name)
        await session.flush()
        existing = environments.get(project.id, {})
        for wanted_env in wanted.environments:
            label = f"{wanted.name}/{wanted_env.name}"
            env = existing.get(wanted_env.name)
            if env is None:
                env = Environment(project_id=project.id, name=wanted_env.name)
                session.add(env)
                report.added.append(label)
            if _apply_environment(env, wanted_env) and label not in report.added:
                report.updated.append(label)
        wanted_names = {e.name for e in wanted.environments}
        for name, env in existing.items():
            if name not in wanted_names and env.removed_at is None:
                env.removed_at = now
                report.removed.append(f"{wanted.name}/{name}")

    wanted_projects = {p.name for p in config.projects}
    for name, project in projects.items():
        if name in wanted_projects or project.removed_at is not None:
            continue
        project.removed_at = now
        report.removed.append(name)
        for env in environments.get(project.id, {}).values():
            if env.removed_at is None:
                env.removed_at = now
    await session.flush()
    return report


def _apply_project(project: Project, wanted: ProjectConfig) -> bool:
    values = {
        "repo": wanted.repo,
        "tag_prefix": wanted.tag_prefix,
        "paths": list(wanted.paths),
        "build_workflow": wanted.build.workflow if wanted.build else None,
        "build_inputs": dict(wanted.build.inputs) if wanted.build else {},
        "build_timeout_minutes": (
            wanted.build.timeout_minutes if wanted.build else DEFAULT_BUILD_TIMEOUT_MINUTES
        ),
        "pull_request_comments": wanted.pull_request_comments,
        "github_releases": wanted.github_releases,
        "notifications": [receiver.stored() for receiver in wanted.notifications],
        "removed_at": None,
    }
    return _assign(project, values)


def _apply_environment(env: Environment, wanted: EnvironmentConfig) -> bool:
    values = {
        "production": wanted.production,
        "deploy_workflow": wanted.deploy_workflow,
        "deploy_inputs": dict(wanted.inputs),
        "url": wanted.url,
        "auto_deploy": wanted.auto_deploy,
        "timeout_minutes": wanted.timeout_minutes,
        "github_deployment": wanted.github_deployment,
        "notifications": [receiver.stored() for receiver in wanted.notifications],
        "policy": wanted.policy(),
        "removed_at": None,
    }
    return _assign(env, values)


def _assign(row: object, values: Mapping[str, object]) -> bool:
    changed = False
    for key, value in values.items():
        if getattr(row, key, None) != value:
            setattr(row, key, value)
            changed = True
    return changed
