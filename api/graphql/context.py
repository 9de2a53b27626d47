"""What every resolver of one GraphQL request shares: who asks, the one database session the
request reads (and, for a mutation, writes) through, and the DataLoaders that batch its reads.

Each loader turns the loads of one tick into one statement (`IN (...)`), so a query over 50
projects x 6 environments costs the same few statements as one over a single project. The
session is used by one statement at a time (`lock`): loaders of different kinds dispatch in the
same tick, and an AsyncSession refuses concurrent use.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.dataloader import DataLoader

from bot.app.changes import (
    Between,
    ask_for_reports,
    ask_for_reports_in,
    forget_refused,
    forget_refused_in,
    report_key,
)
from bot.service import Service
from bot.storage import change_reports, deployments, environments, projects, releases
from bot.storage import policy as stored_policy
from bot.storage.change_reports import ReportSummary
from bot.storage.deployments import Running
from bot.storage.models import (
    Approval,
    ChangeReport,
    Deployment,
    Environment,
    Project,
    ReleaseCandidate,
)
from bot.storage.tokens import TokenIdentity

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

ReportKey = tuple[str, str, str, str]


@dataclass
class GraphContext:
    service: Service
    identity: TokenIdentity
    now: datetime  # read once: every freeze in one answer is judged at the same moment
    session: AsyncSession | None = None
    # The session is a mutation's write transaction: what the answer writes goes in it.
    writing: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # A mutation request is one transaction: after a refusal the rest are not run, and what
    # the refusal keeps (its audit entry, its notification) is written once it rolled back.
    failed: BaseException | None = None
    statements: int = 0
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        self.loaders = Loaders(self)

    async def read(self, query: Callable[[AsyncSession], Awaitable[V]]) -> V:
        """Run one storage query on the request's session, one at a time."""
        assert self.session is not None, "the view opens the session before executing"
        async with self.lock:
            return await query(self.session)

    def in_scope(self, project_name: str) -> bool:
        return self.identity.may_use(project_name)


def _by(items: Sequence[V], key: Callable[[V], Any]) -> dict[Any, V]:
    return {key(item): item for item in items}


def _grouped(items: Sequence[V], key: Callable[[V], Any]) -> dict[Any, list[V]]:
    groups: dict[Any, list[V]] = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    return groups


class Loaders:
    """The request's DataLoaders, one per kind of object."""

    def __init__(self, context: GraphContext) -> None:
        self._context = context
        self.project_by_name = self._loader(self._projects_by_name)
        self.project_by_id = self._loader(self._projects_by_id)
        self.environments_of = self._loader(self._environments_of)
        self.running = self._loader(self._running)
        self.running_candidate = self._loader(self._running_candidates)
        self.environment_named = self._loader(self._environments_named)
        self.active = self._loader(self._active)
        self.candidate = self._loader(self._candidates)
        self.candidates_of_release = self._loader(self._candidates_of_release)
        self.report = self._loader(self._reports)
        # The lists of a report, read only when a query asks for them.
        self.report_lists = self._loader(self._reports_by_id)
        self.approvals_of = self._loader(self._approvals_of)
        self.ask = DataLoader(self._ask, cache_key_fn=_between_key)
        self.forget = DataLoader(self._forget, cache_key_fn=_between_key)

    def _loader(self, load: Callable[[list[K]], Awaitable[Sequence[V]]]) -> DataLoader[K, V]:
        return DataLoader(load)

    async def _projects_by_name(self, names: list[str]) -> list[Project | None]:
        context = self._context
        visible = [name for name in names if context.in_scope(name)]
        found = _by(await context.read(lambda s: projects.projects_named(s, visible)), _name)
        return [found.get(name) for name in names]

    async def _projects_by_id(self, ids: list[int]) -> list[Project | None]:
        found = _by(await self._context.read(lambda s: projects.projects_by_id(s, ids)), _id)
        return [found.get(i) for i in ids]

    async def _environments_of(self, project_ids: list[int]) -> list[list[Environment]]:
        found = await self._context.read(
            lambda s: environments.environments_of_projects(s, project_ids)
        )
        grouped = _grouped(found, lambda e: e.project_id)
        return [grouped.get(i, []) for i in project_ids]

    async def _environments_named(self, keys: list[tuple[int, str]]) -> list[Environment | None]:
        found = _by(
            await self._context.read(lambda s: environments.environments_named(s, keys)),
            lambda e: (e.project_id, e.name),
        )
        return [found.get(key) for key in keys]

    async def _running_candidates(self, environment_ids: list[int]) -> list[Running | None]:
        found = await self._context.read(
            lambda s: deployments.running_candidates(s, environment_ids)
        )
        by_environment = _by(found, lambda r: r.environment_id)
        return [by_environment.get(i) for i in environment_ids]

    async def _running(self, environment_ids: list[int]) -> list[Deployment | None]:
        found = await self._context.read(
            lambda s: deployments.running_deployments(s, environment_ids)
        )
        by_environment = _by(found, lambda d: d.environment_id)
        return [by_environment.get(i) for i in environment_ids]

    async def _active(self, environment_ids: list[int]) -> list[Deployment | None]:
        found = await self._context.read(
            lambda s: deployments.active_deployments_of(s, environment_ids)
        )
        grouped = _grouped(found, lambda d: d.environment_id)
        # The newest deployment still under way, as the REST answer's active_deployment.
        return [max(grouped[i], key=_id) if grouped.get(i) else None for i in environment_ids]

    async def _candidates(self, keys: list[tuple[int, str]]) -> list[ReleaseCandidate | None]:
        found = _by(
            await self._context.read(lambda s: releases.candidates_named(s, keys)),
            lambda c: (c.project_id, c.version),
        )
        return [found.get(key) for key in keys]

    async def _candidates_of_release(self, ids: list[int]) -> list[list[ReleaseCandidate]]:
        found = await self._context.read(lambda s: releases.candidates_of_releases(s, ids))
        grouped = _grouped(found, lambda c: c.release_id)
        return [grouped.get(i, []) for i in ids]

    async def _reports(self, keys: list[ReportKey]) -> list[ReportSummary | None]:
        found = _by(
            await self._context.read(lambda s: change_reports.find_report_summaries(s, keys)),
            lambda r: (r.repo, r.base_commit, r.head_commit, r.paths_digest),
        )
        return [found.get(key) for key in keys]

    async def _reports_by_id(self, ids: list[int]) -> list[ChangeReport | None]:
        found = _by(await self._context.read(lambda s: change_reports.reports_by_id(s, ids)), _id)
        return [found.get(i) for i in ids]

    async def _approvals_of(self, deployment_ids: list[int]) -> list[list[Approval]]:
        found = await self._context.read(
            lambda s: stored_policy.approvals_of_deployments(s, deployment_ids)
        )
        grouped = _grouped(found, lambda a: a.deployment_id)
        return [grouped.get(i, []) for i in deployment_ids]

    async def _ask(self, wanted: list[Between]) -> list[None]:
        """The reports not stored yet, asked for in one transaction of their own (the
        request's session may be a read) or in a mutation's; the commit wakes the outbox
        worker."""
        context = self._context
        service = context.service
        if context.writing:
            now = service.clock()
            await context.read(lambda s: ask_for_reports_in(s, service.mirror, wanted, now))
        else:
            await ask_for_reports(service.db, service.mirror, wanted, service.clock())
        return [None] * len(wanted)

    async def _forget(self, refused: list[Between]) -> list[None]:
        """The reports GitHub refused, said once in this answer, forgotten in one transaction
        of their own, as REST forgets one: the next request asks GitHub again."""
        context = self._context
        if context.writing:
            await context.read(lambda s: forget_refused_in(s, refused))
        else:
            await forget_refused(context.service.db, refused)
        return [None] * len(refused)


def _between_key(found: Between) -> Hashable:
    return report_key(found)


def _name(project: Project) -> str:
    return project.name


def _id(row: Any) -> int:
    identifier: int = row.id
    return identifier
