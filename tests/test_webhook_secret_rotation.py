"""Rotating the webhook secret without refusing GitHub's deliveries: while
`TARMAC_GITHUB_WEBHOOK_SECRET_PREVIOUS` is set, a delivery signed with it is accepted as well as
one signed with the current secret; any other signature is refused."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from api.app import create_app
from bot.settings import Settings
from bot.storage.db import Database
from bot.storage.models import WebhookDelivery
from tests.conftest import WEBHOOK_SECRET, TestClock, Webhooks, github_payload
from tests.leak_check import register_secret
from tests.openapi_conformance import OpenApiConformance

NEW_SECRET = register_secret("tarmac-test-rotated-secret-9e41d2")
OTHER_SECRET = "tarmac-test-someone-elses-secret-07aa"
INVALID_SIGNATURE = {"error": "Invalid signature"}


async def app_webhooks(
    aiohttp_client: Any,
    settings: Settings,
    clock: TestClock,
    conformance: OpenApiConformance,
    *,
    current: str,
    previous: str | None,
) -> Webhooks:
    rotated = settings.model_copy(
        update={
            "github_webhook_secret": SecretStr(current),
            "github_webhook_secret_previous": SecretStr(previous) if previous else None,
        }
    )
    client = await aiohttp_client(create_app(rotated, clock=clock, background_work=False))
    return Webhooks(client, conformance)


@pytest.fixture
async def rotating(
    aiohttp_client: Any,
    github_app_settings: Settings,
    clock: TestClock,
    conformance: OpenApiConformance,
) -> Webhooks:
    """The app mid-rotation: NEW_SECRET is current, the suite's usual secret the previous one."""
    return await app_webhooks(
        aiohttp_client,
        github_app_settings,
        clock,
        conformance,
        current=NEW_SECRET,
        previous=WEBHOOK_SECRET,
    )


async def recorded_deliveries(db: Database) -> int:
    async with db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(WebhookDelivery)) or 0)


async def ping(webhooks: Webhooks, secret: str) -> tuple[int, Any]:
    reply = await webhooks("ping", github_payload("ping", "with-app_id"), secret=secret)
    return reply.status, reply.body


async def test_during_a_rotation_both_secrets_are_accepted(
    rotating: Webhooks, db: Database
) -> None:
    assert await ping(rotating, NEW_SECRET) == (200, {"status": "pong"})
    assert await ping(rotating, WEBHOOK_SECRET) == (200, {"status": "pong"})
    assert await recorded_deliveries(db) == 2


async def test_during_a_rotation_a_third_secret_is_refused(
    rotating: Webhooks, db: Database
) -> None:
    assert await ping(rotating, OTHER_SECRET) == (401, INVALID_SIGNATURE)
    assert await recorded_deliveries(db) == 0


async def test_a_body_signed_with_the_previous_secret_is_checked_like_any_other(
    rotating: Webhooks,
) -> None:
    body = b"{not json"
    headers = rotating.github_headers("ping", body, str(uuid.uuid4()), WEBHOOK_SECRET)

    reply = await rotating.post_raw(body, headers)

    # Past the signature (the previous secret's), the body is not JSON: 400, not 401.
    assert (reply.status, reply.body) == (400, {"error": "Invalid JSON body"})


async def test_without_a_previous_secret_only_the_current_one_is_accepted(
    aiohttp_client: Any,
    github_app_settings: Settings,
    clock: TestClock,
    conformance: OpenApiConformance,
    db: Database,
) -> None:
    after_rotation = await app_webhooks(
        aiohttp_client, github_app_settings, clock, conformance, current=NEW_SECRET, previous=None
    )

    assert await ping(after_rotation, NEW_SECRET) == (200, {"status": "pong"})
    assert await ping(after_rotation, WEBHOOK_SECRET) == (401, INVALID_SIGNATURE)
    assert await recorded_deliveries(db) == 1


def test_the_previous_secret_is_read_from_the_environment_and_never_shown(
    monkeypatch: pytest.MonkeyPatch, github_private_key: str
) -> None:
    monkeypatch.setenv("TARMAC_GITHUB_APP_ID", "1")
    monkeypatch.setenv("TARMAC_GITHUB_PRIVATE_KEY", github_private_key)
    monkeypatch.setenv("TARMAC_GITHUB_WEBHOOK_SECRET", NEW_SECRET)
    monkeypatch.setenv("TARMAC_GITHUB_WEBHOOK_SECRET_PREVIOUS", WEBHOOK_SECRET)

    settings = Settings()
    app = settings.github_app()

    assert app is not None
    assert app.webhook_secrets == (NEW_SECRET, WEBHOOK_SECRET)
    shown = repr(settings) + str(settings) + repr(app) + json.dumps(settings.model_dump_json())
    assert NEW_SECRET not in shown
    assert WEBHOOK_SECRET not in shown


def test_an_empty_previous_secret_means_none(
    monkeypatch: pytest.MonkeyPatch, github_private_key: str
) -> None:
    monkeypatch.setenv("TARMAC_GITHUB_APP_ID", "1")
    monkeypatch.setenv("TARMAC_GITHUB_PRIVATE_KEY", github_private_key)
    monkeypatch.setenv("TARMAC_GITHUB_WEBHOOK_SECRET", NEW_SECRET)
    monkeypatch.setenv("TARMAC_GITHUB_WEBHOOK_SECRET_PREVIOUS", "")

    app = Settings().github_app()

    assert app is not None
    assert app.webhook_secrets == (NEW_SECRET,)
