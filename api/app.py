"""The application factory: everything the server needs, built from one Settings object."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from api.auth import GRAPHQL_PATH, auth_middleware
from api.content_encoding import identity_encoding_middleware
from api.dashboard.security import security_headers_middleware
from api.dashboard.setup import add_dashboard
from api.errors import error_middleware
from api.graphql.view import graphql_view
from api.idempotency import idempotency_middleware
from api.keys import GITHUB_APP, OPENAPI_DOCUMENT, SERVICE, SETTINGS
from api.log_context import log_context_middleware
from api.metrics import request_metrics_middleware
from api.metrics import routes as metrics_routes
from api.openapi import openapi_document_bytes
from api.routes import routes
from api.webhooks import delivery_intake_context
from api.webhooks import routes as webhook_routes
from bot.core.clock import Clock, utc_now
from bot.service import open_service
from bot.settings import Settings

MAX_BODY_BYTES = 1024 * 1024


def create_app(
    settings: Settings, *, clock: Clock = utc_now, background_work: bool = True
) -> web.Application:
    # Raises GitHubAppMisconfigured (naming what is missing) for a half-configured App.
    github_app = settings.github_app()
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[
            log_context_middleware,
            request_metrics_middleware,
            security_headers_middleware,
            error_middleware,
            auth_middleware,
            identity_encoding_middleware,
            idempotency_middleware,
        ],
    )
    app[SETTINGS] = settings
    app[OPENAPI_DOCUMENT] = openapi_document_bytes()
    if github_app is not None:
        app[GITHUB_APP] = github_app
    app.add_routes(routes)
    app.add_routes(webhook_routes)
    app.add_routes(metrics_routes)
    graphql = graphql_view()
    app.router.add_route("GET", GRAPHQL_PATH, graphql)
    app.router.add_route("POST", GRAPHQL_PATH, graphql)

    async def service_context(app: web.Application) -> AsyncIterator[None]:
        service = await open_service(settings, clock=clock)
        if background_work:
            service.start_background_work()
        app[SERVICE] = service
        yield
        await service.close()

    app.cleanup_ctx.append(service_context)
    app.cleanup_ctx.append(delivery_intake_context)
    add_dashboard(app)
    return app
