"""Helpers for tests that run the real `tarmac serve` as a process and break what it talks to:
start it and wait for /healthz, call it, and a TCP proxy the test can cut and restore (the
database or GitHub going away and coming back)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import TEST_APP_ID, WEBHOOK_SECRET
from tests.fake_github import FakeGitHub
from tests.test_cli import TARMAC, tarmac_env

DEADLINE_SECONDS = 30


async def eventually(
    check: Callable[[], bool], what: str, deadline_seconds: float = DEADLINE_SECONDS
) -> None:
    deadline = time.monotonic() + deadline_seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def app_env(
    *,
    database_url: str,
    config: Path,
    fake_github: FakeGitHub,
    private_key: str,
    **settings: str | Path,
) -> dict[str, str]:
    """The environment of a `tarmac serve` with the test suite's GitHub App, talking to
    `fake_github`, plus any other `settings`."""
    return tarmac_env(
        database_url=database_url,
        config=config,
        github_app_id=str(TEST_APP_ID),
        github_private_key=private_key,
        github_webhook_secret=WEBHOOK_SECRET,
        github_api_url=fake_github.server_url,
        **settings,
    )


def spawn_server(env: dict[str, str], cwd: Path, port: int) -> subprocess.Popen[bytes]:
    with (cwd / f"serve-{port}-{time.monotonic_ns()}.log").open("wb") as log:
        return subprocess.Popen(
            [*TARMAC, "serve", "--port", str(port)], env=env, cwd=cwd, stdout=log, stderr=log
        )


async def start_server(env: dict[str, str], cwd: Path, port: int) -> subprocess.Popen[bytes]:
    process = await asyncio.to_thread(spawn_server, env, cwd, port)
    url = f"http://127.0.0.1:{port}/healthz"
    deadline = time.monotonic() + DEADLINE_SECONDS
    async with aiohttp.ClientSession() as http:
        while True:
            assert process.poll() is None, "tarmac serve exited at start"
            try:
                async with http.get(url) as reply:
                    if reply.status == 200:
                        return process
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, "tarmac serve did not start"
            await asyncio.sleep(0.05)


async def stop_server(process: subprocess.Popen[bytes], grace_seconds: float = 15) -> int:
    """SIGTERM, then SIGKILL if it does not exit in time; returns its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, grace_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 10)
    return process.returncode


def server_logs(cwd: Path) -> str:
    """Everything every `tarmac serve` started in `cwd` wrote, oldest first."""
    logs = sorted(cwd.glob("serve-*.log"), key=lambda p: p.stat().st_mtime)
    return "".join(p.read_text(errors="replace") for p in logs)


async def call(
    http: aiohttp.ClientSession, method: str, url: str, token: str, body: Any
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.request(method, url, json=body, headers=headers) as reply:
        return reply.status, await reply.json()


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target`, until `cut()`: every open connection is dropped
    and new ones are refused (nothing listens) until `restore()`. `stall()` keeps every
    connection open and takes new ones, but carries nothing either way until `flow()`: a
    server that is there and never answers."""

    def __init__(self, target_host: str, target_port: int, port: int) -> None:
        self.target = (target_host, target_port)
        self.port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    def stall(self) -> None:
        self._flowing.clear()

    def flow(self) -> None:
        self._flowing.set()

    @property
    def is_up(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await asyncio.sleep(0)

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        await self.cut()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self._writers.update((client_w, upstream_w))
        pumps = [
            asyncio.create_task(self._pump(client_r, upstream_w)),
            asyncio.create_task(self._pump(upstream_r, client_w)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for writer in (client_w, upstream_w):
                writer.transport.abort()
                self._writers.discard(writer)
            for pump in pumps:
                pump.cancel()
                self._tasks.discard(pump)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while chunk := await source.read(65536):
                await self._flowing.wait()
                sink.write(chunk)
                await sink.drain()
