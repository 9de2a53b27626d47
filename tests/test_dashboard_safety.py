"""The dashboard's safety over plain HTTP against the real app: a token's scope hides other
projects, a forged POST (no or another session's CSRF token) changes nothing, a double click
deploys once, every value is escaped, the headers and cookie are as the README says, and an
open page's live stream ends with its session."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import ClientResponse, ClientSession, CookieJar
from aiohttp.test_utils import TestClient

from api.dashboard.live import SESSION_CHECK_SECONDS, SIGNED_OUT
from api.dashboard.security import CONTENT_SECURITY_POLICY
from api.keys import SERVICE
from bot.storage import tokens
from bot.storage.db import Database
from tests.conftest import SHA_A, SHA_B, Api, TestClock, make_token

FIELD = re.compile(r'name="(csrf|idempotency_key)" value="([^"]+)"')


async def sign_in(client: TestClient[Any, Any], token: str) -> ClientSession:
    """A browser-like session of its own (its own cookie jar), signed in with `token`."""
    session = ClientSession(base_url=str(client.make_url("/")), cookie_jar=CookieJar(unsafe=True))
    async with session.get("/sign-in") as answer:
        nonce = FIELD.search(await answer.text())
    assert nonce is not None
    async with session.post(
        "/sign-in", data={"csrf": nonce.group(2), "token": token}, allow_redirects=False
    ) as answer:
        assert answer.status == 303, await answer.text()
        cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # TARMAC_PUBLIC_URL is not https here
    return session


async def form_fields(session: ClientSession, path: str) -> dict[str, str]:
    async with session.get(path) as answer:
        assert answer.status == 200
        return dict(FIELD.findall(await answer.text()))


async def deployments_of(api: Api, environment: str) -> list[Any]:
    reply = await api.deployments(environment)
    return list(reply.body["items"] if isinstance(reply.body, dict) else reply.body)


async def test_a_token_scoped_to_another_project_sees_and_does_nothing_here(
    client: TestClient[Any, Any], api: Api
) -> None:
    await api.ship("staging", "v1.0.0-rc1", SHA_A)
    await api.create_rc("v1.1.0-rc1", SHA_B)
    db = client.app[SERVICE].db
    frontend_only = await make_token(db, "frontend-only", projects=["Frontend"])
    session = await sign_in(client, frontend_only)
    async with session:
        async with session.get("/") as answer:
            overview = await answer.text()
        assert "Frontend" in overview
        assert "Backend" not in overview
        assert "v1.0.0-rc1" not in overview
        for path in (
            "/projects/Backend/environments/staging",
            "/projects/Backend/candidates/v1.1.0-rc1",
        ):
            async with session.get(path) as answer:
                assert answer.status == 404
                assert "v1.1.0-rc1" not in await answer.text()
        # Its own session's CSRF token, on another project's form: refused.
        fields = await form_fields(session, "/projects/Frontend/environments/production")
        async with session.post(
            "/projects/Backend/environments/staging/deploy",
            data={**fields, "version": "v1.1.0-rc1"},
            allow_redirects=False,
        ) as answer:
            assert answer.status == 403
    assert len(await deployments_of(api, "staging")) == 1


async def test_a_forged_post_is_refused_and_a_double_click_deploys_once(
    client: TestClient[Any, Any], api: Api
) -> None:
    await api.ship("staging", "v1.0.0-rc1", SHA_A)
    await api.create_rc("v1.1.0-rc1", SHA_B)
    db = client.app[SERVICE].db
    person = await sign_in(client, await make_token(db, "person", actor="p@example.com"))
    other = await sign_in(client, await make_token(db, "other"))
    async with person, other:
        fields = await form_fields(person, "/projects/Backend/candidates/v1.1.0-rc1")
        path = "/projects/Backend/environments/staging/deploy"
        form = {**fields, "version": "v1.1.0-rc1", "back": "candidate"}
        no_csrf = {k: v for k, v in form.items() if k != "csrf"}
        for forged, by in ((no_csrf, person), ({**form, "csrf": "x" * 43}, person), (form, other)):
            async with by.post(path, data=forged, allow_redirects=False) as answer:
                assert answer.status == 403
        assert len(await deployments_of(api, "staging")) == 1

        for _ in range(2):  # the same rendered form, sent twice
            async with person.post(path, data=form, allow_redirects=False) as answer:
                assert answer.status == 303
                assert answer.headers["Location"] == "/projects/Backend/candidates/v1.1.0-rc1"
        deployed = await deployments_of(api, "staging")
        assert len(deployed) == 2
        assert deployed[0]["actor"] == "p@example.com"


async def test_pages_escape_what_they_show_and_carry_the_security_headers(
    client: TestClient[Any, Any], api: Api
) -> None:
    await api.ship("staging", "v1.0.0-rc1", SHA_A)
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    frozen = await api.put("/api/releases/Backend/environments/staging/freeze", {"reason": hostile})
    assert frozen.status == 200
    db = client.app[SERVICE].db
    session = await sign_in(client, await make_token(db, "person"))
    async with session:
        for path in ("/", "/projects/Backend/environments/staging"):
            async with session.get(path) as answer:
                page = await answer.text()
                assert answer.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
                assert answer.headers["X-Frame-Options"] == "DENY"
                assert answer.headers["Cache-Control"] == "no-store"
            assert hostile not in page
            assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
            assert "<script>" not in page.replace('<script src="/dashboard/static/', "")
        # Signed out, the cookie no longer opens anything.
        fields = await form_fields(session, "/")
        async with session.post(
            "/sign-out", data={"csrf": fields["csrf"]}, allow_redirects=False
        ) as answer:
            assert answer.status == 303
        async with session.get("/", allow_redirects=False) as answer:
            assert answer.status == 303
            assert answer.headers["Location"] == "/sign-in"
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY


async def next_event(stream: ClientResponse) -> str | None:
    """The name of the stream's next event (comments and `retry:` skipped); None at its end."""
    name = None
    while True:
        line = await stream.content.readline()
        if not line:
            return None
        text = line.decode().rstrip("\n")
        if text.startswith("event: "):
            name = text.removeprefix("event: ")
        elif text == "" and name is not None:
            return name


async def end_by_signing_out(browser: ClientSession, db: Database, clock: TestClock) -> None:
    fields = await form_fields(browser, "/")
    async with browser.post("/sign-out", data={"csrf": fields["csrf"]}, allow_redirects=False):
        pass


async def end_by_revoking_the_token(browser: ClientSession, db: Database, clock: TestClock) -> None:
    async with db.write() as session:
        assert await tokens.revoke_token(session, "person")


async def end_by_expiring(browser: ClientSession, db: Database, clock: TestClock) -> None:
    clock.advance(hours=12)


@pytest.mark.parametrize(
    "end",
    [end_by_signing_out, end_by_revoking_the_token, end_by_expiring],
    ids=lambda f: f.__name__,
)
async def test_an_open_pages_stream_ends_with_its_session(
    client: TestClient[Any, Any],
    api: Api,
    clock: TestClock,
    end: Callable[[ClientSession, Database, TestClock], Awaitable[None]],
) -> None:
    """Signed out in another tab, the token revoked, the session expired: the stream that was
    open says `signed-out` within a session check and ends (no more changes reach the page);
    a new one, without a session, says it at once."""
    await api.ship("staging", "v1.0.0-rc1", SHA_A)
    db = client.app[SERVICE].db
    async with await sign_in(client, await make_token(db, "person")) as browser:
        async with browser.get("/dashboard/events?since=stale") as stream:
            assert stream.status == 200
            assert await next_event(stream) == "change"  # opened on a stale mark
            await end(browser, db, clock)
            async with asyncio.timeout(SESSION_CHECK_SECONDS + 5):
                assert await next_event(stream) == "signed-out"
                assert await next_event(stream) is None  # the stream ended
        async with browser.get("/dashboard/events?since=stale") as stream:
            assert stream.status == 200
            assert stream.headers["Content-Type"] == "text/event-stream"
            assert await stream.read() == SIGNED_OUT


async def test_a_stream_checks_its_session_before_telling_a_change(
    client: TestClient[Any, Any], api: Api
) -> None:
    """A change right after signing out is not told to the page: the stream checks the
    session first, and says `signed-out` instead."""
    db = client.app[SERVICE].db
    async with await sign_in(client, await make_token(db, "person")) as browser:
        fields = await form_fields(browser, "/")
        async with browser.get("/dashboard/events?since=stale") as stream:
            assert await next_event(stream) == "change"
            async with browser.post(
                "/sign-out", data={"csrf": fields["csrf"]}, allow_redirects=False
            ) as answer:
                assert answer.status == 303
            await api.ship("staging", "v1.0.0-rc1", SHA_A)
            async with asyncio.timeout(SESSION_CHECK_SECONDS + 5):
                assert await next_event(stream) == "signed-out"
