"""Who a signed-in person is as an approver of deployments to an environment.

`dashboard_approver` is the one place the dashboard asks. A GitHub user is who GitHub says:
their role on the project's repository and, when the environment's `approvals.from` names
teams, whether they are an active member of each (`bot/github/access.RepositoryAccess.approver`,
over `approver_for`, the pull-request commands' lookup, cached a minute). An API token is its
actor and nothing more (`bot/domain/access.approver_from_grants`): it approves only where
`from` names no one.
"""

from __future__ import annotations

import logging

from aiohttp import web

from api.dashboard.keys import GITHUB_ACCESS
from api.keys import SERVICE
from bot.app.policy import policy_of
from bot.domain.access import Identity, approver_from_grants
from bot.domain.approvals import Approver
from bot.github.client import GitHubUnavailable
from bot.storage.projects import find_environment, find_project

log = logging.getLogger(__name__)

GITHUB_UNASKED = (
    "GitHub could not be asked who may approve here (your role or teams): try again in a minute"
)


class ApproverUnknown(Exception):
    """GitHub did not answer: nothing is decided without its answer."""

    def __init__(self) -> None:
        super().__init__(GITHUB_UNASKED)
        self.text = GITHUB_UNASKED


async def dashboard_approver(
    request: web.Request, identity: Identity, project: str, environment: str
) -> Approver:
    """The approver `identity` is for deployments to `environment` of `project`. Asked
    outside any transaction (it may read GitHub); a project or environment that does not
    exist raises its not-found refusal, GitHub unanswered raises ApproverUnknown."""
    access = request.app.get(GITHUB_ACCESS)
    if not identity.via_github or access is None:
        return approver_from_grants(identity, project)
    service = request.app[SERVICE]
    async with service.db.read() as session:
        repo = (await find_project(session, project)).repo
        rule = policy_of(await find_environment(session, project, environment)).approvals
    teams = rule.teams if rule is not None else ()
    try:
        return await access.approver(identity.actor, repo, teams)
    except GitHubUnavailable as exc:
        log.warning("approver %s on %s not read: %s", identity.actor, repo, exc.reason)
        raise ApproverUnknown from None
