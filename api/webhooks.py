"""`POST /api/github/webhooks`: GitHub's deliveries in.

Each delivery is verified first (HMAC-SHA256 of the raw body with the App's webhook secret,
through gidgethub's `sansio.Event.from_http`); an unsigned or wrongly signed one gets 401 and
leaves no trace but a log line. A verified delivery is appended to the inbox as it came (in a
transaction shared with the deliveries that arrive alongside it, bot/github/inbound/intake.py):
once that has committed, a 2xx may leave. The inbox's reader handles it in a transaction of its
own (bot/github/inbound/inbox.py), once by `X-GitHub-Delivery`, and the request waits up to
`TARMAC_WEBHOOK_ANSWER_WAIT_SECONDS` for that to answer with the outcome; past it the answer is
202 "queued". Whatever calls GitHub happens later still, through the outbox.

GitHub counts any non-2xx answer as a failed delivery, so events and actions Tarmac does not
handle are answered 202 "ignored" (and recorded). Bodies are limited to the app-wide 1 MiB
(413): GitHub sends up to 25 MB, but the events Tarmac acts on are a few kB; only a branch push
with many commits comes near the limit, and Tarmac ignores branch pushes anyway.

Every log line names the delivery id (as claimed by the header until the signature is checked);
the line that says what became of a delivery is the reader's, one per delivery.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence

import orjson
from aiohttp import web
from gidgethub import BadRequest, ValidationFailure, sansio
from sqlalchemy.exc import DBAPIError, OperationalError

from api.dashboard.keys import GITHUB_ACCESS
from api.errors import DATABASE_UNAVAILABLE, INTERNAL_ERROR, ApiError
from api.keys import GITHUB_APP, SERVICE
from api.requests import INVALID_JSON, NOT_AN_OBJECT
from api.responses import json_response
from api.schemas import WebhookResponse
from bot.core.metrics import UNVERIFIED
from bot.github.inbound.inbox import InboxReader
from bot.github.inbound.intake import DeliveryIntake

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

# Concurrent deliveries are appended to the inbox in shared transactions (inbound/intake.py).
DELIVERY_INTAKE = web.AppKey("delivery_intake", DeliveryIntake)
# What handles them from there (bot/github/inbound/inbox.py).
INBOX_READER = web.AppKey("inbox_reader", InboxReader)

WEBHOOK_PATH = "/api/github/webhooks"
PING = "ping"

GITHUB_APP_NOT_CONFIGURED = "GitHub App not configured"
INVALID_SIGNATURE = "Invalid signature"
UNSUPPORTED_CONTENT_TYPE = "Content-Type must be application/json"
MISSING_EVENT_HEADER = "Missing header 'X-GitHub-Event'"
MISSING_DELIVERY_HEADER = "Missing header 'X-GitHub-Delivery'"
INVALID_EVENT_HEADER = "Invalid header 'X-GitHub-Event'"
INVALID_DELIVERY_HEADER = "Invalid header 'X-GitHub-Delivery'"

_MISSING_HEADERS = {
    "x-github-event": MISSING_EVENT_HEADER,
    "x-github-delivery": MISSING_DELIVERY_HEADER,
}
# The content types gidgethub decodes (a hook can be set to send either).
_DECODED_TYPES = {"application/json", "application/x-www-form-urlencoded"}
_SIGNATURE_PREFIX = "sha256="
_MAX_HEADER_LENGTH = 100


async def delivery_intake_context(app: web.Application) -> AsyncIterator[None]:
    """The app's DeliveryIntake and InboxReader, from its service (add after the service's
    context). With a GitHub App the reader starts at once: what a stopped process left in the
    inbox is handled."""
    service = app[SERVICE]

    def forget_access(login: str) -> None:
        # The dashboard's cache of people's permissions, when it signs people in with GitHub
        # (made after this context, so looked up at each use).
        access = app.get(GITHUB_ACCESS)
        if access is not None:
            access.forget(login)

    reader = InboxReader(
        service.db,
        service.projects,
        service.clock,
        mirror=service.mirror,
        metrics=service.metrics,
        forget_access=forget_access,
    )
    intake = DeliveryIntake(
        service.db,
        reader,
        service.projects,
        service.clock,
        answer_wait=service.settings.webhook_answer_wait_seconds,
    )
    app[INBOX_READER] = reader
    app[DELIVERY_INTAKE] = intake
    # Deliveries arrive only with the App configured; without it nothing reads the inbox (what
    # an earlier run with the App left there waits for the App to be configured again).
    if app.get(GITHUB_APP) is not None:
        reader.start()
    yield
    await intake.close()
    await reader.close()


@routes.post(WEBHOOK_PATH)
async def receive_webhook(request: web.Request) -> web.Response:
    github_app = request.app.get(GITHUB_APP)
    if github_app is None:
        raise ApiError(503, GITHUB_APP_NOT_CONFIGURED)
    claimed_id = _loggable(request.headers.get("X-GitHub-Delivery"))
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        log.warning("delivery %s refused: body larger than the 1 MiB limit", claimed_id)
        raise
    plain_json = _is_plain_json(request)
    try:
        event = _verified_event(request, body, github_app.webhook_secrets, claimed_id, plain_json)
    except ApiError:
        request.app[SERVICE].metrics.webhook_delivery(UNVERIFIED, "rejected")
        raise
    # The inbox keeps JSON: a form-encoded body, or another charset, is stored re-encoded.
    return await _handle(request, event, body if plain_json else _as_json(event.data))


async def _handle(request: web.Request, event: sansio.Event, body: bytes) -> web.Response:
    delivery_id = event.delivery_id
    try:
        handled = await request.app[DELIVERY_INTAKE].handle(event, body)
    except (OperationalError, DBAPIError, OSError) as exc:
        log.error(
            "delivery %s (%s): database error: %s", delivery_id, event.event, type(exc).__name__
        )
        raise ApiError(503, DATABASE_UNAVAILABLE) from None
    except Exception:
        # Logged by the inbox's reader, which dropped it: nothing of it is stored.
        raise ApiError(500, INTERNAL_ERROR) from None
    if handled is None:
        return json_response(WebhookResponse(status="queued"), status=202)
    if not handled.claimed:
        return json_response(WebhookResponse(status="duplicate", outcome=handled.outcome))
    if event.event == PING:
        return json_response(WebhookResponse(status="pong"))
    status = "ignored" if handled.ignored else "accepted"
    return json_response(WebhookResponse(status=status, outcome=handled.outcome), status=202)


def _as_json(data: object) -> bytes:
    try:
        return orjson.dumps(data)
    except TypeError:  # integers past 64 bits: the standard library writes them
        return json.dumps(data).encode("utf-8")


def _verified_event(
    request: web.Request, body: bytes, secrets: Sequence[str], claimed_id: str, plain_json: bool
) -> sansio.Event:
    """The delivery, once its signature holds by one of `secrets`; ApiError 401 or 400 otherwise."""
    # gidgethub falls back to the SHA-1 `X-Hub-Signature`; GitHub sends both, take only SHA-256.
    if not request.headers.get("X-Hub-Signature-256", "").startswith(_SIGNATURE_PREFIX):
        log.warning("delivery %s refused: no X-Hub-Signature-256 signature", claimed_id)
        raise ApiError(401, INVALID_SIGNATURE)
    try:
        event = _event_signed_by_any(request, body, secrets, plain_json)
    except ValidationFailure:
        log.warning("delivery %s refused: invalid signature", claimed_id)
        raise ApiError(401, INVALID_SIGNATURE) from None
    except BadRequest:
        # Signed, but not a body gidgethub can decode: wrong content type or broken JSON.
        decodable = request.content_type in _DECODED_TYPES
        log.warning("delivery %s refused: undecodable %s body", claimed_id, request.content_type)
        raise ApiError(400, INVALID_JSON if decodable else UNSUPPORTED_CONTENT_TYPE) from None
    except KeyError as exc:
        log.warning("delivery %s refused: missing header %s", claimed_id, exc.args[0])
        raise ApiError(400, _MISSING_HEADERS.get(exc.args[0], INVALID_JSON)) from None
    except LookupError:  # a charset Python does not know
        log.warning("delivery %s refused: unknown charset", claimed_id)
        raise ApiError(400, UNSUPPORTED_CONTENT_TYPE) from None
    except RecursionError:  # JSON nested deeper than the decoder goes
        log.warning("delivery %s refused: JSON nested too deep", claimed_id)
        raise ApiError(400, INVALID_JSON) from None
    if not _valid_header(event.delivery_id):
        log.warning("delivery %s refused: invalid X-GitHub-Delivery", claimed_id)
        raise ApiError(400, INVALID_DELIVERY_HEADER)
    if not _valid_header(event.event):
        log.warning("delivery %s refused: invalid X-GitHub-Event", claimed_id)
        raise ApiError(400, INVALID_EVENT_HEADER)
    if not isinstance(event.data, dict):
        log.warning("delivery %s refused: body is not a JSON object", claimed_id)
        raise ApiError(400, NOT_AN_OBJECT)
    return event


def _event_signed_by_any(
    request: web.Request, body: bytes, secrets: Sequence[str], plain_json: bool
) -> sansio.Event:
    """The delivery as a gidgethub event, once its signature holds for one of `secrets` (the
    current secret comes first, so only deliveries signed with the previous one, during a
    rotation, cost two HMACs); ValidationFailure when none does. A `plain_json` body is decoded
    by orjson; any other body, and whatever orjson refuses, by gidgethub (json.loads)."""
    signature = request.headers["X-Hub-Signature-256"]
    *earlier, last = secrets
    secret = next((s for s in earlier if _signed_with(body, signature, s)), None)
    if secret is None:
        secret = last
        sansio.validate_event(body, signature=signature, secret=last)
    if plain_json:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # e.g. NaN, integers past 64 bits: the standard library decides, as below
        else:
            headers = request.headers
            return sansio.Event(
                data, event=headers["x-github-event"], delivery_id=headers["x-github-delivery"]
            )
    return sansio.Event.from_http(request.headers, body, secret=secret)


def _signed_with(body: bytes, signature: str, secret: str) -> bool:
    try:
        sansio.validate_event(body, signature=signature, secret=secret)
    except ValidationFailure:
        return False
    return True


def _is_plain_json(request: web.Request) -> bool:
    """UTF-8 JSON, which orjson decodes exactly as gidgethub's json.loads would (or refuses)."""
    charset = request.charset
    return request.content_type == "application/json" and (
        charset is None or charset.lower() in ("utf-8", "utf8")
    )


def _valid_header(value: str) -> bool:
    return 0 < len(value) <= _MAX_HEADER_LENGTH and value.isprintable()


def _loggable(value: str | None) -> str:
    """A header value fit for a log line before anything about it is known."""
    if not value:
        return "-"
    if _valid_header(value):
        return value
    text = "".join(c if c.isprintable() else "?" for c in value[:_MAX_HEADER_LENGTH])
    return text + ("…" if len(value) > _MAX_HEADER_LENGTH else "")
