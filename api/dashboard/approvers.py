"""Who a signed-in person is as an approver of deployments in a project.

`dashboard_approver` is the one place the dashboard asks. Today it builds the approver from
what the session's identity knows (`bot/domain/access.approver_from_grants`): an API token
is its actor; a GitHub user has the role their grants imply and no teams, so an environment
whose `approvals.from` names a team (or `admin`) does not count them yet. GitHub's answer
(the person's role on the repository and their team memberships,
`bot/github/access.approver_for`) plugs in here, for GitHub users only.
"""

from __future__ import annotations

from aiohttp import web

from bot.domain.access import Identity, approver_from_grants
from bot.domain.approvals import Approver


async def dashboard_approver(request: web.Request, identity: Identity, project: str) -> Approver:
    """The approver `identity` is in `project`. Asked outside any transaction: the team
    lookup that plugs in here reads GitHub."""
    del request  # the GitHub lookup's way to the App's client and cache, once it plugs in
    return approver_from_grants(identity, project)
