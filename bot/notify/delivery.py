"""Sending one planned notification to its receiver, and what the receiver's answer means.

A receiver's URL is never written anywhere (Slack's holds its secret): log lines and the
outbox's `last_error` name the receiver. Failures that may pass (5xx, 408, 429, timeouts,
refused connections, a secret's variable not set) are tried again with backoff; any other
answer refuses the item for good. Redirects are not followed: the signed body goes to the
address in the projects file or nowhere.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from bot.notify.messages import slack_body, webhook_body
from bot.notify.signing import signature
from bot.storage.outbox import ClaimedItem, RefusedForGood, RetryLater

log = logging.getLogger(__name__)

# Within the outbox lease (15 s by default): the worker gives up on the attempt no later.
RECEIVER_TIMEOUT = aiohttp.ClientTimeout(total=10)
USER_AGENT = "Tarmac-Notifications"
EVENT_HEADER = "X-Tarmac-Event"
DELIVERY_HEADER = "X-Tarmac-Delivery"
TIMESTAMP_HEADER = "X-Tarmac-Timestamp"
SIGNATURE_HEADER = "X-Tarmac-Signature-256"
RETRIED_STATUSES = frozenset({408, 429})
# What a Retry-After may ask at most: more than this and the usual backoff decides.
MAX_RETRY_AFTER_SECONDS = 3600.0

# The value of an environment variable, None when it is not set (bot/settings.py).
SecretLookup = Callable[[str], str | None]
# Unix seconds, for the signed timestamp.
WallClock = Callable[[], float]


class Notifier:
    """Delivers `Action.NOTIFY` items (the outbox worker's local handler for them)."""

    def __init__(
        self, http: aiohttp.ClientSession, secrets: SecretLookup, wall_clock: WallClock = time.time
    ) -> None:
        self._http = http
        self._secrets = secrets
        self._wall_clock = wall_clock

    async def deliver(self, item: ClaimedItem) -> None:
        receiver: dict[str, Any] = item.payload["receiver"]
        message: dict[str, Any] = item.payload["message"]
        name = str(receiver["name"])
        if receiver["kind"] == "slack":
            url = self._secret(name, str(receiver["url_env"]))
            body = json.dumps(slack_body(message)).encode()
            headers = {"Content-Type": "application/json"}
        else:
            url = str(receiver["url"])
            secret = self._secret(name, str(receiver["secret_env"]))
            delivery_id = str(item.payload["delivery_id"])
            body = webhook_body(delivery_id, message)
            headers = self._webhook_headers(str(message["event"]), delivery_id, secret, body)
        status, retry_after = await self._post(name, url, body, headers)
        outcome = receiver_answer(name, status, retry_after)
        if outcome is not None:
            raise outcome
        log.info("notified %s of %s (outbox item %d)", name, message["event"], item.id)

    def _secret(self, receiver: str, variable: str) -> str:
        value = self._secrets(variable)
        if not value:
            # Tried again: setting the variable and restarting fixes it.
            raise RetryLater(f"receiver '{receiver}': environment variable {variable} is not set")
        return value

    def _webhook_headers(
        self, event: str, delivery_id: str, secret: str, body: bytes
    ) -> dict[str, str]:
        timestamp = int(self._wall_clock())
        return {
            "Content-Type": "application/json",
            EVENT_HEADER: event,
            DELIVERY_HEADER: delivery_id,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature(secret, timestamp, body),
        }

    async def _post(
        self, name: str, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, str | None]:
        try:
            async with self._http.post(
                url,
                data=body,
                headers={"User-Agent": USER_AGENT, **headers},
                timeout=RECEIVER_TIMEOUT,
                allow_redirects=False,
            ) as answer:
                await answer.read()
                return answer.status, answer.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            # The exception's text may hold the URL: only its kind is told.
            raise RetryLater(f"receiver '{name}' unreachable: {type(exc).__name__}") from None


def receiver_answer(
    name: str, status: int, retry_after: str | None
) -> RetryLater | RefusedForGood | None:
    """What a receiver's HTTP status means: None delivered (2xx); RetryLater for what may
    pass (5xx, 408, 429 after its Retry-After); RefusedForGood for the rest (a 4xx says the
    message or the address is wrong, and sending it again would not change that)."""
    if 200 <= status < 300:
        return None
    reason = f"receiver '{name}' answered {status}"
    if status >= 500 or status in RETRIED_STATUSES:
        return RetryLater(reason, retry_after=_seconds(retry_after))
    return RefusedForGood(reason)


def _seconds(retry_after: str | None) -> float | None:
    """Retry-After in seconds (its HTTP-date form is rare from webhook receivers: ignored)."""
    if retry_after is None or not retry_after.strip().isdigit():
        return None
    return min(float(retry_after.strip()), MAX_RETRY_AFTER_SECONDS)
