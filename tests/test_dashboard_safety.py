"""The dashboard's safety over plain HTTP against the real app: a token's scope hides other
projects, a forged POST (no or another session's CSRF token) changes nothing, a double click
deploys once, every value is escaped, and the headers and cookie are as the README says."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import ClientSession, CookieJar
from aiohttp.test_utils import TestClient

from api.dashboard.security import CONTENT_SECURITY_POLICY
from api.keys import SERVICE
from tests.conftest import SHA_A, SHA_B, Api, make_token

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
