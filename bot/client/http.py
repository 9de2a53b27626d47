"""The one way the client reaches the server: bearer token, JSON, and retries of requests that
got no answer.

A request that got no answer (the connection refused or dropped, a timeout) or a 5xx is sent
again, the same bytes with the same headers, after a growing pause (or the server's
`Retry-After`). A write carries its command's `Idempotency-Key` on every attempt, so when the
first attempt was committed and only its answer was lost, the retry gets that answer again
and changes nothing. A 4xx is the server's refusal: never retried, raised as `Refused` with
the server's `{"error": ...}` message. The token goes in the Authorization header and
nowhere else: no message here names it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

REQUEST_TIMEOUT_SECONDS = 30.0
# The longest a server's Retry-After is followed; a longer one is waited this long.
MAX_RETRY_AFTER_SECONDS = 30.0
IDEMPOTENCY_HEADER = "Idempotency-Key"


class Refused(Exception):
    """The server answered 4xx: its `error` message, or the HTTP reason without one."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Unreachable(Exception):
    """No answer after every attempt (or only 5xx): what the last attempt met."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: Mapping[str, str]


@dataclass(frozen=True)
class RetryPolicy:
    """`retries` more attempts after the first, pausing `first_pause` seconds, doubling."""

    retries: int = 4
    first_pause: float = 0.5
    max_pause: float = 8.0

    def pauses(self) -> Iterator[float]:
        pause = self.first_pause
        for _ in range(self.retries):
            yield pause
            pause = min(pause * 2, self.max_pause)


def is_transient(status: int) -> bool:
    """Whether an answer of `status` is worth asking again: the server (or a proxy before it)
    failed, as opposed to refusing."""
    return status >= 500


def retry_after(headers: Mapping[str, str], default: float) -> float:
    """The pause a `Retry-After` of whole seconds asks for, within bounds; `default` without
    one (or with an HTTP date, which the server never sends)."""
    value = headers.get("Retry-After", "")
    if not value.isdigit():
        return default
    return min(float(value), MAX_RETRY_AFTER_SECONDS)


def api_path(*segments: str) -> str:
    """`/api/releases/<segment>/...`, each segment percent-encoded (names are the user's)."""
    return "/api/releases/" + "/".join(quote(segment, safe="") for segment in segments)


Sleep = Callable[[float], Awaitable[None]]


class TarmacHttp:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        token: str,
        retry: RetryPolicy,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._token = token
        self._retry = retry
        self._sleep = sleep

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> Answer:
        return await self._send("GET", path, params=params)

    async def write(self, method: str, path: str, body: Any, key: str) -> Answer:
        """A write with the command's idempotency key; the body serialized once, so every
        attempt is byte for byte the same request."""
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        return await self._send(method, path, data=data, key=key)

    async def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> Answer:
        body: dict[str, Any] = {"query": query}
        if variables:
            body["variables"] = dict(variables)
        data = json.dumps(body, separators=(",", ":")).encode()
        # A query changes nothing: it is retried as a GET is, with no key.
        return await self._send("POST", "/api/graphql", data=data)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
        key: str | None = None,
    ) -> Answer:
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if key is not None:
            headers[IDEMPOTENCY_HEADER] = key
        url = URL(self._base + path, encoded=True)
        if params:
            url = url.update_query(dict(params))
        pauses = self._retry.pauses()
        while True:
            try:
                answer = await self._once(method, url, headers, data)
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = _no_answer(exc)
                pause = next(pauses, None)
            else:
                if not is_transient(answer.status):
                    return _checked(answer)
                problem = f"the server answered {answer.status}: {_message(answer)}"
                pause = next(pauses, None)
                if pause is not None:
                    pause = retry_after(answer.headers, pause)
            if pause is None:
                raise Unreachable(f"{method} {path}: {problem}")
            await self._sleep(pause)

    async def _once(
        self, method: str, url: URL, headers: Mapping[str, str], data: bytes | None
    ) -> Answer:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
        async with self._session.request(
            method, url, data=data, headers=headers, timeout=timeout, allow_redirects=False
        ) as reply:
            raw = await reply.read()
            return Answer(reply.status, _json_or_none(raw), dict(reply.headers))


def _checked(answer: Answer) -> Answer:
    if answer.status >= 400:
        raise Refused(answer.status, _message(answer))
    if answer.status >= 300:
        # A redirect is a TARMAC_URL that names something else (http:// behind https, say):
        # following it would send the token where the user did not say.
        raise Refused(answer.status, f"redirected ({answer.status}): check TARMAC_URL")
    return answer


def _message(answer: Answer) -> str:
    body = answer.body
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return f"HTTP {answer.status}"


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None  # a proxy's HTML page: the status says enough


def _no_answer(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {REQUEST_TIMEOUT_SECONDS:g} seconds"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port} ({exc.os_error.strerror or exc})"
    return f"the connection failed ({type(exc).__name__})"
