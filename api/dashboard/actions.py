"""The dashboard's forms: each POST goes through the same `bot/app/operations.py` function as
the REST route, then redirects back (PRG) with what happened as the session's notice.

Every form carries the session's CSRF token and an `idempotency_key` made when the page was
rendered; the key is stored with the answer (the API's idempotency_keys table, under the
token's id) in the transaction of the change, so a double click, or the same form sent again,
changes nothing and lands on the same page.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from api.dashboard.sessions import check_csrf, require_session
from api.keys import SERVICE
from bot.app import notifications, operations
from bot.app.operations import Mirror
from bot.core import errors
from bot.core.clock import Clock
from bot.core.errors import DomainError
from bot.domain.access import Act, Identity
from bot.domain.freeze import current_freeze
from bot.storage import dashboard_sessions, idempotency
from bot.storage.dashboard_sessions import SignedIn
from bot.storage.projects import find_environment

log = logging.getLogger(__name__)

KEY_FIELD = "idempotency_key"
NOT_ALLOWED = "You may not do that in this project"
# As a PR command's refusal says it: the permission the act needs on the repository.
NEEDS_WRITE = (
    "You may not do that in this project: it needs write permission on the project's repository"
)
NEEDS_FORCE_ROLE = (
    "You may not do that in this project: forcing needs the maintain or admin role on the "
    "project's repository"
)
KEY_REUSED = "This form was already sent for something else: reload the page and try again"
BAD_FORM = "The form was incomplete: reload the page and try again"

Run = Callable[[AsyncSession, Mirror, str, Clock], Awaitable[str]]


@dataclass(frozen=True)
class Form:
    project: str
    environment: str
    fields: Mapping[str, str]


@functools.lru_cache(maxsize=4096)
def _segment(name: str) -> str:
    """A name as one path segment. Kept: the overview quotes the same few hundred names at
    every render."""
    return quote(name, safe="")


def environment_path(project: str, environment: str) -> str:
    return f"/projects/{_segment(project)}/environments/{_segment(environment)}"


def candidate_path(project: str, version: str) -> str:
    return f"/projects/{_segment(project)}/candidates/{_segment(version)}"


def _fingerprint(path: str, fields: Mapping[str, str]) -> str:
    kept = {k: v for k, v in sorted(fields.items()) if k not in ("csrf", KEY_FIELD)}
    return idempotency.request_fingerprint("POST", path, json.dumps(kept).encode())


async def _form(request: web.Request, signed: SignedIn) -> Form:
    posted = await request.post()
    fields = {k: v for k, v in posted.items() if isinstance(v, str)}
    check_csrf(signed, fields)
    return Form(request.match_info["project"], request.match_info["environment"], fields)


async def _notice(request: web.Request, signed: SignedIn, text: str, *, error: bool) -> None:
    async with request.app[SERVICE].db.write() as session:
        await dashboard_sessions.set_notice(session, signed.id_hash, text, error=error)


async def _frozen_reason(request: web.Request, form: Form) -> str:
    """The refusal as the API words it, and why: the freeze's reason, who, until when."""
    service = request.app[SERVICE]
    async with service.db.read() as session:
        environment = await find_environment(session, form.project, form.environment)
        freeze = current_freeze(environment, service.clock())
    text = str(errors.ENVIRONMENT_FROZEN)
    if freeze is None:
        return text
    text += f": {freeze.reason or 'no reason given'}"
    if freeze.by:
        text += f" (frozen by {freeze.by}"
        text += f", until {_when(freeze.until)})" if freeze.until else ")"
    return text


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


async def _tell_freeze_refusal(
    request: web.Request, form: Form, actor: str, version: str | None
) -> None:
    """As the REST route does: a deploy refused for a freeze is told to the receivers."""
    service = request.app[SERVICE]
    try:
        async with service.db.write() as session:
            await notifications.deploy_refused_for_freeze(
                session,
                project_name=form.project,
                environment_name=form.environment,
                actor=actor,
                clock=service.clock,
                version=version,
            )
    except (OSError, SQLAlchemyError, DomainError):
        log.exception("a refusal's notification was not planned")
        return


async def act(request: web.Request, act: Act, run: Callable[[Form], Run]) -> web.StreamResponse:
    """One dashboard action: signed in, CSRF, allowed, once per key; then back where it came
    from (the form's `back`: the candidate page, or the environment page by default)."""
    signed = await require_session(request)
    form = await _form(request, signed)
    back = _back(form)
    identity = signed.identity
    refusal = _refusal(identity, form.project, act, force=form.fields.get("force") == "1")
    if refusal is not None:
        # Answered, not raised: the API's error middleware would replace the text.
        return web.Response(status=403, text=refusal)
    key = form.fields.get(KEY_FIELD, "")
    if not idempotency.is_valid_key(key):
        await _notice(request, signed, BAD_FORM, error=True)
        raise web.HTTPSeeOther(back)
    fingerprint = _fingerprint(request.path, form.fields)
    service = request.app[SERVICE]
    if await _replayed(request, identity.key_owner, key, fingerprint, signed):
        raise web.HTTPSeeOther(back)
    try:
        async with service.db.write() as session:
            said = await run(form)(session, service.mirror, identity.actor, service.clock)
            await idempotency.remember_answer(
                session,
                token_id=identity.key_owner,
                key=key,
                fingerprint=fingerprint,
                status=303,
                body=json.dumps({"location": back}),
                now=service.clock(),
            )
            await dashboard_sessions.set_notice(session, signed.id_hash, said, error=False)
    except IntegrityError:
        # The same key committed first by a concurrent click: that one did it.
        raise web.HTTPSeeOther(back) from None
    except DomainError as refused:
        text = refused.message
        if refused.code is errors.ENVIRONMENT_FROZEN:
            text = await _frozen_reason(request, form)
            await _tell_freeze_refusal(request, form, identity.actor, form.fields.get("version"))
        await _notice(request, signed, text, error=True)
        raise web.HTTPSeeOther(back) from None
    raise web.HTTPSeeOther(back)


def _refusal(identity: Identity, project: str, act: Act, *, force: bool) -> str | None:
    """Why `identity` may not do `act` (forced or not) in `project`, or None when it may."""
    if not identity.may(project, act):
        return NEEDS_WRITE if identity.via_github and identity.may_view(project) else NOT_ALLOWED
    if force and not identity.may(project, Act.FORCE):
        return NEEDS_FORCE_ROLE if identity.via_github else NOT_ALLOWED
    return None


async def _replayed(
    request: web.Request, owner: int, key: str, fingerprint: str, signed: SignedIn
) -> bool:
    service = request.app[SERVICE]
    async with service.db.read() as session:
        stored = await idempotency.find_answer(session, owner, key, service.clock())
    if stored is None:
        return False
    if idempotency.replay_for(stored, fingerprint) is idempotency.Replay.OTHER_REQUEST:
        await _notice(request, signed, KEY_REUSED, error=True)
    return True


def _back(form: Form) -> str:
    version = form.fields.get("version")
    if form.fields.get("back") == "candidate" and version:
        return candidate_path(form.project, version)
    return environment_path(form.project, form.environment)


# --- the actions ------------------------------------------------------------------------


def _deploy(form: Form) -> Run:
    async def run(session: AsyncSession, mirror: Mirror, actor: str, clock: Clock) -> str:
        version = form.fields.get("version", "")
        deployment = await operations.deploy(
            session,
            mirror,
            project_name=form.project,
            environment_name=form.environment,
            version=version,
            actor=actor,
            clock=clock,
        )
        return f"Deploying {deployment.release_candidate.version} to {form.environment}"

    return run


def _roll_back(form: Form) -> Run:
    async def run(session: AsyncSession, mirror: Mirror, actor: str, clock: Clock) -> str:
        done = await operations.roll_back(
            session,
            mirror,
            project_name=form.project,
            environment_name=form.environment,
            actor=actor,
            force=form.fields.get("force") == "1",
            clock=clock,
        )
        target = done.deployment.release_candidate.version
        return f"Rolling {form.environment} back to {target}"

    return run


def _freeze(form: Form) -> Run:
    async def run(session: AsyncSession, mirror: Mirror, actor: str, clock: Clock) -> str:
        reason = form.fields.get("reason", "").strip() or None
        await operations.freeze(
            session,
            project_name=form.project,
            environment_name=form.environment,
            actor=actor,
            reason=reason,
            until=None,
            clock=clock,
        )
        return f"{form.environment} is frozen"

    return run


def _unfreeze(form: Form) -> Run:
    async def run(session: AsyncSession, mirror: Mirror, actor: str, clock: Clock) -> str:
        await operations.unfreeze(
            session,
            project_name=form.project,
            environment_name=form.environment,
            actor=actor,
            clock=clock,
        )
        return f"{form.environment} is no longer frozen"

    return run


def _cancel(form: Form) -> Run:
    async def run(session: AsyncSession, mirror: Mirror, actor: str, clock: Clock) -> str:
        raw = form.fields.get("deployment_id", "")
        if not raw.isdigit() or len(raw) > 18:
            raise errors.not_found(errors.DEPLOYMENT_NOT_FOUND)
        canceled = await operations.cancel(
            session,
            mirror,
            project_name=form.project,
            environment_name=form.environment,
            deployment_id=int(raw),
            actor=actor,
            clock=clock,
        )
        return f"Deployment {canceled.id} is {canceled.status}"

    return run


ENVIRONMENT = "/projects/{project}/environments/{environment}"
routes = web.RouteTableDef()


_ACTIONS: list[tuple[str, Act, Callable[[Form], Run]]] = [
    ("deploy", Act.DEPLOY, _deploy),
    ("rollback", Act.ROLL_BACK, _roll_back),
    ("freeze", Act.FREEZE, _freeze),
    ("unfreeze", Act.FREEZE, _unfreeze),
    ("cancel", Act.CANCEL, _cancel),
]


def _handler(name: str, needed: Act, run: Callable[[Form], Run]) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await act(request, needed, run)

    handle.__name__ = f"dashboard_{name}"
    return handle


for _name, _act, _run in _ACTIONS:
    routes.post(f"{ENVIRONMENT}/{_name}")(_handler(_name, _act, _run))
