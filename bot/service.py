"""Opening and closing the service: database, migrations, projects file, GitHub side,
background work.

Whatever face serves Tarmac (the REST API, the GitHub webhook receiver) starts from one
`Service`, built from the one `Settings` object.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp
from sqlalchemy.exc import SQLAlchemyError

from bot.app.freeze_windows import run_freeze_window_sweeper
from bot.app.operations import Mirror
from bot.app.timeouts import run_timeout_sweeper
from bot.config.projects_file import ProjectsConfig, load_projects_file
from bot.config.projects_sync import sync_projects
from bot.core.clock import Clock, utc_now
from bot.core.metrics import Metrics
from bot.github.app_auth import GitHubAppSettings
from bot.github.client import GitHubClient
from bot.github.outbound.catch_up import run_catch_up
from bot.github.outbound.handlers import load_all
from bot.github.outbound.pacing import ContentPacer, Limits
from bot.github.outbound.worker import OutboxWorker
from bot.notify.delivery import Notifier
from bot.settings import Settings
from bot.storage.db import Database, head_revision
from bot.storage.idempotency import run_expired_key_purge
from bot.storage.outbox import Action
from bot.storage.outbox_listener import OutboxListener

log = logging.getLogger(__name__)

# SIGTERM: the worker finishes the round in progress, within this much time.
WORKER_STOP_SECONDS = 8.0
READY_TIMEOUT_SECONDS = 2.0
# While writes fail, /readyz tries one itself, at most this often (it needs no token).
WRITE_PROBE_INTERVAL_SECONDS = 1.0


@dataclass
class Service:
    settings: Settings
    projects: ProjectsConfig
    db: Database
    clock: Clock = utc_now
    github_app: GitHubAppSettings | None = None
    metrics: Metrics = field(default_factory=Metrics)
    # The newest migration this code knows, read from the migration files once.
    schema_head: str | None = field(default_factory=head_revision)
    github: GitHubClient | None = None
    outbox_worker: OutboxWorker | None = None
    # PostgreSQL: what wakes this worker when another replica commits outbox items.
    outbox_listener: OutboxListener | None = None
    _http: aiohttp.ClientSession | None = None
    _background: list[asyncio.Task[None]] = field(default_factory=list)
    _worker_task: asyncio.Task[None] | None = None
    _write_probe: asyncio.Lock = field(default_factory=asyncio.Lock)
    _write_probed_at: float | None = None

    @property
    def mirror(self) -> Mirror:
        """Changes are mirrored to GitHub when a GitHub App is configured."""
        return Mirror(enabled=self.github_app is not None)

    @property
    def _notifies(self) -> bool:
        """Whether the projects file names any notification receiver."""
        return any(
            project.notifications or any(env.notifications for env in project.environments)
            for project in self.projects.projects
        )

    async def readiness(self) -> dict[str, str]:
        """Each check by name, "ok" or what is wrong: the database answers, its schema is the
        newest migration, writes are not failing, and the outbox worker is running when it has
        something to deliver (a GitHub App, or notification receivers)."""
        checks: dict[str, str] = {}
        try:
            revision = await asyncio.wait_for(self.db.current_revision(), READY_TIMEOUT_SECONDS)
        except (TimeoutError, OSError, SQLAlchemyError):
            checks["database"] = "unreachable"
        else:
            checks["database"] = "ok"
            head = self.schema_head
            checks["migrations"] = "ok" if revision == head else f"at {revision}, not {head}"
            checks["database_writes"] = await self._write_check()
        if self.outbox_worker is not None and (self.github is not None or self._notifies):
            running = self._worker_task is not None and not self._worker_task.done()
            checks["outbox_worker"] = "ok" if running else "not running"
        return checks

    async def _write_check(self) -> str:
        """The writes check: ok unless the newest write failed and a write tried now fails too.
        Reads alone do not show a disk that is full or read-only; a probe on every call would
        cost a commit each time, so one runs only after a write failed."""
        if self.db.write_failure is not None:
            async with self._write_probe:  # callers at the same moment share one probe
                probed = self._write_probed_at
                if probed is None or time.monotonic() - probed >= WRITE_PROBE_INTERVAL_SECONDS:
                    self._write_probed_at = time.monotonic()
                    with contextlib.suppress(TimeoutError, OSError, SQLAlchemyError):
                        await asyncio.wait_for(self.db.probe_write(), READY_TIMEOUT_SECONDS)
        failure = self.db.write_failure
        return "ok" if failure is None else f"failing: {failure}"

    def start_background_work(self) -> None:
        self._background.append(
            asyncio.create_task(
                run_timeout_sweeper(self.db, self.clock, self.mirror),
                name="timeouts",
            )
        )
        self._background.append(
            asyncio.create_task(
                run_freeze_window_sweeper(
                    self.db, self.clock, self.settings.calendar_sweep_seconds
                ),
                name="freeze-windows",
            )
        )
        self._background.append(
            asyncio.create_task(
                run_expired_key_purge(self.db, self.clock), name="idempotency-key-purge"
            )
        )
        if self.outbox_worker is not None:
            self._worker_task = asyncio.create_task(self.outbox_worker.run(), name="outbox")
            self._start_outbox_listener(self.outbox_worker)
        if self.github is not None:
            self._background.append(
                asyncio.create_task(
                    run_catch_up(self.db, self.github, self.clock, self.mirror),
                    name="catch-up",
                )
            )

    def _start_outbox_listener(self, worker: OutboxWorker) -> None:
        url = self.db.database_url
        if self.db.is_sqlite or url is None or not self.settings.outbox_wake:
            return
        self.outbox_listener = OutboxListener(url, self.db.origin, worker.wake)
        self._background.append(
            asyncio.create_task(self.outbox_listener.run(), name="outbox-listener")
        )

    async def close(self) -> None:
        if self.outbox_worker is not None and self._worker_task is not None:
            self.outbox_worker.stop()
            try:
                await asyncio.wait_for(self._worker_task, WORKER_STOP_SECONDS)
            except TimeoutError:
                log.warning("outbox worker did not stop in time; its items will be retried")
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._background.clear()
        if self._http is not None:
            await self._http.close()
        await self.db.dispose()


async def open_service(settings: Settings, *, clock: Clock = utc_now) -> Service:
    """Read the projects file, migrate the database and bring its projects in line; set up the
    outbox worker (notifications) and, with a GitHub App configured, the GitHub client it
    also delivers to.

    Raises ProjectsFileError (a receiver's variable not set is one) or GitHubAppMisconfigured
    before touching the database.
    """
    projects = load_projects_file(settings.config, is_set=settings.environment_has)
    github_app = settings.github_app()
    db = Database.from_url(
        settings.database_url, statement_timeout=settings.database_statement_timeout
    )
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
    service = Service(
        settings=settings, projects=projects, db=db, clock=clock, github_app=github_app
    )
    # One client session for the process: GitHub's calls and the notifications.
    service._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    if github_app is not None:
        service.github = GitHubClient(
            service._http, github_app, clock=clock, metrics=service.metrics
        )
    if not settings.outbox_worker:
        return service
    notifier = Notifier(service._http, settings.secret_from_environment)
    # Without a GitHub App the worker still runs, for the notifications alone.
    service.outbox_worker = OutboxWorker(
        db,
        service.github,
        clock,
        load_all(),
        mirror=service.mirror,
        local_handlers={Action.NOTIFY: notifier.deliver},
        idle_poll=settings.outbox_poll_seconds,
        lease=timedelta(seconds=settings.outbox_lease_seconds),
        pacer=ContentPacer(Limits(interval=settings.github_content_interval_seconds)),
    )
    # Every write transaction that adds outbox items wakes the worker once it has committed.
    db.wakes_outbox = settings.outbox_wake
    db.on_outbox_committed(service.outbox_worker.wake)
    return service
