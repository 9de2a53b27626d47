"""Sign-in with GitHub: the OAuth web flow of the GitHub App (bot/github/oauth.py).

`/auth/github` sends the browser to GitHub with a random `state` and a PKCE challenge, both
kept in a short-lived signed cookie (`tarmac_oauth`, HttpOnly, SameSite=Lax: GitHub's redirect
back is a top-level GET, which carries it). `/auth/github/callback` checks the state against
the cookie, exchanges the code with the client secret and the verifier, asks GitHub who the
token belongs to, and starts a session for that login. The user token is then dropped.
"""

from __future__ import annotations

import hmac
import logging
import secrets

import aiohttp
from aiohttp import web

from api.dashboard.keys import OAUTH, SESSION_SECRET
from api.dashboard.pages import sign_in_form
from api.dashboard.sessions import cookie_options, signed_in, signed_in_redirect
from api.keys import SERVICE
from bot.github import endpoints
from bot.github.client import GitHubRefused, GitHubUnavailable
from bot.github.oauth import OAuthRefused, authorize_url, exchange_code, new_pkce
from bot.storage import dashboard_sessions

log = logging.getLogger(__name__)

START_PATH = "/auth/github"
CALLBACK_PATH = "/auth/github/callback"
FLOW_COOKIE = "tarmac_oauth"
FLOW_LIFETIME_SECONDS = 600
STALE = "The sign-in with GitHub expired or was started elsewhere: sign in again"
CANCELED = "GitHub did not sign you in (the authorization was declined): sign in again"
REFUSED = "GitHub refused the sign-in: sign in again"
UNREACHABLE = "GitHub could not be reached to sign you in: try again in a moment"

routes = web.RouteTableDef()


def redirect_uri(request: web.Request) -> str | None:
    """The callback on TARMAC_PUBLIC_URL; unset, GitHub uses the App's first callback URL."""
    public = request.app[SERVICE].settings.public_url
    return public + CALLBACK_PATH if public else None


@routes.get(START_PATH)
async def start(request: web.Request) -> web.StreamResponse:
    oauth = request.app.get(OAUTH)
    if oauth is None:
        raise web.HTTPNotFound(text="Sign-in with GitHub needs the GitHub App's OAuth client")
    if await signed_in(request) is not None:
        raise web.HTTPSeeOther("/")
    state = secrets.token_urlsafe(24)
    pkce = new_pkce()
    response = web.HTTPSeeOther(
        authorize_url(oauth, redirect_uri=redirect_uri(request), state=state, pkce=pkce)
    )
    flow = dashboard_sessions.sign(f"{state}:{pkce.verifier}", request.app[SESSION_SECRET])
    response.set_cookie(FLOW_COOKIE, flow, **cookie_options(request, FLOW_LIFETIME_SECONDS))
    raise response


def _flow(request: web.Request) -> tuple[str, str] | None:
    """The state and PKCE verifier this browser's sign-in started with, if its cookie holds."""
    cookie = request.cookies.get(FLOW_COOKIE, "")
    flow = dashboard_sessions.unsign(cookie, request.app[SESSION_SECRET]) if cookie else None
    if flow is None:
        return None
    state, _, verifier = flow.partition(":")
    presented = request.query.get("state", "")
    if not verifier or not hmac.compare_digest(presented.encode(), state.encode()):
        return None
    return state, verifier


def _refuse(request: web.Request, message: str, status: int) -> web.Response:
    response = sign_in_form(request, message, status=status)
    response.del_cookie(FLOW_COOKIE, path="/")
    return response


@routes.get(CALLBACK_PATH)
async def callback(request: web.Request) -> web.StreamResponse:
    oauth = request.app.get(OAUTH)
    if oauth is None:
        raise web.HTTPNotFound(text="Sign-in with GitHub needs the GitHub App's OAuth client")
    flow = _flow(request)
    if flow is None:
        return _refuse(request, STALE, 400)
    if "error" in request.query:
        return _refuse(request, CANCELED, 401)
    code = request.query.get("code", "")
    if not code or not code.isascii() or len(code) > 200:
        return _refuse(request, REFUSED, 400)
    service = request.app[SERVICE]
    assert service.github is not None  # OAUTH is set only with the App
    try:
        token = await exchange_code(
            service.github.http,
            oauth,
            code=code,
            redirect_uri=redirect_uri(request),
            verifier=flow[1],
        )
        user = await endpoints.get_authenticated_user(service.github, token)
    except (OAuthRefused, GitHubRefused) as exc:
        log.warning("sign-in with GitHub refused: %s", exc)
        return _refuse(request, REFUSED, 401)
    except (GitHubUnavailable, aiohttp.ClientError, TimeoutError) as exc:
        log.warning("sign-in with GitHub: GitHub not reached (%s)", type(exc).__name__)
        return _refuse(request, UNREACHABLE, 502)
    login, user_id = str(user["login"]), int(user["id"])
    async with service.db.write() as session:
        await dashboard_sessions.purge_expired_sessions(session, service.clock())
        session_id = await dashboard_sessions.start_session(
            session, actor=login, github_user_id=user_id, now=service.clock()
        )
    log.info("%s signed in to the dashboard with GitHub", login)
    response = signed_in_redirect(request, session_id)
    response.del_cookie(FLOW_COOKIE, path="/")
    raise response
