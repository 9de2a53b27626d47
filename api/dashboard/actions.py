"""The dashboard's forms: each POST goes through the same `bot/app/operations.py` function as
the REST route (with door `dashboard`, so the release policy and its audit see where it came
from), then redirects back (PRG) with what happened as the session's notice.

Every form carries the session's CSRF token and an `idempotency_key` made when the page was
rendered; the key is stored with the answer (the API's idempotency_keys table, under the
token's id) in the transaction of the change, so a double click, or the same form sent again,
changes nothing and lands on the same page.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.dashboard.approvers import ApproverUnknown, dashboard_approver
from api.dashboard.sessions import check_csrf, require_session
from api.keys import SERVICE
from api.schemas import MAX_TEXT
from bot.app import operations
from bot.app.operations import Mirror
from bot.app.policy import policy_of
from bot.core import errors
from bot.core.clock import Clock
from bot.core.errors import DomainError
from bot.domain.access import Act, Identity, rejection_refusal
from bot.domain.approvals import ApprovalRule, Approver
from bot.domain.freeze import current_freeze
from bot.domain.policy import Door
from bot.storage import dashboard_sessions, idempotency
from bot.storage.dashboard_sessions import SignedIn
from bot.storage.projects import find_environment

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
REJECT_NEEDS_REASON = "Rejecting a deployment needs a reason: say why in Reason"
MARK_BAD_NEEDS_REASON = "Marking a candidate bad needs a reason: say why in Reason"
BAD_REASON = f"A reason is at most {MAX_TEXT} characters of text"

Run = Callable[[AsyncSession, Mirror, str, Clock], Awaitable[str]]


class FormRefused(Exception):
    """What the form lacks, said as the notice; nothing was changed."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


@dataclass(frozen=True)
class Form:
    project: str
    environment: str  # empty on a candidate's forms
    fields: Mapping[str, str]
    identity: Identity
    back: str  # where the answer redirects to
    version: str | None = None  # the candidate of a candidate's form
    approver: Approver | None = None  # who approves, for the forms that need it


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
    project = request.match_info["project"]
    environment = request.match_info.get("environment", "")
    version = request.match_info.get("version")
    back = (
        candidate_path(project, version)
        if version is not None
        else _back(project, environment, fields)
    )
    return Form(project, environment, fields, signed.identity, back, version)


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


async def act(
    request: web.Request,
    act: Act,
    run: Callable[[Form], Run],
    *,
    with_approver: bool = False,
) -> web.StreamResponse:
    """One dashboard action: signed in, CSRF, allowed, once per key; then back where it came
    from (the form's `back`: the candidate page, or the environment page by default). With
    `with_approver`, who the person is as an approver is asked first, outside the
    transaction."""
    signed = await require_session(request)
    form = await _form(request, signed)
    back = form.back
    identity = signed.identity
    refusal = _refusal(identity, form.project, act, force=_forced(form))
    if refusal is not None:
        # Answered, not raised: the API's error middleware would replace the text.
        return web.Response(status=403, text=refusal)
    if with_approver:
        try:
            approver = await dashboard_approver(request, identity, form.project, form.environment)
        except (ApproverUnknown, DomainError) as unknown:
            text = unknown.text if isinstance(unknown, ApproverUnknown) else unknown.message
            await _notice(request, signed, text, error=True)
            raise web.HTTPSeeOther(back) from None
        form = replace(form, approver=approver)
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
    except FormRefused as refused:
        await _notice(request, signed, refused.text, error=True)
        raise web.HTTPSeeOther(back) from None
    except DomainError as refused:
        text = refused.message
        if refused.code is errors.ENVIRONMENT_FROZEN:
            text = await _frozen_reason(request, form)
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


def _back(project: str, environment: str, fields: Mapping[str, str]) -> str:
    version = fields.get("version")
    if fields.get("back") == "candidate" and version:
        return candidate_path(project, version)
    return environment_path(project, environment)


def _forced(form: Form) -> bool:
    return form.fields.get("force") == "1"


def _reason(form: Form) -> str | None:
    """The form's reason, as the API takes one: at most MAX_TEXT characters, no NUL."""
    reason = form.fields.get("reason", "").strip()
    if len(reason) > MAX_TEXT or "\x00" in reason:
        raise FormRefused(BAD_REASON)
    return reason or None


def _deployment_id(form: Form) -> int:
    raw = form.fields.get("deployment_id", "")
    if not raw.isdigit() or len(raw) > 18:
        raise errors.not_found(errors.DEPLOYMENT_NOT_FOUND)
    return int(raw)


# --- the actions ------------------------------------------------------------------------


def _deploy(form: Form) -> Run:
    async def run(session: AsyncSession, mirror: Mirror, actor: str, clock: Clock) -> str:
        version = form.fields.get("version", "").strip()
        deployment = await operations.deploy(
            session,
            mirror,
            project_name=form.project,
            environment_name=form.environment,
            version=version,
            actor=actor,
            clock=clock,
            door=Door.DASHBOARD,
            force=_forced(form),
            reason=_reason(form),
        )
        said = f"Deploying {deployment.release_candidate.version} to {form.environment}"
        if _forced(form):
            said += " (forced)"
        if deployment.waiting_for:
            said += f", waiting for {deployment.waiting_for}"
        return said

    return run


def _roll_back(form: Form) -> Run:
    async def run(session: AsyncSession, mirror: Mirror, actor: str, clock: Clock) -> str:
        # On the dashboard, forcing always says why (the API's `{"force": true}` past a
        # manual freeze is the one override without a reason).
        if _forced(form) and _reason(form) is None:
            raise errors.invalid(errors.FORCE_NEEDS_REASON)
        done = await operations.roll_back(
            session,
            mirror,
            project_name=form.project,
            environment_name=form.environment,
            actor=actor,
            force=_forced(form),
            clock=clock,
            door=Door.DASHBOARD,
            reason=_reason(form),
        )
        target = done.deployment.release_candidate.version
        return f"Rolling {form.environment} back to {target}"

    return run


def _freeze(form: Form) -> Run:
    async def run(session: AsyncSession, mirror: Mirror, actor: str, clock: Clock) -> str:
        reason = _reason(form)
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
        canceled = await operations.cancel(
            session,
            mirror,
            project_name=form.project,
            environment_name=form.environment,
            deployment_id=_deployment_id(form),
            actor=actor,
            clock=clock,
        )
        return f"Deployment {canceled.id} is {canceled.status}"

    return run


def _approve(form: Form) -> Run:
    async def run(session: AsyncSession, mirror: Mirror, actor: str, clock: Clock) -> str:
        assert form.approver is not None  # asked for by the route (`with_approver`)
        deployment = await operations.approve(
            session,
            mirror,
            project_name=form.project,
            environment_name=form.environment,
            deployment_id=_deployment_id(form),
            approver=form.approver,
            door=Door.DASHBOARD,
            clock=clock,
        )
        version = deployment.release_candidate.version
        if deployment.waiting_for:
            return f"Approved {version} to {form.environment}: waiting for {deployment.waiting_for}"
        return f"Approved {version} to {form.environment}: it deploys now"

    return run


def _reject(form: Form) -> Run:
    async def run(session: AsyncSession, mirror: Mirror, actor: str, clock: Clock) -> str:
        assert form.approver is not None  # asked for by the route (`with_approver`)
        reason = _reason(form)
        if reason is None:
            raise FormRefused(REJECT_NEEDS_REASON)
        environment = await find_environment(session, form.project, form.environment)
        rule = policy_of(environment).approvals or ApprovalRule(required=1)
        refused = rejection_refusal(form.identity, form.project, form.approver, rule)
        if refused is not None:
            raise refused
        deployment = await operations.reject_deployment(
            session,
            mirror,
            project_name=form.project,
            environment_name=form.environment,
            deployment_id=_deployment_id(form),
            actor=actor,
            reason=reason,
            door=Door.DASHBOARD,
            clock=clock,
        )
        return f"Rejected {deployment.release_candidate.version} to {form.environment}: {reason}"

    return run


def _mark_bad(form: Form) -> Run:
    async def run(session: AsyncSession, mirror: Mirror, actor: str, clock: Clock) -> str:
        reason = _reason(form)
        if reason is None:
            raise FormRefused(MARK_BAD_NEEDS_REASON)
        candidate = await operations.mark_bad(
            session,
            project_name=form.project,
            version=form.version or "",
            actor=actor,
            reason=reason,
            door=Door.DASHBOARD,
            clock=clock,
        )
        return f"{candidate.version} is marked bad: {reason}"

    return run


def _clear_bad(form: Form) -> Run:
    async def run(session: AsyncSession, mirror: Mirror, actor: str, clock: Clock) -> str:
        candidate = await operations.clear_bad(
            session,
            project_name=form.project,
            version=form.version or "",
            actor=actor,
            door=Door.DASHBOARD,
            clock=clock,
        )
        return f"{candidate.version} is no longer marked bad"

    return run


ENVIRONMENT = "/projects/{project}/environments/{environment}"
CANDIDATE = "/projects/{project}/candidates/{version}"
routes = web.RouteTableDef()


@dataclass(frozen=True)
class Action:
    path: str
    needs: Act
    run: Callable[[Form], Run]
    with_approver: bool = False


_ACTIONS = {
    "deploy": Action(f"{ENVIRONMENT}/deploy", Act.DEPLOY, _deploy),
    "rollback": Action(f"{ENVIRONMENT}/rollback", Act.ROLL_BACK, _roll_back),
    "freeze": Action(f"{ENVIRONMENT}/freeze", Act.FREEZE, _freeze),
    "unfreeze": Action(f"{ENVIRONMENT}/unfreeze", Act.FREEZE, _unfreeze),
    "cancel": Action(f"{ENVIRONMENT}/cancel", Act.CANCEL, _cancel),
    # Approving is deploying's grant, narrowed by the environment's `approvals.from`.
    "approve": Action(f"{ENVIRONMENT}/approve", Act.DEPLOY, _approve, with_approver=True),
    "reject": Action(f"{ENVIRONMENT}/reject", Act.DEPLOY, _reject, with_approver=True),
    "mark_bad": Action(f"{CANDIDATE}/mark-bad", Act.DECIDE, _mark_bad),
    "clear_bad": Action(f"{CANDIDATE}/clear-bad", Act.DECIDE, _clear_bad),
}


def _handler(name: str, action: Action) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await act(request, action.needs, action.run, with_approver=action.with_approver)

    handle.__name__ = f"dashboard_{name}"
    return handle


for _name, _action in _ACTIONS.items():
    routes.post(_action.path)(_handler(_name, _action))
