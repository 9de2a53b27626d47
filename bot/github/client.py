"""Every call Tarmac makes to GitHub goes through `GitHubClient.call`.

It authenticates (the App's JWT, or an installation token from the cache), retries what a retry
can fix (5xx, dropped connections, rate limits with a short wait) and turns everything else
into one of two exceptions the outbox worker understands: `GitHubUnavailable` (try again later,
perhaps not before `retry_after`) and `GitHubRefused` (a 4xx that no retry will change).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import gidgethub
from cachetools import TTLCache
from gidgethub import sansio

from bot.core.metrics import Metrics
from bot.github import endpoints
from bot.github.app_auth import GitHubAppSettings, InstallationToken, InstallationTokens, app_jwt
from bot.github.endpoints import Page

log = logging.getLogger(__name__)

USER_AGENT = "tarmac"
# Within one call: a short wait is cheaper than a trip through the outbox.
MAX_ATTEMPTS = 3
MAX_INLINE_WAIT_SECONDS = 5.0
BASE_BACKOFF_SECONDS = 0.25
# GitHub's advice for a secondary rate limit without Retry-After.
SECONDARY_LIMIT_DEFAULT_WAIT = 60.0
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)
METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})
JSON_UTF_8 = "application/json; charset=utf-8"


class GitHubUnavailable(Exception):
    """GitHub could not be reached or asked us to wait; `retry_after` in seconds, if known.

    `ambiguous`: the request may have been carried out all the same (a write whose connection
    dropped or that got a 5xx), so whoever retries it should check GitHub first.
    """

    def __init__(
        self, reason: str, retry_after: float | None = None, *, ambiguous: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.ambiguous = ambiguous


class GitHubRefused(Exception):
    """A 4xx that a retry will not change (not found, validation failed, forbidden)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"GitHub answered {status}: {message}")
        self.status = status
        self.message = message


Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class _Answer:
    data: Any
    rate_limit: sansio.RateLimit | None
    next_url: str | None


class GitHubClient:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        app: GitHubAppSettings,
        *,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: Metrics | None = None,
    ) -> None:
        self._http = http
        self._metrics = metrics
        self._app = app
        self._sleep = sleep
        self._clock = clock
        self.tokens = InstallationTokens(self._fetch_installation_token, clock)
        # Installation (or 0 for the App) -> the time before which no call is made to it.
        self._blocked_until: dict[int, datetime] = {}
        self.rate_limit_remaining: int | None = None
        self._default_branches: TTLCache[str, str] = TTLCache(maxsize=1000, ttl=600)

    async def default_branch(self, repo: str, installation_id: int) -> str:
        """The repository's default branch (cached ten minutes): workflows are dispatched on
        a branch or tag, never on a bare commit."""
        cached = self._default_branches.get(repo.lower())
        if cached is not None:
            return cached
        data = await endpoints.get_repository(self, installation_id, repo)
        branch = str(data["default_branch"])
        self._default_branches[repo.lower()] = branch
        return branch

    @property
    def api_url(self) -> str:
        return self._app.api_url

    @property
    def app_id(self) -> int:
        """The App's id: GitHub names it on what the App posts (`performed_via_github_app`)."""
        return self._app.app_id

    async def call(
        self,
        method: str,
        url: str,
        *,
        installation_id: int | None,
        url_vars: Mapping[str, Any] | None = None,
        data: Any = b"",
    ) -> Any:
        """One GitHub API call; `installation_id` None calls as the App itself (JWT)."""
        answer = await self._call(method, url, installation_id, url_vars or {}, data)
        return answer.data

    async def call_as_user(
        self, method: str, url: str, *, token: str, url_vars: Mapping[str, Any] | None = None
    ) -> Any:
        """One call with a person's user access token (the dashboard's sign-in): sent once,
        no retry (the person is waiting), a 4xx GitHubRefused and anything else
        GitHubUnavailable."""
        try:
            answer = await self._send(method, url, url_vars or {}, b"", None, token)
        except gidgethub.BadRequest as exc:
            self._count(method, url, str(int(exc.status_code)))
            raise GitHubRefused(int(exc.status_code), _message(exc)) from None
        except gidgethub.HTTPException as exc:
            self._count(method, url, str(int(exc.status_code)))
            raise GitHubUnavailable(f"GitHub answered {int(exc.status_code)}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._count(method, url, "connection_error")
            raise GitHubUnavailable(f"connection failed: {type(exc).__name__}") from None
        self._count(method, url, "2xx")
        return answer.data

    @property
    def http(self) -> aiohttp.ClientSession:
        """The process's one client session (the OAuth code exchange goes through it)."""
        return self._http

    async def page(
        self, url: str, *, installation_id: int | None, url_vars: Mapping[str, Any] | None = None
    ) -> Page:
        """A GET of one page of a list, with the URL of the next page, if any."""
        answer = await self._call("GET", url, installation_id, url_vars or {}, b"")
        return Page(answer.data, answer.next_url)

    async def _call(
        self,
        method: str,
        url: str,
        installation_id: int | None,
        url_vars: Mapping[str, Any],
        data: Any,
    ) -> _Answer:
        block_key = installation_id or 0
        attempt = 0
        refreshed_token = False
        while True:
            attempt += 1
            self._respect_block(block_key)
            try:
                if installation_id is None:
                    jwt, token = app_jwt(self._app.app_id, self._app.private_key), None
                else:
                    jwt, token = None, await self._token(installation_id)
                answer = await self._send(method, url, url_vars, data, jwt, token)
                self._note_rate_limit(answer.rate_limit)
                self._count(method, url, "2xx")
                return answer
            except gidgethub.RateLimitExceeded as exc:
                self._count(method, url, str(int(exc.status_code)))
                reset = _seconds_until_reset(exc.headers)
                wait = reset if reset is not None else SECONDARY_LIMIT_DEFAULT_WAIT
                await self._wait_or_give_up(block_key, wait, attempt, "rate limit exceeded")
            except gidgethub.GitHubBroken as exc:
                self._count(method, url, str(int(exc.status_code)))
                reason = f"GitHub answered {int(exc.status_code)}"
                await self._backoff_or_give_up(method, attempt, reason)
            except gidgethub.BadRequest as exc:
                status = int(exc.status_code)
                self._count(method, url, str(status))
                if status == 401 and installation_id is not None and not refreshed_token:
                    # The cached token was revoked or expired early: take a new one, once.
                    self.tokens.forget(installation_id)
                    refreshed_token = True
                    continue
                limit_wait = _rate_limit_wait(status, exc.headers, str(exc))
                if limit_wait is not None:
                    await self._wait_or_give_up(block_key, limit_wait, attempt, "rate limited")
                    continue
                raise GitHubRefused(status, _message(exc)) from None
            except gidgethub.HTTPException as exc:
                self._count(method, url, str(int(exc.status_code)))
                raise GitHubRefused(int(exc.status_code), _message(exc)) from None
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._count(method, url, "connection_error")
                reason = f"connection failed: {type(exc).__name__}"
                # No connection was made, so the request was never sent: safe to repeat.
                sent = not isinstance(exc, aiohttp.ClientConnectorError)
                await self._backoff_or_give_up(method, attempt, reason, sent=sent)

    async def _token(self, installation_id: int) -> str:
        try:
            return await self.tokens.token(installation_id)
        except GitHubUnavailable as exc:
            # The token's own request may have landed; the call that needed it was not sent.
            raise GitHubUnavailable(exc.reason, exc.retry_after) from None

    def _respect_block(self, block_key: int) -> None:
        until = self._blocked_until.get(block_key)
        if until is None:
            return
        remaining = (until - self._clock()).total_seconds()
        if remaining > 0:
            raise GitHubUnavailable("rate limited", retry_after=remaining)
        del self._blocked_until[block_key]

    async def _wait_or_give_up(self, block_key: int, wait: float, attempt: int, why: str) -> None:
        # The installation is blocked even while this call waits inline: other calls to it
        # give up at once instead of going to GitHub before the time it gave.
        until = self._clock() + timedelta(seconds=wait)
        self._blocked_until[block_key] = until
        if wait > MAX_INLINE_WAIT_SECONDS or attempt >= MAX_ATTEMPTS:
            raise GitHubUnavailable(why, retry_after=wait)
        await self._sleep(wait)
        if self._blocked_until.get(block_key) == until:
            del self._blocked_until[block_key]

    async def _backoff_or_give_up(
        self, method: str, attempt: int, why: str, *, sent: bool = True
    ) -> None:
        # A read, or a request that never left, is safe to repeat here; a write that may have
        # landed goes back to its caller, which knows how to check before repeating it.
        if method != "GET" and sent:
            raise GitHubUnavailable(why, ambiguous=True)
        if attempt >= MAX_ATTEMPTS:
            raise GitHubUnavailable(why)
        delay = BASE_BACKOFF_SECONDS * 2 ** (attempt - 1)
        await self._sleep(delay * (0.5 + random.random()))  # noqa: S311 (jitter, not crypto)

    async def _send(
        self,
        method: str,
        url: str,
        url_vars: Mapping[str, Any],
        data: Any,
        jwt: str | None,
        token: str | None,
    ) -> _Answer:
        """The request on the wire, made and read with gidgethub's sans-I/O helpers: its
        headers, and its answer turned into data or one of gidgethub's exceptions."""
        if method not in METHODS:
            raise ValueError(f"unsupported method {method}")
        filled = sansio.format_url(url, url_vars, base_url=self._app.api_url)
        headers = sansio.create_headers(
            USER_AGENT, accept=sansio.accept_format(), jwt=jwt, oauth_token=token
        )
        # b"": no body (a JSON null is a body).
        body = b"" if method == "GET" or data == b"" else json.dumps(data).encode("utf-8")
        if body:
            headers["content-type"] = JSON_UTF_8
        headers["content-length"] = str(len(body))
        async with self._http.request(method, filled, headers=headers, data=body) as response:
            content = await response.read()
        decoded, rate_limit, next_url = sansio.decipher_response(
            response.status, response.headers, content
        )
        return _Answer(decoded, rate_limit, next_url)

    def _note_rate_limit(self, rate_limit: sansio.RateLimit | None) -> None:
        if rate_limit is not None:
            self.rate_limit_remaining = rate_limit.remaining
            if self._metrics is not None:
                self._metrics.github_rate_limit(rate_limit.remaining)

    def _count(self, method: str, url: str, status: str) -> None:
        if self._metrics is not None:
            # The URL template, not the filled-in URL: one series per endpoint.
            template = url.split("{?")[0]
            if "/git/ref/" in template:  # the tag is part of the path here
                template = template.split("/git/ref/")[0] + "/git/ref/{ref}"
            endpoint = f"{method} {template}"
            self._metrics.github_calls.labels(endpoint=endpoint, status=status).inc()

    async def _fetch_installation_token(self, installation_id: int) -> InstallationToken:
        data = await endpoints.create_installation_token(self, installation_id)
        expires_at = datetime.fromisoformat(str(data["expires_at"]).replace("Z", "+00:00"))
        log.info("new token for installation %d, valid until %s", installation_id, expires_at)
        return InstallationToken(token=str(data["token"]), expires_at=expires_at)


def _message(exc: gidgethub.HTTPException) -> str:
    text = str(exc) if exc.args else exc.status_code.phrase
    return text[:500]


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _seconds_until_reset(headers: Mapping[str, str]) -> float | None:
    """The wait a rate-limited answer asks for: its `retry-after`, or, when the budget is spent
    (`x-ratelimit-remaining: 0`), until `x-ratelimit-reset`. GitHub sends the x-ratelimit
    headers on every answer, so a reset time alone says nothing about this one."""
    retry_after = _header(headers, "retry-after")
    if retry_after is not None and retry_after.strip().isdigit():
        return float(retry_after)
    remaining = _header(headers, "x-ratelimit-remaining")
    reset = _header(headers, "x-ratelimit-reset")
    spent = remaining is not None and remaining.strip() == "0"
    if spent and reset is not None and reset.strip().isdigit():
        return max(0.0, float(reset) - time.time()) + 1.0
    return None


def _rate_limit_wait(status: int, headers: Mapping[str, str], message: str) -> float | None:
    """How long to wait when a 403/429 is a rate limit; None when it is a real refusal."""
    if status not in (403, 429):
        return None
    wait = _seconds_until_reset(headers)
    if wait is not None:
        return wait
    if status == 429 or "rate limit" in message.lower():
        return SECONDARY_LIMIT_DEFAULT_WAIT
    return None
