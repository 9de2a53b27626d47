"""Opening and closing the service: database, migrations, projects file, background work.

Whatever face serves Tarmac (the REST API today, the GitHub webhook receiver next) starts from
one `Service`, built from the one `Settings` object.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from bot.clock import Clock, utc_now
from bot.db import Database
from bot.projects_file import ProjectsConfig, load_projects_file
from bot.projects_sync import sync_projects
from bot.settings import Settings
from bot.timeouts import run_stuck_deployment_sweeper

log = logging.getLogger(__name__)


@dataclass
class Service:
    settings: Settings
    projects: ProjectsConfig
    db: Database
    clock: Clock = utc_now
    _background: list[asyncio.Task[None]] = field(default_factory=list)

    def start_background_work(self) -> None:
        self._background.append(
            asyncio.create_task(
                run_stuck_deployment_sweeper(self.db, self.clock), name="stuck-deployments"
            )
        )

    async def close(self) -> None:
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._background.clear()
        await self.db.dispose()


async def open_service(settings: Settings, *, clock: Clock = utc_now) -> Service:
    """Read the projects file, migrate the database and bring its projects in line.

    Raises ProjectsFileError before touching the database when the file is wrong.
    """
    projects = load_projects_file(settings.config)
    db = Database.from_url(settings.database_url)
    try:
        await db.migrate()
        async with db.write() as session:
            report = await sync_projects(session, projects, clock())
    except BaseException:
        await db.dispose()
        raise
    log.info(
        "projects file %s synced: %d added, %d updated, %d removed",
        settings.config,
        len(report.added),
        len(report.updated),
        len(report.removed),
    )
    return Service(settings=settings, projects=projects, db=db, clock=clock)
