"""Every log line of a request names what the request is about: the project, environment and
release candidate from its path, or the delivery a webhook claims to be (see bot/log_context)."""

from __future__ import annotations

from aiohttp import web

from api.errors import Handler
from api.webhooks import WEBHOOK_PATH
from bot.core.log_context import add_log_context

_MAX_HEADER_LENGTH = 100


@web.middleware
async def log_context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    # aiohttp runs each request in a task of its own, with a copy of the server's context: the
    # fields stay for the rest of this request, its access-log line included, and nowhere else.
    path = request.match_info
    add_log_context(
        project=path.get("project"),
        environment=path.get("environment"),
        release_candidate=path.get("version"),
        delivery_id=_claimed_delivery(request) if request.path == WEBHOOK_PATH else None,
    )
    return await handler(request)


def _claimed_delivery(request: web.Request) -> str | None:
    """`X-GitHub-Delivery` as claimed (the signature is checked later), if it is a sane value."""
    value = request.headers.get("X-GitHub-Delivery", "")
    if 0 < len(value) <= _MAX_HEADER_LENGTH and value.isprintable():
        return value
    return None
