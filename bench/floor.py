"""The floors: the least any webhook receiver must do. A bare aiohttp server that reads the body,
checks its HMAC-SHA256 signature and answers 202 (401 when the signature does not hold).

With `--durable FILE`, the least a receiver that answers only once a delivery is stored must do
(as Tarmac does): each verified delivery's id, event and body are appended to a SQLite table
(WAL, synchronous=FULL, Tarmac's settings) in group commits, and the answer leaves after the
commit. Nothing is decoded, handled or logged.

With `--record-only` besides, the least a receiver that decides a delivery from its payload and
records only that it came must do (as Tarmac does with a delivery no handler acts on): the body
is decoded (orjson, as Tarmac decodes it) and only the id and event are stored, under a unique
key on the id (the key that turns a redelivery away). Nothing is decided or logged.

`python -m bench.floor --port P [--durable FILE [--record-only]]` with the secret in
TARMAC_GITHUB_WEBHOOK_SECRET.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import sqlite3
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
from aiohttp import web

PATH = "/api/github/webhooks"
MAX_BATCH = 128  # as Tarmac's intake


@dataclass(frozen=True)
class _Store:
    create: str
    insert: str
    columns: int  # how many of (delivery id, event, body) it stores


_WHOLE = _Store(
    "CREATE TABLE IF NOT EXISTS inbox (id INTEGER PRIMARY KEY, delivery_id TEXT, event TEXT, "
    "body BLOB)",
    "INSERT INTO inbox (delivery_id, event, body) VALUES (?, ?, ?)",
    3,
)
_RECORD_ONLY = _Store(
    "CREATE TABLE IF NOT EXISTS deliveries (delivery_id TEXT PRIMARY KEY, event TEXT)",
    "INSERT OR IGNORE INTO deliveries (delivery_id, event) VALUES (?, ?)",
    2,
)


class DurableLog:
    """Verified deliveries appended in group commits: `append` returns once committed. With
    `record_only`, only each one's id and event are stored."""

    def __init__(self, path: str, *, record_only: bool = False) -> None:
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._store = _RECORD_ONLY if record_only else _WHOLE
        self._db.execute(self._store.create)
        self._queue: deque[tuple[tuple[str, str, bytes], asyncio.Future[None]]] = deque()
        self._queued = asyncio.Event()

    async def append(self, delivery_id: str, event: str, body: bytes) -> None:
        committed = asyncio.get_running_loop().create_future()
        self._queue.append(((delivery_id, event, body), committed))
        self._queued.set()
        await committed

    async def run(self) -> None:
        while True:
            if not self._queue:
                self._queued.clear()
                await self._queued.wait()
                continue
            batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
            self._db.execute("BEGIN IMMEDIATE")
            columns = self._store.columns
            self._db.executemany(self._store.insert, [row[:columns] for row, _ in batch])
            self._db.execute("COMMIT")
            for _, committed in batch:
                committed.set_result(None)
            await asyncio.sleep(0)  # let the requests that queued meanwhile in


def create_app(
    secret: bytes, durable_path: str | None = None, *, record_only: bool = False
) -> web.Application:
    log = None if durable_path is None else DurableLog(durable_path, record_only=record_only)

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        given = request.headers.get("X-Hub-Signature-256", "")
        if not hmac.compare_digest(expected, given):
            return web.Response(status=401)
        if record_only and not isinstance(orjson.loads(body), dict):
            return web.Response(status=400)
        if log is not None:
            headers = request.headers
            await log.append(headers["X-GitHub-Delivery"], headers["X-GitHub-Event"], body)
        return web.Response(status=202)

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def writer(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(log.run()) if log is not None else None
        yield
        if task is not None:
            task.cancel()

    app = web.Application()
    app.router.add_post(PATH, receive)
    app.router.add_get("/healthz", healthz)
    app.cleanup_ctx.append(writer)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--durable", metavar="FILE", help="store each delivery in this SQLite file")
    parser.add_argument(
        "--record-only", action="store_true", help="decode each body; store only id and event"
    )
    args = parser.parse_args()
    if args.record_only and args.durable is None:
        parser.error("--record-only needs --durable")
    secret = os.environ["TARMAC_GITHUB_WEBHOOK_SECRET"].encode()
    app = create_app(secret, args.durable, record_only=args.record_only)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
