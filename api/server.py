"""`tarmac serve`'s HTTP server: aiohttp's, built so that no unauthenticated client can slow it
down or make it leak what it was sent.

- Compressed bodies are never inflated (`auto_decompress=False`; api/content_encoding.py
  answers 415).
- A connection that has not sent a whole request head `TARMAC_HEADER_TIMEOUT` seconds after it
  opened, or after the first byte of its next request, is closed (with a 408 when it sent part
  of one). An idle keep-alive connection is aiohttp's to close, after KEEPALIVE_TIMEOUT.
- What aiohttp answers by itself (a request its parser refuses, an unknown `Expect`, …) is JSON
  `{"error": …}` like every other answer, and what the parser choked on, which may be a token
  or a signature, is neither logged nor echoed.
- accept() running out of file descriptors is logged once a minute with a count, not once per
  attempt (asyncio retries every second, up to the listen backlog each time); the soft open-file
  limit is raised to the hard limit at start.
- The port is bound before the app starts: a port in use is one line on stderr and exit code
  EXIT_CANNOT_LISTEN, and "serving on" is logged once the socket listens.

aiohttp internals this relies on, pinned in pyproject.toml to the minor version checked:
`RequestHandler._waiter` (set while the connection waits for its next request),
`RequestHandler._request_count` (counts the request heads parsed) and
`RequestHandler._current_request` (the request being handled), and `AppRunner._make_server`
(overridden to build the server with Tarmac's request handler).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from aiohttp import hdrs, web, web_log
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    ContentLengthError,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    TransferEncodingError,
)

from api.app import create_app
from api.errors import INTERNAL_ERROR, error_response, status_message
from api.heap import freeze_startup_heap
from api.schemas import ErrorResponse
from api.webhooks import WEBHOOK_PATH
from bot.settings import Settings

log = logging.getLogger(__name__)
serving_log = logging.getLogger("tarmac")

EXIT_CANNOT_LISTEN = 4
BACKLOG = 128
KEEPALIVE_TIMEOUT = 75.0
SHUTDOWN_TIMEOUT = 60.0
ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tfs'


class AccessLogger(web_log.AccessLogger):
    """aiohttp's access log, but for webhook deliveries stored: the inbox's reader writes the
    one line that says what became of each (one line a delivery, not two; 48 µs each here)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if request.path == WEBHOOK_PATH and 200 <= response.status < 300:
            return
        super().log(request, response, time)


# aiohttp's limits, named here because the README documents them.
MAX_LINE_BYTES = 8190
MAX_FIELD_BYTES = 8190
MAX_HEADERS = 128
ACCEPT_LOG_INTERVAL_SECONDS = 60.0

HEADER_TIMEOUT_MESSAGE = "Request headers not received in time"
MALFORMED_REQUEST = "Malformed HTTP request"
INVALID_CHUNKED_BODY = "Invalid chunked body"
# What each of the parser's refusals is called in the answer: never its message, which quotes
# the bytes it refused.
_PARSER_ERRORS: tuple[tuple[type[HttpProcessingError], str], ...] = (
    (LineTooLong, f"Request line or header longer than {MAX_LINE_BYTES} bytes"),
    (BadHttpMethod, "Invalid HTTP method"),
    (BadStatusLine, "Invalid request line"),
    (InvalidURLError, "Invalid request target"),
    (InvalidHeader, "Invalid header"),
    (TransferEncodingError, INVALID_CHUNKED_BODY),
    (ContentLengthError, "Body shorter than its Content-Length"),
)
# asyncio's context message when accept() fails for lack of descriptors or memory.
_ACCEPT_OUT_OF_RESOURCE = "socket.accept() out of system resource"


def serve(settings: Settings) -> int:
    """Serve the app on `settings.host`:`settings.port` until SIGTERM or SIGINT; the exit code."""
    return asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> int:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(AcceptFailureLog(resource_limit=_open_file_limit))
    raise_open_file_limit()
    runner = TarmacRunner(create_app(settings), header_timeout=settings.header_timeout)
    try:
        # Bound now, listening only once the app has started: nothing is accepted before.
        listener = await loop.create_server(
            _deferred_protocol(runner),
            settings.host,
            settings.port,
            backlog=BACKLOG,
            start_serving=False,
        )
    except OSError as exc:
        print(
            f"error: cannot listen on {settings.host}:{settings.port}: {_reason(exc)}",
            file=sys.stderr,
        )
        return EXIT_CANNOT_LISTEN
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    url = f"http://{settings.host}:{settings.port}"
    try:
        await runner.setup()
        freeze_startup_heap()
        await ListenerSite(runner, listener, url).start()
        serving_log.info("serving on %s", url)
        await stopping.wait()
    finally:
        # Stops accepting, lets the requests in flight finish, then closes the service.
        await runner.cleanup()
        listener.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return 0


def _deferred_protocol(runner: web.BaseRunner) -> Callable[[], web.RequestHandler]:
    def protocol() -> web.RequestHandler:
        server = runner.server
        assert server is not None, "accepted a connection before the app started"
        return server()

    return protocol


def _reason(exc: OSError) -> str:
    # asyncio wraps a failed bind in a message that repeats the address.
    if isinstance(exc.errno, int) and exc.errno > 0:
        return os.strerror(exc.errno)
    return exc.strerror or type(exc).__name__


# --- the open-file limit --------------------------------------------------------------------


def _open_file_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def raise_open_file_limit() -> None:
    """The soft RLIMIT_NOFILE up to the hard one: each connection holds a descriptor, and the
    soft default (1024 under systemd) is what a thousand idle clients reach."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft >= hard:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        log.warning("open-file limit stays at %d: %s", soft, exc)
        return
    log.info("open-file limit raised from %d to %d", soft, hard)


class AcceptFailureLog:
    """The event loop's exception handler: accept() failing for lack of descriptors is logged
    once, then at most once per `interval` with the number of failures since; everything else
    goes to asyncio's default handler.

    asyncio logs each failed accept() with a traceback and retries a second later, once per
    connection waiting in the listen backlog: a full descriptor table made 229 239 lines in 20 s.
    """

    def __init__(
        self,
        *,
        resource_limit: Callable[[], int],
        interval: float = ACCEPT_LOG_INTERVAL_SECONDS,
        logger: logging.Logger = log,
    ) -> None:
        self._limit = resource_limit
        self._interval = interval
        self._log = logger
        self._suppressed = 0
        self._window: asyncio.TimerHandle | None = None
        self._window_started = 0.0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if context.get("message") != _ACCEPT_OUT_OF_RESOURCE or not isinstance(exc, OSError):
            loop.default_exception_handler(context)
            return
        if self._window is not None:
            self._suppressed += 1
            return
        self._log.error(
            "cannot accept connections: %s (open-file limit %d); new connections wait in the "
            "listen queue until descriptors are freed (TARMAC_HEADER_TIMEOUT closes idle ones)",
            _errno_text(exc),
            self._limit(),
        )
        self._open_window(loop)

    def _open_window(self, loop: asyncio.AbstractEventLoop) -> None:
        self._window_started = time.monotonic()
        self._window = loop.call_later(self._interval, self._close_window, loop)

    def _close_window(self, loop: asyncio.AbstractEventLoop) -> None:
        self._window = None
        if not self._suppressed:
            return  # the next failure is news again, and logged at once
        self._log.error(
            "cannot accept connections: %d more failed accept() calls in the last %.0f s",
            self._suppressed,
            time.monotonic() - self._window_started,
        )
        self._suppressed = 0
        self._open_window(loop)


def _errno_text(exc: OSError) -> str:
    code = errno.errorcode.get(exc.errno or 0, "")
    text = os.strerror(exc.errno) if exc.errno else str(exc)
    return f"{text} ({code})" if code else text


# --- the server -----------------------------------------------------------------------------


class TarmacRunner(web.AppRunner):
    """aiohttp's AppRunner, serving through TarmacServer."""

    __slots__ = ("_handler_kwargs", "_header_timeout")

    def __init__(self, app: web.Application, *, header_timeout: float) -> None:
        self._header_timeout = header_timeout
        self._handler_kwargs: dict[str, Any] = {
            "keepalive_timeout": KEEPALIVE_TIMEOUT,
            "access_log_format": ACCESS_LOG_FORMAT,
            "access_log_class": AccessLogger,
            "auto_decompress": False,
            "max_line_size": MAX_LINE_BYTES,
            "max_field_size": MAX_FIELD_BYTES,
            "max_headers": MAX_HEADERS,
        }
        super().__init__(app, shutdown_timeout=SHUTDOWN_TIMEOUT, **self._handler_kwargs)

    async def _make_server(self) -> web.Server:
        # Runs the app's start-up and builds aiohttp's server, whose parts are reused here.
        base = await super()._make_server()
        return TarmacServer(
            base.request_handler,
            request_factory=base.request_factory,
            header_timeout=self._header_timeout,
            **self._handler_kwargs,
        )


class TarmacServer(web.Server):
    """aiohttp's Server, whose connections are TarmacRequestHandlers."""

    def __init__(
        self, handler: Any, *, request_factory: Any, header_timeout: float, **kwargs: Any
    ) -> None:
        super().__init__(handler, request_factory=request_factory, **kwargs)
        self._header_timeout = header_timeout
        self._handler_kwargs = kwargs

    def __call__(self) -> TarmacRequestHandler:
        return TarmacRequestHandler(
            self,
            loop=asyncio.get_running_loop(),
            header_timeout=self._header_timeout,
            **self._handler_kwargs,
        )


class ListenerSite(web.BaseSite):
    """A site on a socket bound before the app started (asyncio's `start_serving=False`)."""

    __slots__ = ("_listener", "_url")

    def __init__(self, runner: web.BaseRunner, listener: asyncio.Server, url: str) -> None:
        super().__init__(runner, backlog=BACKLOG)
        self._listener = listener
        self._url = url

    @property
    def name(self) -> str:
        return self._url

    async def start(self) -> None:
        await super().start()
        self._server = self._listener
        await self._listener.start_serving()


def _head_timeout_answer() -> bytes:
    body = ErrorResponse(error=HEADER_TIMEOUT_MESSAGE).model_dump_json().encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


_HEAD_TIMEOUT_ANSWER = _head_timeout_answer()


class TarmacRequestHandler(web.RequestHandler):
    """One connection: aiohttp's handler, plus the request-head deadline and JSON errors that
    never repeat what the client sent."""

    __slots__ = ("_head_begun", "_head_deadline", "_header_timeout")

    def __init__(self, manager: web.Server, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._head_deadline: asyncio.TimerHandle | None = None
        self._head_begun = False

    # -- the request-head deadline

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        if data and (self._head_deadline is not None or self._waiting_for_request()):
            # Bytes while the connection waits for a request are the next request's head.
            if self._head_deadline is None:
                self._arm_head_deadline()
            self._head_begun = True
        heads = self._request_count
        super().data_received(data)
        if self._request_count != heads:
            self._disarm_head_deadline()
            self._fail_body_in_flight()

    def _fail_body_in_flight(self) -> None:
        # A head parsed while a request's body is still arriving is the parser giving up on
        # that body (a broken chunk): aiohttp queues a 400 for later and leaves the handler
        # waiting for the rest of the body until the client hangs up. The handler's read fails
        # now instead, and the connection closes after its answer.
        request = self._current_request
        if request is None or request.content.is_eof():
            return
        request.content.set_exception(web.HTTPBadRequest(reason=INVALID_CHUNKED_BODY))
        request.content.feed_eof()
        self.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _waiting_for_request(self) -> bool:
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    def _arm_head_deadline(self) -> None:
        loop = asyncio.get_running_loop()
        self._head_deadline = loop.call_later(self._header_timeout, self._head_timed_out)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None
        self._head_begun = False

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        transport = self.transport
        if transport is None or not self._waiting_for_request():
            return
        log.debug(
            "closing a connection from %s: no request head within %.0f s",
            self.peername,
            self._header_timeout,
        )
        if self._head_begun:
            transport.write(_HEAD_TIMEOUT_ANSWER)
        self.force_close()
        if transport.get_write_buffer_size():
            transport.abort()  # a client that does not read either gets no goodbye

    # -- answers aiohttp makes by itself

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, HttpProcessingError):
            # A request the parser refused. Its message quotes the bytes it refused (a header
            # with a token, say): only the class is logged, only a fixed text is answered.
            text = _parser_error_text(exc)
            log.debug("refused a malformed request from %s: %s", request.remote, type(exc).__name__)
        elif status >= 500:
            text = INTERNAL_ERROR if status == 500 else status_message(status)
            log.error(
                "unexpected error answering %s %s", request.method, request.path, exc_info=exc
            )
        else:
            text = status_message(status)
        if request.writer.output_size > 0:
            raise ConnectionError("the answer had begun; the connection is closed instead")
        response = error_response(status, text)
        response.force_close()
        return response

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        if isinstance(resp, web.StreamResponse) and _needs_json(resp):
            resp = _as_json(resp)
        return await super().finish_response(request, resp, start_time)


def _parser_error_text(exc: HttpProcessingError) -> str:
    for kind, text in _PARSER_ERRORS:
        if isinstance(exc, kind):
            return text
    return MALFORMED_REQUEST


def _needs_json(response: web.StreamResponse) -> bool:
    """An error answer aiohttp made (an `Expect` it does not know, say), not yet sent."""
    return (
        response.status >= 400
        and not response.prepared
        and response.content_type != "application/json"
    )


_BODY_HEADERS = {hdrs.CONTENT_TYPE.lower(), hdrs.CONTENT_LENGTH.lower()}


def _as_json(response: web.StreamResponse) -> web.Response:
    # The text aiohttp wrote may quote a header ("Unknown Expect: …"): the status speaks.
    replacement = error_response(response.status, status_message(response.status))
    for name, value in response.headers.items():
        if name.lower() not in _BODY_HEADERS:
            replacement.headers.add(name, value)
    if response.keep_alive is False:
        replacement.force_close()
    return replacement
