"""What a GitHub user may see and do on the dashboard, read from GitHub and cached briefly.

Each project's grants come from the person's permission on its repository, read as the PR
commands read it: `GET /repos/{owner}/{repo}/collaborators/{username}/permission` with the
installation's token (so Tarmac keeps no user token), mapped by `dashboard_grants`. An answer
is kept `CACHE_SECONDS` per (user, repository): a permission taken away on GitHub shows within
a minute. A repository the App is not installed on, or whose permission GitHub does not give,
counts as no access: its projects are not shown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from cachetools import TTLCache

from bot.domain.access import Identity, github_identity
from bot.github import endpoints
from bot.github.client import GitHubRefused, GitHubUnavailable
from bot.github.commands.permissions import NO_ACCESS, Access, dashboard_grants
from bot.github.endpoints import GitHubCaller

log = logging.getLogger(__name__)

CACHE_SECONDS = 60.0
MAX_CACHED = 10_000

FindInstallation = Callable[[str], Awaitable[int | None]]


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
