"""The HTTP server against hostile clients (issue 12): the real `tarmac serve`, raw bytes on
loopback sockets.

- compressed bodies are refused with 415 before they are read, and /healthz stays fast while
  bombs arrive;
- a connection that never finishes its request head is closed after TARMAC_HEADER_TIMEOUT;
  1 100 of them against a 1 024 open-file limit (soak) only hold the server that long;
- every malformed request gets a JSON error with the right status, and neither the answer nor
  any log line (text or JSON, at DEBUG) holds a token, the webhook secret or a header value;
- a port in use is one line and exit code 4; the soft open-file limit is raised at start.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import resource
import socket
import subprocess
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from api.content_encoding import UNSUPPORTED_CONTENT_ENCODING
from api.server import EXIT_CANNOT_LISTEN, HEADER_TIMEOUT_MESSAGE, AcceptFailureLog
from tests.conftest import TEST_APP_ID, WEBHOOK_SECRET
from tests.figures import record_figure
from tests.processes import eventually
from tests.test_cli import (
    EXAMPLE_CONFIG,
    TARMAC,
    Server,
    created_token,
    free_port,
    run_tarmac,
    sqlite_url,
    tarmac_env,
    wait_until_healthy,
)

HEADER_TIMEOUT = 1.0
ANSWER_TIMEOUT = 10.0
# A port where nothing answers: the GitHub App is configured (so the webhook secret is in the
# server's hands) but nothing here makes it call GitHub.
NO_GITHUB = "http://127.0.0.1:9"


@contextmanager
def serve(
    env: dict[str, str], cwd: Path, preexec_fn: Callable[[], None] | None = None
) -> Iterator[Server]:
    """`tarmac serve` on a free port (as tests/test_cli.py's `tarmac_server`, with a hook to
    set the child's limits); killed if still running."""
    port = free_port()
    log = cwd / f"serve-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*TARMAC, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=cwd,
            stdout=sink,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        wait_until_healthy(server)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def port_of(server: Server) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


@dataclass
class Hardened:
    """A running `tarmac serve` with the GitHub App configured, and the secrets it knows."""

    server: Server
    token: str
    log_format: str

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.token, WEBHOOK_SECRET)


def start_hardened(
    log_format: str, tmp_path_factory: pytest.TempPathFactory, private_key: str
) -> Iterator[Hardened]:
    cwd = tmp_path_factory.mktemp(f"hardened-{log_format}")
    env = tarmac_env(
        database_url=sqlite_url(cwd / "tarmac.db"),
        config=EXAMPLE_CONFIG,
        github_app_id=str(TEST_APP_ID),
        github_private_key=private_key,
        github_webhook_secret=WEBHOOK_SECRET,
        github_api_url=NO_GITHUB,
        log_format=log_format,
        log_level="DEBUG",
        header_timeout=str(HEADER_TIMEOUT),
    )
    token = created_token(run_tarmac("token", "create", "hostile", env=env, cwd=cwd))
    with serve(env, cwd) as server:
        yield Hardened(server, token, log_format)


@pytest.fixture(scope="module")
def hardened(
    tmp_path_factory: pytest.TempPathFactory, github_private_key: str
) -> Iterator[Hardened]:
    """The server most tests here talk to: text logs, at DEBUG."""
    yield from start_hardened("text", tmp_path_factory, github_private_key)


@pytest.fixture(scope="module")
def hardened_json(
    tmp_path_factory: pytest.TempPathFactory, github_private_key: str
) -> Iterator[Hardened]:
    """The same with TARMAC_LOG_FORMAT=json."""
    yield from start_hardened("json", tmp_path_factory, github_private_key)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self) -> Any:
        assert self.headers.get("content-type", "").startswith("application/json"), self
        return json.loads(self.body)


def parse_answer(raw: bytes, seconds: float) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(body)))
    return Answer(int(status_line.split(" ", 2)[1]), headers, body[:length], seconds)


async def exchange(port: int, parts: Sequence[bytes], pause: float = 0.3) -> Answer:
    """Send `parts` (a pause between them) and read until the server closes the connection."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i, part in enumerate(parts):
            if i:
                await asyncio.sleep(pause)
            writer.write(part)
            await writer.drain()
        raw = await asyncio.wait_for(reader.read(), ANSWER_TIMEOUT)
    finally:
        writer.close()
    assert raw, "the connection closed without an answer"
    return parse_answer(raw, time.monotonic() - started)


def traces(secret: str) -> list[str]:
    """The secret, and its first and last 16 characters (a truncated echo is a leak too)."""
    return [secret, secret[:16], secret[-16:]]


def leaked(text: str, secrets: Sequence[str]) -> list[str]:
    return [trace[:6] for secret in secrets for trace in traces(secret) if trace in text]


# --- malformed requests ---------------------------------------------------------------------

MALFORMED = "Malformed HTTP request"
TOO_LONG = "Request line or header longer than 8190 bytes"
BAD_METHOD = "Invalid HTTP method"


def malformed_requests(token: str, secret: str) -> dict[str, tuple[list[bytes], int, str]]:
    """Name: (the request's parts, the status, the error), each carrying a secret somewhere the
    parser quotes when it refuses it."""
    t, s = token.encode(), secret.encode()
    host = b"Host: tarmac\r\n"
    get = b"GET /healthz HTTP/1.1\r\n" + host
    environments = b"GET /api/releases/Backend/environments HTTP/1.1\r\n" + host
    api = b"POST /api/releases/Backend/releases/v1.0.0-rc1 HTTP/1.1\r\n" + host
    bearer = b"Authorization: Bearer " + t + b"\r\n"
    chunked = b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    signed = b"X-GitHub-Event: ping\r\nX-GitHub-Delivery: d-1\r\nX-Hub-Signature-256: sha256="
    body = gzip.compress(b"{}")
    gzipped = b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    return {
        # A token file saved with Windows line endings, read by $(cat …).
        "bare CR after a token": (
            [environments + b"Authorization: Bearer " + t + b"\r\r\n\r\n"],
            400,
            MALFORMED,
        ),
        "bare CR inside a token": (
            [get + b"Authorization: Bearer " + t + b"\rx\r\n\r\n"],
            400,
            MALFORMED,
        ),
        "bare LF after a token": (
            [get + b"Authorization: Bearer " + t + b"\nX: y\r\n\r\n"],
            400,
            MALFORMED,
        ),
        "header over the limit": (
            [get + b"Authorization: Bearer " + t + b"A" * 9000 + b"\r\n\r\n"],
            400,
            TOO_LONG,
        ),
        "request line over the limit": (
            [b"GET /" + t + b"A" * 9000 + b" HTTP/1.1\r\n" + host + b"\r\n"],
            400,
            TOO_LONG,
        ),
        "too many headers": ([get + bearer * 200 + b"\r\n"], 400, MALFORMED),
        "bad request line": ([b"HELLO " + t + b"\r\n\r\n"], 400, BAD_METHOD),
        "invalid method": ([b"G@T /healthz HTTP/1.1\r\n" + bearer + b"\r\n"], 400, BAD_METHOD),
        "unknown HTTP version": (
            [b"GET /" + s + b" HTTP/3.0\r\n" + host + b"\r\n"],
            400,
            "Invalid request line",
        ),
        "TLS on the HTTP port": (
            [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + t],
            400,
            BAD_METHOD,
        ),
        "non-UTF-8 bytes in the path": (
            [b"GET /\xff\xfe" + t + b" HTTP/1.1\r\n" + host + b"\r\n"],
            400,
            "Invalid request target",
        ),
        "non-UTF-8 bytes in a header name": (
            [get + b"X-\xff: " + t + b"\r\n\r\n"],
            400,
            MALFORMED,
        ),
        "space in a header name": (
            [get + b"Auth orization: Bearer " + t + b"\r\n\r\n"],
            400,
            MALFORMED,
        ),
        "NUL in a token": ([get + b"Authorization: Bearer " + t + b"\x00\r\n\r\n"], 400, MALFORMED),
        "folded header holding a token": (
            [get + b"Authorization: Bearer\r\n " + t + b"\r\n\r\n"],
            400,
            MALFORMED,
        ),
        "broken chunk size, in one write": (
            [api + bearer + chunked + b"ZZ" + s + b"\r\n\r\n"],
            400,
            MALFORMED,
        ),
        "broken chunk size, after the head": (
            [api + bearer + chunked, b"ZZ" + s + b"\r\n\r\n"],
            400,
            "Invalid chunked body",
        ),
        "broken chunk after a good one": (
            [api + bearer + chunked, b'5\r\n{"a":\r\nXX' + s + b"\r\n"],
            400,
            "Invalid chunked body",
        ),
        "bad chunk extension": (
            [api + bearer + chunked + b"5;" + s + b"\x01\r\nhello\r\n0\r\n\r\n"],
            400,
            MALFORMED,
        ),
        "Content-Length and Transfer-Encoding": (
            [api + bearer + b"Content-Length: 3\r\n" + chunked + b"0\r\n\r\n"],
            400,
            MALFORMED,
        ),
        "Content-Length holding a secret": (
            [api + bearer + b"Content-Length: " + s + b"\r\n\r\n"],
            400,
            MALFORMED,
        ),
        "unknown Transfer-Encoding": (
            [api + bearer + b"Transfer-Encoding: " + s + b"\r\n\r\n"],
            400,
            MALFORMED,
        ),
        "unknown Expect holding a token": (
            [api + b"Connection: close\r\nExpect: " + t + b"\r\nContent-Length: 2\r\n\r\n{}"],
            417,
            "Expectation Failed",
        ),
        "Bearer token holding the webhook secret": (
            [environments + b"Connection: close\r\nAuthorization: Bearer " + s + b"\r\n\r\n"],
            401,
            "Unauthorized",
        ),
        "webhook signed with the secret in clear": (
            [
                b"POST /api/github/webhooks HTTP/1.1\r\n" + host + b"Connection: close\r\n"
                b"Content-Type: application/json\r\nContent-Length: 2\r\n"
                + signed
                + s
                + b"\r\n\r\n{}"
            ],
            401,
            "Invalid signature",
        ),
        "gzip body with a good token": (
            [api + bearer + b"Connection: close\r\nContent-Type: application/json\r\n" + gzipped],
            415,
            UNSUPPORTED_CONTENT_ENCODING,
        ),
    }


MALFORMED_NAMES = list(malformed_requests("t" * 43, "s" * 32))


@pytest.mark.parametrize("name", MALFORMED_NAMES)
@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_a_malformed_request_gets_json_and_leaks_nothing(
    request: pytest.FixtureRequest, log_format: str, name: str
) -> None:
    hardened: Hardened = request.getfixturevalue(
        "hardened_json" if log_format == "json" else "hardened"
    )
    parts, status, error = malformed_requests(hardened.token, WEBHOOK_SECRET)[name]
    port = port_of(hardened.server)

    answer = await exchange(port, parts)

    assert answer.status == status, answer
    assert answer.json() == {"error": error}
    assert leaked(answer.body.decode("latin-1"), hardened.secrets) == []
    # Every line this request made is in the log once a request after it is.
    marker = f"after-{MALFORMED_NAMES.index(name)}"
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{hardened.server.base_url}/healthz?{marker}") as reply,
    ):
        assert reply.status == 200
    await eventually(lambda: marker in hardened.server.output(), "the marker's access log line")
    output = hardened.server.output()
    assert leaked(output, hardened.secrets) == []
    # Nothing about it at ERROR (aiohttp logs a refused request there, with what it refused).
    # The catch-up's complaint that no GitHub answers is not about this request.
    errors = [line for line in error_lines(output, hardened.log_format) if "catch_up" not in line]
    assert errors == []


def error_lines(output: str, log_format: str) -> list[str]:
    if log_format == "text":
        return [line for line in output.splitlines() if " ERROR " in line]
    records = [json.loads(line) for line in output.splitlines()]  # each line is one object
    return [json.dumps(r) for r in records if r["level"] == "ERROR"]


# --- compressed bodies ------------------------------------------------------------------------

BOMB_INFLATED_BYTES = 100 << 20  # ~0.4 s of inflating on the event loop, each
BOMB_CLIENTS = 3
BOMBING_SECONDS = 1.5
PROBE_PAUSE_SECONDS = 0.02
HEALTHZ_WORST_SECONDS = 0.25


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1 << 22)
    parts = [compressor.compress(chunk) for _ in range(BOMB_INFLATED_BYTES // len(chunk))]
    return b"".join([*parts, compressor.flush()])


async def test_gzip_bombs_are_refused_at_once_and_healthz_stays_fast(
    hardened: Hardened, gzip_bomb: bytes
) -> None:
    """Three clients send bombs back to back; without the refusal each would hold the event
    loop while it inflates (the bench, bench/hostile.py, does this with 1 GiB bombs)."""
    url = hardened.server.base_url
    headers = {
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "bomb",
        "X-Hub-Signature-256": "sha256=" + "0" * 64,
    }
    probes: list[float] = []
    answers: list[tuple[int, Any, float]] = []
    deadline = time.monotonic() + BOMBING_SECONDS

    async def probe(http: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            started = time.monotonic()
            async with http.get(url + "/healthz") as reply:
                assert reply.status == 200
            probes.append(time.monotonic() - started)
            await asyncio.sleep(PROBE_PAUSE_SECONDS)

    # The server answers 415 and closes before the bomb is all sent; the client may then fail
    # writing the rest before it reads the answer. Such a close counts, and must be as quick.
    closed_while_sending: list[float] = []

    async def bomber() -> None:
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                async with (
                    aiohttp.ClientSession() as http,
                    http.post(
                        url + "/api/github/webhooks", data=gzip_bomb, headers=headers
                    ) as reply,
                ):
                    answers.append((reply.status, await reply.json(), time.monotonic() - started))
            except aiohttp.ClientOSError:
                closed_while_sending.append(time.monotonic() - started)

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(probe(http), *(bomber() for _ in range(BOMB_CLIENTS)))

    record_figure("gzip bombs", "bomb size (kB)", len(gzip_bomb) // 1000)
    record_figure("gzip bombs", "bombs refused", len(answers))
    record_figure("gzip bombs", "closed while sending", len(closed_while_sending))
    record_figure("gzip bombs", "slowest refusal (ms)", max(a[2] for a in answers) * 1000)
    record_figure("gzip bombs", "/healthz probes", len(probes))
    record_figure("gzip bombs", "slowest /healthz (ms)", max(probes) * 1000)
    assert len(answers) >= BOMB_CLIENTS
    for status, body, seconds in answers:
        assert (status, body) == (415, {"error": UNSUPPORTED_CONTENT_ENCODING})
        assert seconds < 1
    assert all(seconds < 1 for seconds in closed_while_sending), closed_while_sending
    assert max(probes) <= HEALTHZ_WORST_SECONDS, sorted(probes)[-5:]


# --- slow clients -----------------------------------------------------------------------------


async def test_a_connection_that_never_finishes_its_head_gets_408_after_the_timeout(
    hardened: Hardened,
) -> None:
    answer = await exchange(port_of(hardened.server), [b"GET /healthz HTTP/1.1\r\nHost: x\r\n"])

    assert answer.status == 408
    assert answer.json() == {"error": HEADER_TIMEOUT_MESSAGE}
    assert answer.headers["connection"] == "close"
    assert HEADER_TIMEOUT * 0.9 <= answer.seconds < HEADER_TIMEOUT + 2


async def test_a_connection_that_sends_nothing_is_closed_without_an_answer(
    hardened: Hardened,
) -> None:
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(hardened.server))
    try:
        raw = await asyncio.wait_for(reader.read(), ANSWER_TIMEOUT)
    finally:
        writer.close()

    assert raw == b""
    assert HEADER_TIMEOUT * 0.9 <= time.monotonic() - started < HEADER_TIMEOUT + 2


async def test_a_head_trickled_byte_by_byte_does_not_extend_the_timeout(
    hardened: Hardened,
) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 100
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(hardened.server))

    async def trickle() -> None:
        for byte in head:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.1)

    sender = asyncio.create_task(trickle())
    try:
        raw = await asyncio.wait_for(reader.read(), ANSWER_TIMEOUT)
    finally:
        sender.cancel()
        writer.close()
    answer = parse_answer(raw, time.monotonic() - started)

    assert answer.status == 408
    assert answer.seconds < HEADER_TIMEOUT + 2  # the trickle alone would take 11 s


async def test_an_idle_keep_alive_connection_outlives_the_header_timeout(
    hardened: Hardened,
) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(hardened.server))
    try:
        for first in (True, False):
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_TIMEOUT)
            assert head.startswith(b"HTTP/1.1 200 ")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            assert json.loads(await reader.readexactly(length)) == {"status": "ok"}
            if first:
                await asyncio.sleep(HEADER_TIMEOUT * 1.5)
    finally:
        writer.close()


# --- the accept() log, the open-file limit, the port ----------------------------------------


async def test_accept_failures_are_logged_once_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    logger = logging.getLogger("tests.accept_failures")
    handler = AcceptFailureLog(resource_limit=lambda: 1024, interval=0.2, logger=logger)
    failure = {
        "message": "socket.accept() out of system resource",
        "exception": OSError(24, "Too many open files"),
    }
    caplog.set_level(logging.ERROR)

    for _ in range(1000):
        handler(loop, failure)
    first = [r.getMessage() for r in caplog.records if r.name == logger.name]
    await eventually(
        lambda: len([r for r in caplog.records if r.name == logger.name]) == 2, "the summary"
    )
    await asyncio.sleep(0.5)  # a quiet window says nothing
    handler(loop, failure)
    handler(loop, {"message": "something else", "exception": ValueError("other")})

    lines = [r.getMessage() for r in caplog.records if r.name == logger.name]
    assert first == [
        "cannot accept connections: Too many open files (EMFILE) (open-file limit 1024); new "
        "connections wait in the listen queue until descriptors are freed "
        "(TARMAC_HEADER_TIMEOUT closes idle ones)"
    ]
    assert lines[1].startswith("cannot accept connections: 999 more failed accept() calls ")
    assert lines[2] == first[0]  # news again after a quiet window
    assert len(lines) == 3
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == ["something else"]


def test_the_soft_open_file_limit_is_raised_to_the_hard_one(tmp_path: Path) -> None:
    env = tarmac_env(database_url=sqlite_url(tmp_path / "t.db"), config=EXAMPLE_CONFIG)

    def low_soft_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096))

    with serve(env, tmp_path, preexec_fn=low_soft_limit) as server:
        limits = Path(f"/proc/{server.process.pid}/limits").read_text()
        (line,) = [line for line in limits.splitlines() if line.startswith("Max open files")]
        assert line.split()[3:5] == ["4096", "4096"]
        assert "open-file limit raised from 256 to 4096" in server.output()


def test_a_port_in_use_is_one_line_and_exit_code_4(tmp_path: Path) -> None:
    database = tmp_path / "t.db"
    env = tarmac_env(database_url=sqlite_url(database), config=EXAMPLE_CONFIG)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = run_tarmac("serve", "--port", str(port), env=env, cwd=tmp_path)

    assert result.returncode == EXIT_CANNOT_LISTEN == 4
    assert result.stderr == f"error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    assert "serving on" not in result.stdout
    assert result.stdout == ""


# --- 1 100 half-open connections against 1 024 open files (soak) -----------------------------

HALF_OPEN = 1100
OPEN_FILES = 1024
DEFAULT_HEADER_TIMEOUT = 10.0


async def healthz_once(port: int, seconds: float) -> bool:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), seconds)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(), seconds)
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
    return raw.startswith(b"HTTP/1.1 200 ")


@pytest.mark.soak
async def test_half_open_connections_past_the_open_file_limit_hold_it_only_their_timeout(
    tmp_path: Path,
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < HALF_OPEN + 100:  # this process holds the client ends
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * HALF_OPEN), hard))
    env = tarmac_env(database_url=sqlite_url(tmp_path / "t.db"), config=EXAMPLE_CONFIG)

    def systemd_default() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))

    with serve(env, tmp_path, preexec_fn=systemd_default) as server:
        port = port_of(server)
        before = server.output().count("\n")
        connections: list[asyncio.StreamWriter] = []

        async def half_open() -> None:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            connections.append(writer)

        try:
            await asyncio.gather(*(half_open() for _ in range(HALF_OPEN)))
            stopped = time.monotonic()
            descriptors = len(os.listdir(f"/proc/{server.process.pid}/fd"))
            held = not await healthz_once(port, 1.0)
            while not await healthz_once(port, 1.0):
                assert time.monotonic() - stopped < 3 * DEFAULT_HEADER_TIMEOUT, "never answered"
            answered_after = time.monotonic() - stopped
        finally:
            for writer in connections:
                writer.close()
        lines = server.output().splitlines()[before:]
        accept_lines = [line for line in lines if "accept" in line]

    record_figure("half-open connections", "opened", HALF_OPEN)
    record_figure("half-open connections", "server descriptors in use", descriptors)
    record_figure("half-open connections", "answered again after (s)", answered_after)
    record_figure("half-open connections", "log lines about accept()", len(accept_lines))
    record_figure("half-open connections", "log lines in all", len(lines))
    assert descriptors >= OPEN_FILES - 5  # the table really was full
    assert held  # and the service really did stop answering
    assert answered_after <= DEFAULT_HEADER_TIMEOUT + 2
    assert 1 <= len(accept_lines) <= 3, accept_lines
