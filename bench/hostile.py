"""Hostile clients: `/healthz` latency of a real `tarmac serve` idle, then while three clients
each send, back to back for BOMB_SECONDS, a 1 MB gzip body that inflates to 1 GiB.

The baseline is the same server idle, measured just before. For what the bombs did before
Tarmac refused compressed bodies, the floor (bench/floor.py, a bare aiohttp server with
aiohttp's defaults, which inflates a gzip body on the event loop as it arrives) takes the same
bombs in the same run. One probe at a time asks `/healthz` every PROBE_PAUSE_SECONDS on a
keep-alive connection; a probe that waits for an inflating body is counted at its full time.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from bench.common import Row, fresh_database, percentile, print_table, tarmac_server
from bench.intake import floor_server

SECTION = "hostile"
BOMB_INFLATED_BYTES = 1 << 30
BOMB_CLIENTS = 3
BOMB_SECONDS = 5.0
IDLE_PROBES = 200
PROBE_PAUSE_SECONDS = 0.01
PROBE_TIMEOUT_SECONDS = 120.0
TARGET_P99_MS = 100.0
WEBHOOK_PATH = "/api/github/webhooks"


def gzip_bomb(inflated_bytes: int = BOMB_INFLATED_BYTES) -> bytes:
    """A gzip member of `inflated_bytes` zeros: about 1 KiB of it per MiB inflated."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1 << 24)
    parts = [compressor.compress(chunk) for _ in range(inflated_bytes // len(chunk))]
    parts.append(compressor.flush())
    return b"".join(parts)


@dataclass
class Probes:
    latencies: list[float] = field(default_factory=list)

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000


async def probe_healthz(
    http: aiohttp.ClientSession, url: str, probes: Probes, until: asyncio.Event | int
) -> None:
    """`/healthz`, one request at a time, until `until` is set (or that many probes)."""
    while True:
        if isinstance(until, int) and len(probes.latencies) >= until:
            return
        if isinstance(until, asyncio.Event) and until.is_set():
            return
        started = time.perf_counter()
        async with http.get(url + "/healthz") as reply:
            await reply.read()
            if reply.status != 200:
                raise RuntimeError(f"/healthz answered {reply.status}")
        probes.latencies.append(time.perf_counter() - started)
        await asyncio.sleep(PROBE_PAUSE_SECONDS)


async def bomb_client(url: str, bomb: bytes, statuses: Counter[int], seconds: float) -> None:
    """Sends bombs one after another (each on a new connection) for `seconds`."""
    headers = {
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "bench-bomb",
        "X-Hub-Signature-256": "sha256=" + "0" * 64,
    }
    deadline = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_SECONDS)
    while time.monotonic() < deadline:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.post(url + WEBHOOK_PATH, data=bomb, headers=headers) as reply,
        ):
            await reply.read()
            statuses[reply.status] += 1


async def under_bombs(url: str, bomb: bytes) -> tuple[Probes, Counter[int]]:
    probes = Probes()
    statuses: Counter[int] = Counter()
    done = asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        prober = asyncio.create_task(probe_healthz(http, url, probes, done))
        try:
            await asyncio.gather(
                *(bomb_client(url, bomb, statuses, BOMB_SECONDS) for _ in range(BOMB_CLIENTS))
            )
        finally:
            done.set()
            await prober
    return probes, statuses


async def idle(url: str) -> Probes:
    probes = Probes()
    async with aiohttp.ClientSession() as http:
        await probe_healthz(http, url, probes, IDLE_PROBES)
    return probes


def _statuses(statuses: Counter[int]) -> str:
    return ", ".join(f"{count} x {status}" for status, count in sorted(statuses.items()))


async def run() -> list[Row]:
    started = time.monotonic()
    bomb = await asyncio.to_thread(gzip_bomb)
    made = f"{len(bomb) / 1e6:.2f} MB inflating to {BOMB_INFLATED_BYTES >> 20} MiB"
    print(f"{SECTION}: bomb of {made} made in {time.monotonic() - started:.1f} s", flush=True)
    async with (
        fresh_database("sqlite", "hostile") as database_url,
        tarmac_server(database_url) as server,
    ):
        quiet = await idle(server.url)
        bombed, statuses = await under_bombs(server.url, bomb)
    async with floor_server("bench-secret") as (floor_url, _pid):
        floor_quiet = await idle(floor_url)
        floor_bombed, floor_statuses = await under_bombs(floor_url, bomb)
    refused = set(statuses) == {415}
    bombs = f"{BOMB_CLIENTS} clients for {BOMB_SECONDS:.0f} s, bombs of {made}"
    return [
        Row(SECTION, "/healthz idle: p50", quiet.p(50), "ms", "", None, "baseline"),
        Row(SECTION, "/healthz idle: p99", quiet.p(99), "ms", "", None, "baseline"),
        Row(SECTION, "/healthz under bombs: p50", bombed.p(50), "ms", "", None, bombs),
        Row(
            SECTION,
            "/healthz under bombs: p99",
            bombed.p(99),
            "ms",
            f"≤ {TARGET_P99_MS:.0f} ms",
            bombed.p(99) <= TARGET_P99_MS,
            f"{len(bombed.latencies)} probes; idle p99 {quiet.p(99):.1f} ms",
        ),
        Row(
            SECTION,
            "bombs refused with 415",
            sum(statuses.values()),
            "bombs",
            "all 415",
            refused,
            _statuses(statuses),
        ),
        Row(
            SECTION,
            "floor (aiohttp defaults) /healthz under bombs: p99",
            floor_bombed.p(99),
            "ms",
            "",
            None,
            f"idle p99 {floor_quiet.p(99):.1f} ms; max {floor_bombed.p(100):.0f} ms; "
            f"{len(floor_bombed.latencies)} probes; bombs: {_statuses(floor_statuses)}",
        ),
    ]


if __name__ == "__main__":
    print_table(asyncio.run(run()))
