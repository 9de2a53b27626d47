"""Bearer tokens on every `/api/releases` call: 401 without a valid one, 403 for a project
outside the token's scope. `/api/graphql` takes the same tokens (401 without one); there the
scope is applied inside the graph, where a project outside it is not found."""

from __future__ import annotations

from aiohttp import web

from api.errors import FORBIDDEN, UNAUTHORIZED, ApiError, Handler
from api.keys import IDENTITY, SERVICE
from bot.storage import tokens

PROTECTED_PREFIX = "/api/releases/"
GRAPHQL_PATH = "/api/graphql"


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    graphql = request.path == GRAPHQL_PATH
    protected = graphql or request.path.startswith(PROTECTED_PREFIX)
    if not protected or request.match_info.http_exception:
        return await handler(request)
    presented = _bearer_token(request)
    if presented is None:
        raise ApiError(401, UNAUTHORIZED)
    service = request.app[SERVICE]
    async with service.db.read() as session:
        identity = await tokens.identify(session, presented)
    if identity is None:
        raise ApiError(401, UNAUTHORIZED)
    if not graphql and not identity.may_use(request.match_info["project"]):
        raise ApiError(403, FORBIDDEN)
    now = service.clock()
    if tokens.needs_last_used_update(identity, now):
        async with service.db.write() as session:
            await tokens.record_use(session, identity.token_id, now)
    request[IDENTITY] = identity
    return await handler(request)


def _bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    token = value.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    # Tarmac's tokens are printable ASCII; anything else (bytes that were not UTF-8 arrive as
    # surrogates) is simply not one of them.
    if not token.isascii() or not token.isprintable():
        return None
    return token
