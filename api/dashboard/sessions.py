"""Sign-in with an API token, the session cookie, sign-out, and the CSRF check.

The cookie `tarmac_session` holds the session id, signed (bot/storage/dashboard_sessions.py);
it is `HttpOnly`, `SameSite=Lax`, `Path=/`, `Secure` when TARMAC_PUBLIC_URL is https, and lives
as long as the session (12 hours). The signing key is TARMAC_SESSION_SECRET, or one Tarmac
generates once and keeps in the database.

Every form carries the session's CSRF token; the sign-in form, before any session, carries a
random value that must equal the one in its own short-lived cookie (double submit).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from aiohttp import web

from api.dashboard.keys import GITHUB_ACCESS, SESSION_SECRET, SIGNED_IN
from api.keys import SERVICE
from bot.storage import dashboard_sessions, tokens
from bot.storage.dashboard_sessions import SignedIn
from bot.storage.projects import current_project_repositories

COOKIE = "tarmac_session"
SIGN_IN_COOKIE = "tarmac_sign_in"
CSRF_FIELD = "csrf"
SIGN_IN_PATH = "/sign-in"
FORGED = "This form is not from your session (its CSRF token is missing or wrong): reload the page"
BAD_TOKEN = "That token is not one Tarmac knows"  # noqa: S105 (a message, not a secret)


async def load_secret(app: web.Application) -> str:
    service = app[SERVICE]
    configured = service.settings.session_secret
    if configured is not None:
        return configured.get_secret_value()
    async with service.db.write() as session:
        return await dashboard_sessions.session_secret(session, service.clock())


def _secure(request: web.Request) -> bool:
    public = request.app[SERVICE].settings.public_url or ""
    return public.startswith("https://")


def _cookie_options(request: web.Request, max_age: int) -> dict[str, Any]:
    return {
        "max_age": max_age,
        "path": "/",
        "httponly": True,
        "samesite": "Lax",
        "secure": _secure(request),
    }


async def signed_in(request: web.Request) -> SignedIn | None:
    """The request's live session, or None (no cookie, a forged one, expired, token revoked)."""
    if SIGNED_IN in request:
        return request[SIGNED_IN]
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None
    session_id = dashboard_sessions.unsign(cookie, request.app[SESSION_SECRET])
    if session_id is None:
        return None
    service = request.app[SERVICE]
    async with service.db.read() as session:
        found = await dashboard_sessions.find_session(session, session_id, service.clock())
        projects = await current_project_repositories(session) if found else []
    if found is not None and found.github_user_id is not None:
        found = await _with_github_grants(request, found, projects)
    if found is not None:
        request[SIGNED_IN] = found
    return found


async def _with_github_grants(
    request: web.Request, found: SignedIn, projects: list[tuple[str, str]]
) -> SignedIn | None:
    """A GitHub user's session with what they may see and do per project (from GitHub, cached
    a minute); None when sign-in with GitHub is no longer configured."""
    access = request.app.get(GITHUB_ACCESS)
    if access is None or found.github_user_id is None:
        return None
    identity = await access.identity(found.identity.actor, found.github_user_id, projects)
    return replace(found, identity=identity)


async def require_session(request: web.Request) -> SignedIn:
    found = await signed_in(request)
    if found is None:
        raise web.HTTPSeeOther(SIGN_IN_PATH)
    return found


def session_check(request: web.Request, signed: SignedIn) -> Callable[[], Awaitable[bool]]:
    """Whether `signed` still stands, asked again each time (an open page's stream asks on
    every event and every few seconds): signed out in another tab, expired, its token
    revoked."""
    service = request.app[SERVICE]

    async def stands() -> bool:
        async with service.db.read() as session:
            return await dashboard_sessions.session_stands(session, signed.id_hash, service.clock())

    return stands


def check_csrf(signed: SignedIn, form: Mapping[str, Any]) -> None:
    presented = form.get(CSRF_FIELD)
    if not isinstance(presented, str) or not hmac.compare_digest(
        presented.encode(), signed.csrf_token.encode()
    ):
        raise web.HTTPForbidden(text=FORGED)


def new_sign_in_nonce(request: web.Request, response: web.StreamResponse) -> str:
    nonce = secrets.token_urlsafe(24)
    response.set_cookie(SIGN_IN_COOKIE, nonce, **_cookie_options(request, 600))
    return nonce


def check_sign_in_nonce(request: web.Request, form: Mapping[str, Any]) -> None:
    cookie = request.cookies.get(SIGN_IN_COOKIE, "")
    presented = form.get(CSRF_FIELD)
    if (
        not cookie
        or not isinstance(presented, str)
        or not hmac.compare_digest(presented.encode(), cookie.encode())
    ):
        raise web.HTTPForbidden(text=FORGED)


async def sign_in(request: web.Request, presented: str) -> web.StreamResponse | None:
    """A session for a valid token, its cookie on a redirect to the overview; None otherwise."""
    presented = presented.strip()
    if not presented or not presented.isascii() or not presented.isprintable():
        return None
    service = request.app[SERVICE]
    async with service.db.write() as session:
        identity = await tokens.identify(session, presented)
        if identity is None:
            return None
        # Expired sessions go when someone signs in: the table holds about a day of them.
        await dashboard_sessions.purge_expired_sessions(session, service.clock())
        session_id = await dashboard_sessions.start_session(
            session, token_id=identity.token_id, actor=identity.actor, now=service.clock()
        )
    return signed_in_redirect(request, session_id)


def signed_in_redirect(request: web.Request, session_id: str) -> web.HTTPSeeOther:
    """To the overview, with the new session's cookie."""
    response = web.HTTPSeeOther("/")
    lifetime = int(dashboard_sessions.SESSION_LIFETIME.total_seconds())
    response.set_cookie(
        COOKIE,
        dashboard_sessions.sign(session_id, request.app[SESSION_SECRET]),
        **_cookie_options(request, lifetime),
    )
    response.del_cookie(SIGN_IN_COOKIE, path="/")
    return response


def cookie_options(request: web.Request, max_age: int) -> dict[str, Any]:
    """A dashboard cookie's attributes: HttpOnly, SameSite=Lax, Secure behind https."""
    return _cookie_options(request, max_age)


async def sign_out(request: web.Request, signed: SignedIn) -> web.StreamResponse:
    service = request.app[SERVICE]
    async with service.db.write() as session:
        await dashboard_sessions.end_session(session, signed.id_hash)
    response = web.HTTPSeeOther(SIGN_IN_PATH)
    response.del_cookie(COOKIE, path="/")
    return response


async def take_notice(request: web.Request, signed: SignedIn) -> tuple[str, bool] | None:
    """The session's one-time notice, cleared as it is shown."""
    if signed.notice is None:
        return None
    service = request.app[SERVICE]
    async with service.db.write() as session:
        await dashboard_sessions.clear_notice(session, signed.id_hash)
    return signed.notice, signed.notice_is_error
