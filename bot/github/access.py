"""What a GitHub user may see and do on the dashboard, read from GitHub and cached briefly.

Each project's grants come from the person's permission on its repository, read as the PR
commands read it: `GET /repos/{owner}/{repo}/collaborators/{username}/permission` with the
installation's token (so Tarmac keeps no user token), mapped by `dashboard_grants`. An answer
is kept `CACHE_SECONDS` per (user, repository): a permission taken away on GitHub shows within
a minute. A repository the App is not installed on, or whose permission GitHub does not give,
counts as no access: its projects are not shown.

Who may approve a deployment (`approver_for`, for the pull-request commands and the dashboard)
is read the same way: their role from that permission answer, and, only when the environment's
`approvals.from` names teams, their membership of each (`TeamMemberships`: `GET
/orgs/{org}/teams/{team_slug}/memberships/{username}`, kept `CACHE_SECONDS` per person and team;
`active` counts, `pending` or 404 does not).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from cachetools import TTLCache

from bot.domain.access import Identity, github_identity
from bot.domain.approvals import Approver
from bot.github import endpoints
from bot.github.client import GitHubRefused, GitHubUnavailable
from bot.github.commands.permissions import NO_ACCESS, Access, dashboard_grants
from bot.github.endpoints import GitHubCaller

log = logging.getLogger(__name__)

CACHE_SECONDS = 60.0
MAX_CACHED = 10_000

ACTIVE_MEMBERSHIP = "active"

FindInstallation = Callable[[str], Awaitable[int | None]]


class TeamMemberships:
    """Whether people are active members of teams, by (login, "org/team-slug"), each answer
    kept a minute. Read with the installation's token: the App needs the organisation's
    `members` permission, and sees only the organisations it is installed on."""

    def __init__(
        self,
        client: GitHubCaller,
        *,
        ttl: float = CACHE_SECONDS,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._cache: TTLCache[tuple[str, str], bool] = TTLCache(
            maxsize=MAX_CACHED, ttl=ttl, timer=timer
        )

    async def is_member(self, installation_id: int, login: str, team: str) -> bool:
        """GitHubUnavailable propagates (not cached): the caller asks again later."""
        key = (login.lower(), team.lower())
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        org, _, slug = team.partition("/")
        try:
            found = await endpoints.get_team_membership(
                self._client, installation_id, org=org, team_slug=slug, username=login
            )
        except GitHubRefused as exc:
            if exc.status != 404:  # 404: not in the team; 403: the App may not read it
                log.warning("membership of %s in %s refused: %s", login, team, exc.message)
            member = False
        else:
            member = isinstance(found, dict) and found.get("state") == ACTIVE_MEMBERSHIP
        self._cache[key] = member
        return member


async def approver_for(
    login: str,
    repo: str,
    *,
    access: Access,
    teams: Sequence[str],
    memberships: TeamMemberships,
    installation_id: int | None,
    actor: str | None = None,
) -> Approver:
    """Who `login` is as an approver of deployments of `repo`: their repository role (from
    `access`, the collaborator-permission answer), and which of `teams` (an environment's
    `approvals.from` teams, "org/team-slug") they are an active member of. Only `teams` are
    asked about, and none when the rule names none or no installation serves `repo`. `actor`
    is the name the door records (`github:<login>` for a pull-request command; the login
    itself by default). GitHubUnavailable propagates: nothing is decided without the answer."""
    member_of: frozenset[str] = frozenset()
    if installation_id is not None and teams:
        installed = installation_id
        found = await asyncio.gather(
            *(memberships.is_member(installed, login, team) for team in teams)
        )
        member_of = frozenset(team for team, member in zip(teams, found, strict=True) if member)
    role = access.role_name if access.permission != NO_ACCESS.permission else None
    return Approver(actor=actor or login, role=role, teams=member_of, via_github=True)


class RepositoryAccess:
    """People's access to repositories, by (login, repository), each kept a minute."""

    def __init__(
        self,
        client: GitHubCaller,
        find_installation: FindInstallation,
        *,
        ttl: float = CACHE_SECONDS,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._find_installation = find_installation
        self._cache: TTLCache[tuple[str, str], Access] = TTLCache(
            maxsize=MAX_CACHED, ttl=ttl, timer=timer
        )
        self.memberships = TeamMemberships(client, ttl=ttl, timer=timer)

    async def approver(self, login: str, repo: str, teams: Sequence[str]) -> Approver:
        """`approver_for` with this cache's permission answer (for the dashboard)."""
        access = await self.access(login, repo)
        installation_id = await self._find_installation(repo) if teams else None
        return await approver_for(
            login,
            repo,
            access=access,
            teams=teams,
            memberships=self.memberships,
            installation_id=installation_id,
        )

    async def identity(
        self, login: str, user_id: int, projects: Sequence[tuple[str, str]]
    ) -> Identity:
        """The identity of a GitHub user over `projects` (name, repository): one read per
        repository not in the cache, all at once."""
        repos = sorted({repo.lower() for _, repo in projects})
        found = await asyncio.gather(*(self.access(login, repo) for repo in repos))
        by_repo = dict(zip(repos, found, strict=True))
        grants = {name: dashboard_grants(by_repo[repo.lower()]) for name, repo in projects}
        return github_identity(login, user_id, grants)

    def forget(self, login: str) -> int:
        """Drop every cached answer about `login` (their authorization of the App was revoked:
        if they sign in again, GitHub is asked afresh); how many were dropped."""
        person = login.lower()
        stale = [key for key in list(self._cache.keys()) if key[0] == person]
        for key in stale:
            self._cache.pop(key, None)
        return len(stale)

    async def access(self, login: str, repo: str) -> Access:
        key = (login.lower(), repo.lower())
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        try:
            found = await self._read(login, repo)
        except GitHubUnavailable as exc:
            # Not cached: the next page asks again. Until then, nothing is shown or allowed.
            log.warning("permission of %s on %s not read: %s", login, repo, exc.reason)
            return NO_ACCESS
        self._cache[key] = found
        return found

    async def _read(self, login: str, repo: str) -> Access:
        installation_id = await self._find_installation(repo)
        if installation_id is None:
            return NO_ACCESS
        try:
            answer = await endpoints.get_collaborator_permission(
                self._client, installation_id, repo, username=login
            )
        except GitHubRefused as exc:
            if exc.status != 404:  # 404: not a user GitHub knows there
                log.warning("permission of %s on %s refused: %s", login, repo, exc.message)
            return NO_ACCESS
        return Access.from_github(answer)
