"""What reaches the server below the API's own parsing: raw bytes on a loopback socket."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient


async def raw_exchange(client: TestClient[Any, Any], request: bytes) -> tuple[int, bytes]:
    """Send `request` as it is; the status and body of the answer."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize(
    "token",
    [b"\xff\xfe\xfd", b"tarmac_\xc3\x28abc", b"caf\xc3\xa9-token", b"tab\there"],
)
async def test_a_token_that_is_not_printable_ascii_is_unauthorized_as_json(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture, token: bytes
) -> None:
    request = (
        b"GET /api/releases/Backend/environments HTTP/1.1\r\nHost: tarmac\r\n"
        b"Authorization: Bearer " + token + b"\r\nConnection: close\r\n\r\n"
    )

    status, body = await raw_exchange(client, request)

    assert status == 401
    assert json.loads(body) == {"error": "Unauthorized"}
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
