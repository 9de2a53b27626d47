"""Authenticating as the GitHub App: its JWT, and installation tokens cached until near expiry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from cachetools import TTLCache

# GitHub refuses a JWT whose iat is in the future; clocks drift, so date it a minute back.
JWT_BACKDATE_SECONDS = 60
# GitHub allows at most 10 minutes; stay under it whatever the clock skew.
JWT_LIFETIME_SECONDS = 9 * 60
# An installation token lives an hour; take a new one five minutes before it ends.
TOKEN_REFRESH_MARGIN = timedelta(minutes=5)
MAX_CACHED_INSTALLATIONS = 10_000


@dataclass(frozen=True)
class GitHubAppSettings:
    """The App's credentials, as `Settings.github_app()` finds them."""

    app_id: int
    private_key: str
    webhook_secret: str
    api_url: str
    previous_webhook_secret: str | None = None

    @property
    def webhook_secrets(self) -> tuple[str, ...]:
        """The secrets a delivery may be signed with, the current one first."""
        if self.previous_webhook_secret is None:
            return (self.webhook_secret,)
        return (self.webhook_secret, self.previous_webhook_secret)

    def __repr__(self) -> str:  # never show the key or the secret
        return f"GitHubAppSettings(app_id={self.app_id}, api_url={self.api_url!r})"


def app_jwt(app_id: int, private_key: str, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time()) - JWT_BACKDATE_SECONDS
    claims = {"iat": issued, "exp": issued + JWT_LIFETIME_SECONDS, "iss": str(app_id)}
    return jwt.encode(claims, private_key, algorithm="RS256")


@dataclass(frozen=True)
class InstallationToken:
    token: str
    expires_at: datetime

    def __repr__(self) -> str:  # never show the token
        return f"InstallationToken(expires_at={self.expires_at.isoformat()})"


TokenFetcher = Callable[[int], Awaitable[InstallationToken]]


class InstallationTokens:
    """Installation tokens by installation id: reused until shortly before they expire, with
    one refresh in flight per installation however many calls want a token at once."""

    def __init__(
        self, fetch: TokenFetcher, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        # The TTL is a ceiling; each entry is also checked against its own expires_at.
        self._cache: TTLCache[int, InstallationToken] = TTLCache(
            maxsize=MAX_CACHED_INSTALLATIONS, ttl=3600
        )
        self._locks: dict[int, asyncio.Lock] = {}

    def _fresh(self, installation_id: int) -> InstallationToken | None:
        cached = self._cache.get(installation_id)
        if cached is None or cached.expires_at - TOKEN_REFRESH_MARGIN <= self._clock():
            return None
        return cached

    async def token(self, installation_id: int) -> str:
        cached = self._fresh(installation_id)
        if cached is not None:
            return cached.token
        lock = self._locks.setdefault(installation_id, asyncio.Lock())
        async with lock:
            cached = self._fresh(installation_id)
            if cached is None:
                cached = await self._fetch(installation_id)
                self._cache[installation_id] = cached
            return cached.token

    def forget(self, installation_id: int) -> None:
        """Drop a token GitHub refused (401), so the next call fetches a new one."""
        self._cache.pop(installation_id, None)
