"""The dashboard's part of the app: templates, routes, static files, headers, the change feed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from api.dashboard import actions, github_sign_in, pages
from api.dashboard.keys import (
    FEED,
    GITHUB_ACCESS,
    KEPT_NEWEST,
    OAUTH,
    OVERVIEW_CACHE,
    SESSION_SECRET,
    SHOWN_REPORTS,
)
from api.dashboard.live import ChangeFeed, mark_reader
from api.dashboard.overview_cache import OverviewCache
from api.dashboard.sessions import load_secret
from api.keys import SERVICE
from bot.app.dashboard import KeptNewest, ShownReports
from bot.github.access import RepositoryAccess


def is_dashboard_resource(canonical: str) -> bool:
    """Whether a route is the dashboard's (HTML for people, not in the OpenAPI document)."""
    if canonical.startswith(pages.STATIC_PREFIX):
        return True
    tables = (pages.routes, actions.routes, github_sign_in.routes)
    return any(
        isinstance(route, web.RouteDef) and route.path == canonical
        for table in tables
        for route in table
    )


def add_dashboard(app: web.Application) -> None:
    pages.setup_templates(app)
    app[OVERVIEW_CACHE] = OverviewCache()
    app[SHOWN_REPORTS] = ShownReports()
    app[KEPT_NEWEST] = KeptNewest()
    app.add_routes(pages.routes)
    app.add_routes(actions.routes)
    app.add_routes(github_sign_in.routes)
    app.router.add_static(pages.STATIC_PREFIX, pages.STATIC, append_version=False)
    app.cleanup_ctx.append(_dashboard_context)
    app.on_shutdown.append(_close_streams)


async def _close_streams(app: web.Application) -> None:
    if FEED in app:
        await app[FEED].close()


async def _dashboard_context(app: web.Application) -> AsyncIterator[None]:
    """After the service opened: the session key, and the feed's poller (idle until a page
    listens)."""
    service = app[SERVICE]
    app[SESSION_SECRET] = await load_secret(app)
    oauth = service.settings.github_oauth()
    if oauth is not None and service.github is not None and service.outbox_worker is not None:
        app[OAUTH] = oauth
        app[GITHUB_ACCESS] = RepositoryAccess(
            service.github, service.outbox_worker.installation_for
        )
    feed = ChangeFeed(mark_reader(service.db, service.clock))
    app[FEED] = feed
    poller = asyncio.create_task(feed.run(), name="dashboard-change-feed")
    yield
    poller.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await poller
