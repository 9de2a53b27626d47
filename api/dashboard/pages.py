"""The dashboard's pages: read through bot/app/dashboard.py, rendered by Jinja2 (autoescaped).

Every page knows the change mark it was rendered at (`data-mark`), which its event stream
starts from, and whether each action is allowed (a button shows only when it is): the
approval buttons only to those the environment's `approvals.from` counts, never to the one who
asked.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp_jinja2
import jinja2
from aiohttp import web
from markupsafe import Markup

from api.dashboard import actions
from api.dashboard.approvers import ApproverUnknown, dashboard_approver
from api.dashboard.keys import FEED, KEPT_NEWEST, OAUTH, OVERVIEW_CACHE, SHOWN_REPORTS
from api.dashboard.live import signed_out_stream, stream
from api.dashboard.security import HEADERS
from api.dashboard.sessions import (
    BAD_TOKEN,
    CSRF_FIELD,
    check_csrf,
    check_sign_in_nonce,
    new_sign_in_nonce,
    require_session,
    session_check,
    sign_in,
    sign_out,
    signed_in,
    take_notice,
)
from api.keys import SERVICE
from bot.app import dashboard
from bot.core.errors import DomainError
from bot.core.pages import DEFAULT_PER_PAGE, PageRequest
from bot.domain.access import Act, Identity, offers_approval, rejection_refusal
from bot.github.oauth import web_url_for
from bot.storage.dashboard_sessions import SignedIn
from bot.storage.models import Deployment

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
STATIC_PREFIX = "/dashboard/static"
MAX_PAGE = 100_000
AUDIT_PER_PAGE = 25
REGION = "overview_region.html"

routes = web.RouteTableDef()


def setup_templates(app: web.Application) -> None:
    environment = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["when"] = _when
    environment.filters["duration"] = _duration
    environment.globals.update(
        environment_path=actions.environment_path,
        candidate_path=actions.candidate_path,
        audit_path=audit_path,
        static=STATIC_PREFIX,
        Act=Act,
    )


def audit_path(project: str, environment: str | None = None, page: int | None = None) -> str:
    query = {"environment": environment, "page": page if page and page > 1 else None}
    kept = urlencode({k: v for k, v in query.items() if v is not None})
    return f"/projects/{quote(project, safe='')}/audit" + (f"?{kept}" if kept else "")


@functools.lru_cache(maxsize=4096)
def _when(moment: datetime | None) -> str:
    """Kept: a page shows the same moments render after render (strftime is the dearest
    step of an overview cell)."""
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None else ""


def _duration(deployment: Deployment) -> str:
    if deployment.deploy_end_at is None:
        return ""
    seconds = int((deployment.deploy_end_at - deployment.deploy_start_at).total_seconds())
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def _github_web(request: web.Request) -> str:
    settings = request.app[SERVICE].settings
    return (settings.github_url or web_url_for(settings.github_api_url)).rstrip("/")


async def _render(
    request: web.Request,
    template: str,
    signed: SignedIn,
    status: int = 200,
    mark: str | None = None,
    **context: Any,
) -> web.Response:
    if mark is None:
        mark = await request.app[FEED].fresh()
    notice = await take_notice(request, signed)
    return aiohttp_jinja2.render_template(
        template,
        request,
        {
            "identity": signed.identity,
            "csrf": signed.csrf_token,
            "csrf_field": CSRF_FIELD,
            "new_key": lambda: secrets.token_urlsafe(18),
            "mark": mark,
            "notice": notice,
            "github_web": _github_web(request),
            **context,
        },
        status=status,
    )


async def _not_found(request: web.Request, signed: SignedIn, message: str) -> web.Response:
    return await _render(request, "not_found.html", signed, status=404, message=message)


@routes.get("/")
async def overview_page(request: web.Request) -> web.Response:
    """The live region from the cache when the mark has not moved since it was rendered for
    this view of the projects; the mark is read before the data (never newer than it)."""
    signed = await require_session(request)
    mark = await request.app[FEED].fresh()
    cache = request.app[OVERVIEW_CACHE]
    region = cache.get(mark, signed.identity)
    if region is None:
        service = request.app[SERVICE]
        async with service.db.read() as session:
            shown = await dashboard.overview(
                session, signed.identity, service.clock(), request.app[KEPT_NEWEST]
            )
        region = aiohttp_jinja2.get_env(request.app).get_template(REGION).render(overview=shown)
        cache.put(mark, signed.identity, region)
    # Markup: the region is the output of an autoescaped template, not text to escape again.
    return await _render(request, "overview.html", signed, mark=mark, region=Markup(region))  # noqa: S704


def _page(request: web.Request, per_page: int = DEFAULT_PER_PAGE) -> PageRequest:
    raw = request.query.get("page", "1")
    number = int(raw) if raw.isdigit() and 0 < len(raw) < 7 else 1
    return PageRequest(page=max(1, min(number, MAX_PAGE)), per_page=per_page)


@dataclass(frozen=True)
class ApprovalControls:
    """Which buttons the deployment waiting for approval shows to this person."""

    approve: bool = False
    reject: bool = False


async def _approval_controls(
    request: web.Request, identity: Identity, project: str, view: dashboard.EnvironmentView
) -> ApprovalControls:
    waiting = view.waiting
    if waiting is None or not identity.may(project, Act.DEPLOY):
        return ApprovalControls()
    try:
        approver = await dashboard_approver(request, identity, project, view.cell.environment.name)
    except ApproverUnknown:
        return ApprovalControls()  # GitHub unanswered: no button until it answers
    requester = waiting.deployment.actor
    return ApprovalControls(
        approve=offers_approval(
            identity, project, approver, waiting.rule, requester, waiting.approved_by
        ),
        reject=rejection_refusal(identity, project, approver, waiting.rule) is None,
    )


@routes.get("/projects/{project}/environments/{environment}")
async def environment_page(request: web.Request) -> web.Response:
    signed = await require_session(request)
    project = request.match_info["project"]
    if not signed.identity.may_view(project):
        return await _not_found(request, signed, "Release project not found")
    service = request.app[SERVICE]
    page = _page(request)
    try:
        async with service.db.read() as session:
            view = await dashboard.environment_view(
                session, project, request.match_info["environment"], page, service.clock()
            )
    except DomainError as refused:
        return await _not_found(request, signed, refused.message)
    controls = await _approval_controls(request, signed.identity, project, view)
    return await _render(
        request,
        "environment.html",
        signed,
        project=project,
        view=view,
        page=page.page,
        approval=controls,
    )


@routes.get("/projects/{project}/candidates/{version}")
async def candidate_page(request: web.Request) -> web.Response:
    signed = await require_session(request)
    project = request.match_info["project"]
    if not signed.identity.may_view(project):
        return await _not_found(request, signed, "Release project not found")
    service = request.app[SERVICE]
    try:
        view = await dashboard.candidate_view(
            service.db,
            service.mirror,
            request.app[SHOWN_REPORTS],
            project_name=project,
            version=request.match_info["version"],
            clock=service.clock,
        )
    except DomainError as refused:
        return await _not_found(request, signed, refused.message)
    return await _render(request, "candidate.html", signed, project=project, view=view)


@routes.get("/projects/{project}/audit")
async def audit_page(request: web.Request) -> web.Response:
    """The project's decisions, newest first; `?environment=` narrows them to one."""
    signed = await require_session(request)
    project = request.match_info["project"]
    if not signed.identity.may_view(project):
        return await _not_found(request, signed, "Release project not found")
    service = request.app[SERVICE]
    page = _page(request, AUDIT_PER_PAGE)
    chosen = request.query.get("environment") or None
    try:
        async with service.db.read() as session:
            view = await dashboard.audit_view(session, project, chosen, page)
    except DomainError as refused:
        return await _not_found(request, signed, refused.message)
    return await _render(
        request, "audit.html", signed, project=project, view=view, page=page.page, chosen=chosen
    )


@routes.get("/sign-in")
async def sign_in_page(request: web.Request) -> web.StreamResponse:
    if await signed_in(request) is not None:
        raise web.HTTPSeeOther("/")
    return sign_in_form(request, error=None)


def sign_in_form(request: web.Request, error: str | None, status: int = 200) -> web.Response:
    """The sign-in page: "Sign in with GitHub" when the App's OAuth client is configured, and
    the API token form always (ledger mode, automation, a way in when GitHub is down)."""
    response = web.Response(status=status, content_type="text/html")
    nonce = new_sign_in_nonce(request, response)
    rendered = aiohttp_jinja2.render_string(
        "sign_in.html",
        request,
        {
            "nonce": nonce,
            "csrf_field": CSRF_FIELD,
            "error": error,
            "static": STATIC_PREFIX,
            "with_github": OAUTH in request.app,
        },
    )
    response.text = rendered
    return response


@routes.post("/sign-in")
async def sign_in_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    check_sign_in_nonce(request, form)
    presented = form.get("token")
    response = await sign_in(request, presented if isinstance(presented, str) else "")
    if response is None:
        return sign_in_form(request, BAD_TOKEN, status=401)
    raise response  # type: ignore[misc]  # an HTTPSeeOther carrying the cookie


@routes.post("/sign-out")
async def sign_out_submit(request: web.Request) -> web.StreamResponse:
    signed = await require_session(request)
    form = await request.post()
    check_csrf(signed, form)
    raise await sign_out(request, signed)  # type: ignore[misc]


@routes.get("/dashboard/events")
async def events(request: web.Request) -> web.StreamResponse:
    """The page's live stream; it ends with `signed-out` once the session does (at once when
    it has already: the page stops, showing what it shows, and says so)."""
    signed = await signed_in(request)
    if signed is None:
        return await signed_out_stream(request, HEADERS)
    return await stream(request, request.app[FEED], HEADERS, session_check(request, signed))
