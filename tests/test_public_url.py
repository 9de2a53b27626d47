"""TARMAC_PUBLIC_URL: the base of the absolute URLs Tarmac writes (the Link headers of lists).
Without it the links are relative; a request's Host header (which the client chooses, and a
proxy may pass on as it came) never reaches one."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from api.app import create_app
from bot.settings import Settings
from bot.storage.db import Database
from tests.conftest import Api, TestClock, make_token
from tests.openapi_conformance import OpenApiConformance

RELEASES = "/api/releases/Backend/releases"
DEPLOYMENTS = "/api/releases/Backend/environments/staging/deployments"
FORGED = [
    {"Host": "evil.example"},
    {"Host": "evil.example:8443", "X-Forwarded-Host": "evil.example", "Forwarded": "host=evil"},
]


async def _api(
    aiohttp_client: Any,
    settings: Settings,
    clock: TestClock,
    db: Database,
    conformance: OpenApiConformance,
    **changes: Any,
) -> Api:
    configured = Settings(database_url=settings.database_url, config=settings.config, **changes)
    app = create_app(configured, clock=clock, background_work=False)
    api = Api(await aiohttp_client(app), conformance)
    api.token = await make_token(db)
    for number in range(1, 4):
        assert (await api.create_rc(f"v{number}-rc1")).status == 201
        assert (await api.deploy("staging", f"v{number}-rc1")).status == 201
    return api


def _links(header: str) -> dict[str, str]:
    links = {}
    for part in header.split(", "):
        target, rel = part.split("; ")
        links[rel.removeprefix('rel="').removesuffix('"')] = target[1:-1]
    return links


@pytest.mark.parametrize("forged", FORGED, ids=["host", "forwarded"])
async def test_links_are_under_the_public_url_whatever_the_host_header_says(
    aiohttp_client: Any,
    settings: Settings,
    clock: TestClock,
    db: Database,
    conformance: OpenApiConformance,
    forged: dict[str, str],
) -> None:
    api = await _api(
        aiohttp_client, settings, clock, db, conformance, public_url="https://tarmac.example/ci/"
    )

    for path in (RELEASES, DEPLOYMENTS):
        reply = await api.get(path, params={"per_page": "1", "page": "2"}, headers=forged)

        assert reply.status == 200
        assert "evil" not in reply.headers["Link"]
        base = f"https://tarmac.example/ci{path}"
        assert _links(reply.headers["Link"]) == {
            "first": f"{base}?per_page=1&page=1",
            "prev": f"{base}?per_page=1&page=1",
            "next": f"{base}?per_page=1&page=3",
        }


@pytest.mark.parametrize("forged", FORGED, ids=["host", "forwarded"])
async def test_without_a_public_url_links_are_relative(
    aiohttp_client: Any,
    settings: Settings,
    clock: TestClock,
    db: Database,
    conformance: OpenApiConformance,
    forged: dict[str, str],
) -> None:
    api = await _api(aiohttp_client, settings, clock, db, conformance)

    reply = await api.get(RELEASES, params={"per_page": "2"}, headers=forged)

    assert reply.status == 200
    assert _links(reply.headers["Link"]) == {"next": f"{RELEASES}?per_page=2&page=2"}


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("https://tarmac.example.com", "https://tarmac.example.com"),
        ("https://tarmac.example.com/", "https://tarmac.example.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("https://example.com/tools/tarmac/", "https://example.com/tools/tarmac"),
    ],
)
def test_a_public_url_is_kept_without_its_trailing_slash(value: str, stored: str) -> None:
    assert Settings(public_url=value).public_url == stored


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("tarmac.example.com", "must be an http:// or https:// URL"),
        ("ftp://tarmac.example.com", "must be an http:// or https:// URL"),
        ("https://", "must be an http:// or https:// URL"),
        ("https://tarmac.example.com:port", "must be an http:// or https:// URL"),
        ("", "must be a URL without spaces"),
        ("https://tarmac.example.com/a b", "must be a URL without spaces"),
        ("https://tarmac.example.com/>; rel=x", "must be a URL without spaces"),
        ("https://tarmac.example.com/\r\nSet-Cookie: x", "must be a URL without spaces"),
        ("https://ops:s3cret@tarmac.example.com", "must not hold a user name or password"),
        ("https://tarmac.example.com/?page=1", "must have no query and no fragment"),
        ("https://tarmac.example.com/#top", "must have no query and no fragment"),
    ],
)
def test_a_public_url_that_cannot_be_one_is_refused(value: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(public_url=value)
    [error] = caught.value.errors()
    assert error["loc"] == ("public_url",)
    assert message in error["msg"]
