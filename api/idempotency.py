"""`Idempotency-Key` on every write of the API, and the transaction every write runs in.

A write sent with a key it sent before (same token, within 24 hours) is not run again: it gets
the first answer, status and body, with `Idempotent-Replayed: true`. The same key with another
request (method, path, query or body) is refused with 422. Only 2xx answers are kept: a refused
request changed nothing, so its retry is simply tried again (a deploy refused while the
environment was frozen goes through once it is unfrozen).

Every write handler runs in `changing(request)`, which stores the answer with the key in the
transaction that makes the change. Two requests with one key at the same moment both run; the
second to commit finds the key taken, rolls its change back, and answers the first one's answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import ApiError, Handler, bad_request
from api.keys import IDENTITY, SERVICE
from api.responses import json_response
from bot.app.operations import Mirror
from bot.storage import idempotency
from bot.storage.idempotency import Replay, StoredAnswer

T = TypeVar("T")

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

INVALID_KEY = (
    f"Invalid {HEADER} header: 1 to {idempotency.MAX_KEY_LENGTH} printable ASCII characters"
)
KEY_REUSED = (
    f"{HEADER} was already used with a different request (method, path or body); "
    "use a new key for a new request"
)


@dataclass(frozen=True)
class KeyedRequest:
    token_id: int
    key: str
    fingerprint: str


KEYED = web.RequestKey("idempotency_key", KeyedRequest)


@web.middleware
async def idempotency_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Runs after authentication: keys belong to the token that sent them."""
    key = request.headers.get(HEADER)
    if key is None or request.method not in WRITE_METHODS or IDENTITY not in request:
        return await handler(request)
    if not idempotency.is_valid_key(key):
        raise bad_request(INVALID_KEY)
    body = await request.read()  # over client_max_size: 413 from aiohttp
    keyed = KeyedRequest(
        token_id=request[IDENTITY].token_id,
        key=key,
        fingerprint=idempotency.request_fingerprint(
            request.method, request.rel_url.raw_path_qs, body
        ),
    )
    stored = await _stored_answer(request, keyed)
    if stored is not None:
        return _replay(stored, keyed)
    request[KEYED] = keyed
    try:
        return await handler(request)
    except IntegrityError:
        # Possibly a concurrent request with the same key that committed first.
        stored = await _stored_answer(request, keyed)
        if stored is None:
            raise
        return _replay(stored, keyed)


async def _stored_answer(request: web.Request, keyed: KeyedRequest) -> StoredAnswer | None:
    service = request.app[SERVICE]
    async with service.db.read() as session:
        return await idempotency.find_answer(session, keyed.token_id, keyed.key, service.clock())


def _replay(stored: StoredAnswer, keyed: KeyedRequest) -> web.Response:
    if idempotency.replay_for(stored, keyed.fingerprint) is Replay.OTHER_REQUEST:
        raise ApiError(422, KEY_REUSED)
    return web.Response(
        status=stored.status,
        text=stored.body,
        content_type="application/json",
        headers={REPLAYED_HEADER: "true"},
    )


class Change:
    """One write request's transaction and the answer it will give once committed."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._answer: web.Response | None = None

    def answer(self, body: BaseModel, status: int = 200) -> None:
        self._answer = json_response(body, status=status)

    def answer_json(self, text: str, status: int = 200) -> None:
        """An answer already encoded (a GraphQL response)."""
        self._answer = web.Response(text=text, status=status, content_type="application/json")

    @property
    def response(self) -> web.Response:
        if self._answer is None:
            raise RuntimeError("a write handler ended without an answer")
        return self._answer


@asynccontextmanager
async def changing(request: web.Request) -> AsyncIterator[Change]:
    """The write transaction of a handler: it commits the change together with the answer
    for the request's Idempotency-Key (if it has one); what it enqueues wakes the outbox
    worker once committed (bot/storage/db.py)."""
    service = request.app[SERVICE]
    async with service.db.write() as session:
        change = Change(session)
        yield change
        keyed = request.get(KEYED)
        if keyed is not None:
            answer = change.response
            assert isinstance(answer.text, str)
            await idempotency.remember_answer(
                session,
                token_id=keyed.token_id,
                key=keyed.key,
                fingerprint=keyed.fingerprint,
                status=answer.status,
                body=answer.text,
                now=service.clock(),
            )


async def committed(
    request: web.Request,
    use_case: Callable[[AsyncSession, Mirror], Awaitable[T]],
    answer: Callable[[T], BaseModel],
    *,
    status: int = 200,
) -> web.Response:
    """Run one use case in the request's write transaction (`changing`) and give its answer
    once committed: the shape of every REST write handler."""
    async with changing(request) as change:
        result = await use_case(change.session, request.app[SERVICE].mirror)
        change.answer(answer(result), status=status)
    return change.response
