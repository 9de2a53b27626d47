"""Every error leaves as `{"error": "..."}` JSON; nothing leaves with a stack trace."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from aiohttp import web
from sqlalchemy.exc import DBAPIError, OperationalError

from api.schemas import ErrorResponse
from bot.core.errors import DomainError, Refusal
from bot.storage.db import failure_reason

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

UNAUTHORIZED = "Unauthorized"
FORBIDDEN = "Forbidden"
NOT_FOUND = "Not found"
METHOD_NOT_ALLOWED = "Method not allowed"
BODY_TOO_LARGE = "Request body is larger than 1 MiB"
INTERNAL_ERROR = "Internal server error"
DATABASE_UNAVAILABLE = "Database unavailable, try again"
CLIENT_CLOSED = "Connection closed before the request was read"

REFUSAL_STATUS = {Refusal.INVALID: 400, Refusal.NOT_FOUND: 404, Refusal.CONFLICT: 409}


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def error_response(status: int, message: str) -> web.Response:
    return web.Response(
        status=status,
        text=ErrorResponse(error=message).model_dump_json(),
        content_type="application/json",
    )


_HTTP_MESSAGES = {
    401: UNAUTHORIZED,
    403: FORBIDDEN,
    404: NOT_FOUND,
    405: METHOD_NOT_ALLOWED,
    413: BODY_TOO_LARGE,
}


def status_message(status: int) -> str:
    """What an error answer with nothing more specific to say says: Tarmac's own wording for
    the statuses it uses, otherwise the status's reason phrase."""
    if status in _HTTP_MESSAGES:
        return _HTTP_MESSAGES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    except DomainError as exc:
        return error_response(REFUSAL_STATUS[exc.refusal], exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(exc.status, _HTTP_MESSAGES.get(exc.status, exc.reason))
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except (OperationalError, DBAPIError, OSError) as exc:
        if isinstance(exc, ConnectionResetError) and _client_gone(request):
            # The client hung up before its body arrived: nobody to answer, nothing wrong here.
            log.info("client closed the connection during %s %s", request.method, request.path)
            return error_response(400, CLIENT_CLOSED)
        log.error("database error on %s %s: %s", request.method, request.path, failure_reason(exc))
        return error_response(503, DATABASE_UNAVAILABLE)
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(500, INTERNAL_ERROR)


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
