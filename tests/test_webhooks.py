"""The webhook endpoint as GitHub uses it: GitHub's own example payloads, re-addressed to the
test's installation and repositories, signed with a real HMAC-SHA256, posted to the real app;
what they leave in the real database is read back."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import logging
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient
from gidgethub.sansio import validate_event
from pydantic import SecretStr
from sqlalchemy import select

from api.app import create_app
from api.webhooks import WEBHOOK_PATH
from bot.settings import GitHubAppMisconfigured, Settings
from bot.storage.db import Database
from bot.storage.installations import installation_for_repo
from bot.storage.models import Installation, InstallationRepository, WebhookDelivery
from tests.conftest import (
    TEST_APP_ID,
    WEBHOOK_SECRET,
    Api,
    TestClock,
    Webhooks,
    github_payload,
    sign_webhook,
)
from tests.fake_github import FakeGitHub
from tests.openapi_conformance import OpenApiConformance
from tests.test_cli import run_tarmac, tarmac_env

INSTALLATION_ID = 31_000_001
OTHER_INSTALLATION_ID = 31_000_002
GITHUB_VECTOR_SECRET = "It's a Secret to Everybody"
GITHUB_VECTOR_BODY = b"Hello, World!"
GITHUB_VECTOR_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


# --- GitHub's payloads, re-addressed ------------------------------------------------------


def _repository(template: dict[str, Any], full_name: str) -> dict[str, Any]:
    repository = copy.deepcopy(template)
    repository["full_name"] = full_name
    repository["name"] = full_name.split("/")[1]
    return repository


def installation_event(
    action: str,
    *,
    installation_id: int = INSTALLATION_ID,
    account: str = "Acme",
    repos: list[str] | None = None,
) -> dict[str, Any]:
    """GitHub's `installation` example for `action`, for our installation and repositories."""
    payload = github_payload("installation", action)
    payload["installation"]["id"] = installation_id
    payload["installation"]["account"]["login"] = account
    if repos is not None:
        template = github_payload("installation", "created")["repositories"][0]
        payload["repositories"] = [_repository(template, name) for name in repos]
    return payload


def installation_repositories_event(
    action: str,
    *,
    installation_id: int = INSTALLATION_ID,
    account: str = "Acme",
    repos: list[str],
) -> dict[str, Any]:
    payload = github_payload("installation_repositories", action)
    payload["installation"]["id"] = installation_id
    payload["installation"]["account"]["login"] = account
    key = "repositories_added" if action == "added" else "repositories_removed"
    template = payload[key][0]
    payload[key] = [_repository(template, name) for name in repos]
    return payload


# --- reading the database back -------------------------------------------------------------


async def deliveries(db: Database) -> list[WebhookDelivery]:
    async with db.read() as session:
        return list((await session.execute(select(WebhookDelivery))).scalars())


async def installations(db: Database) -> dict[int, Installation]:
    async with db.read() as session:
        rows = (await session.execute(select(Installation))).scalars()
        return {row.id: row for row in rows}


async def repositories(db: Database) -> dict[str, int]:
    async with db.read() as session:
        rows = (await session.execute(select(InstallationRepository))).scalars()
        return {row.repo: row.installation_id for row in rows}


async def served_by(db: Database, repo: str) -> int | None:
    async with db.read() as session:
        return await installation_for_repo(session, repo)


# --- the signature ------------------------------------------------------------------------


def test_the_signature_is_githubs_hmac_sha256_test_vector() -> None:
    signature = sign_webhook(GITHUB_VECTOR_BODY, GITHUB_VECTOR_SECRET)

    assert signature == GITHUB_VECTOR_SIGNATURE
    validate_event(GITHUB_VECTOR_BODY, signature=signature, secret=GITHUB_VECTOR_SECRET)


@pytest.fixture
async def vector_client(
    aiohttp_client: Any, github_app_settings: Settings, clock: TestClock
) -> TestClient[Any, Any]:
    """The app whose webhook secret is the one of GitHub's test vector."""
    settings = github_app_settings.model_copy(
        update={"github_webhook_secret": SecretStr(GITHUB_VECTOR_SECRET)}
    )
    test_client: TestClient[Any, Any] = await aiohttp_client(
        create_app(settings, clock=clock, background_work=False)
    )
    return test_client


async def test_the_endpoint_accepts_githubs_test_vector_signature(
    vector_client: TestClient[Any, Any], conformance: OpenApiConformance, db: Database
) -> None:
    sender = Webhooks(vector_client, conformance, secret=GITHUB_VECTOR_SECRET)
    headers = sender.github_headers("ping", GITHUB_VECTOR_BODY)
    headers["X-Hub-Signature-256"] = GITHUB_VECTOR_SIGNATURE

    reply = await sender.post_raw(GITHUB_VECTOR_BODY, headers)
    one_digit_off = await sender.post_raw(
        GITHUB_VECTOR_BODY, {**headers, "X-Hub-Signature-256": GITHUB_VECTOR_SIGNATURE[:-1] + "f"}
    )

    # Past the signature, the body is not JSON: 400, not 401.
    assert (reply.status, reply.body) == (400, {"error": "Invalid JSON body"})
    assert (one_digit_off.status, one_digit_off.body) == (401, {"error": "Invalid signature"})
    assert await deliveries(db) == []


# --- ping, unknown events, malformed deliveries ---------------------------------------------


async def test_ping_answers_pong_and_is_recorded(webhook: Webhooks, db: Database) -> None:
    delivery_id = str(uuid.uuid4())

    reply = await webhook("ping", github_payload("ping", "with-app_id"), delivery_id)

    assert (reply.status, reply.body) == (200, {"status": "pong"})
    [row] = await deliveries(db)
    assert (row.delivery_id, row.event, row.action, row.outcome) == (
        delivery_id,
        "ping",
        None,
        "pong",
    )


async def test_a_hook_set_to_send_form_encoded_bodies_works_too(
    webhook: Webhooks, db: Database
) -> None:
    # A webhook's content type can be set to application/x-www-form-urlencoded: the JSON is
    # then the `payload` field, and the signature covers the encoded body.
    body = urlencode({"payload": json.dumps(github_payload("ping"))}).encode()
    headers = webhook.github_headers("ping", body)
    headers["Content-Type"] = "application/x-www-form-urlencoded"

    reply = await webhook.post_raw(body, headers)

    assert (reply.status, reply.body) == (200, {"status": "pong"})
    assert [row.outcome for row in await deliveries(db)] == ["pong"]


@pytest.mark.parametrize(
    ("field", "raw_value", "content_type"),
    [
        # orjson decodes bodies first; what it refuses, json.loads (GitHub's rules) decides.
        ("hook_id", b"1180591620717411303424", "application/json"),  # 2**70
        ("zen", b"NaN", "application/json"),
        # The body holds the text \u0000 (an escaped backslash), not a NUL.
        ("zen", b'"a\\\\u0000b"', "application/json"),
        # Other charsets are left to gidgethub.
        ("zen", b'"Keep it logically awesome."', "application/json; charset=ISO-8859-1"),
    ],
)
async def test_json_the_fast_decoder_refuses_is_decoded_as_before(
    webhook: Webhooks, db: Database, field: str, raw_value: bytes, content_type: str
) -> None:
    payload = github_payload("ping")
    marker = "@@VALUE@@"
    payload[field] = marker
    body = json.dumps(payload).encode().replace(f'"{marker}"'.encode(), raw_value)
    headers = webhook.github_headers("ping", body)
    headers["Content-Type"] = content_type

    reply = await webhook.post_raw(body, headers)

    assert (reply.status, reply.body) == (200, {"status": "pong"})
    assert [row.outcome for row in await deliveries(db)] == ["pong"]


async def test_an_event_tarmac_does_not_handle_is_ignored_with_2xx_and_recorded(
    webhook: Webhooks, db: Database
) -> None:
    reply = await webhook("release", github_payload("release", "published"))

    assert (reply.status, reply.body) == (202, {"status": "ignored", "outcome": "ignored"})
    [row] = await deliveries(db)
    assert (row.event, row.action, row.outcome) == ("release", "published", "ignored")


async def test_an_action_tarmac_does_not_handle_is_ignored_and_changes_nothing(
    webhook: Webhooks, db: Database
) -> None:
    payload = installation_event("created", repos=["acme/backend"])
    payload["action"] = "future_action"  # GitHub keeps adding actions

    reply = await webhook("installation", payload)

    assert (reply.status, reply.body) == (202, {"status": "ignored", "outcome": "ignored"})
    [row] = await deliveries(db)
    assert (row.event, row.action, row.outcome) == ("installation", "future_action", "ignored")
    assert await installations(db) == {}
    assert await repositories(db) == {}


def _bad_signatures(body: bytes) -> dict[str, dict[str, str | None]]:
    """Signature headers to send instead of the right ones (None: header left out)."""
    sha1 = "sha1=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha1).hexdigest()
    right = sign_webhook(body)
    return {
        "unsigned": {"X-Hub-Signature-256": None, "X-Hub-Signature": None},
        "wrong secret": {"X-Hub-Signature-256": sign_webhook(body, "not-the-secret")},
        "other body": {"X-Hub-Signature-256": sign_webhook(body + b" ")},
        "sha1 only": {"X-Hub-Signature-256": None, "X-Hub-Signature": sha1},
        "sha1 in the sha256 header": {"X-Hub-Signature-256": sha1},
        "no prefix": {"X-Hub-Signature-256": right.removeprefix("sha256=")},
        "empty": {"X-Hub-Signature-256": ""},
        "truncated": {"X-Hub-Signature-256": right[:-2]},
        "upper-case hex": {"X-Hub-Signature-256": "sha256=" + right[7:].upper()},
    }


async def test_a_delivery_without_the_right_signature_is_refused_and_leaves_no_trace(
    webhook: Webhooks, db: Database
) -> None:
    body = json.dumps(installation_event("created", repos=["acme/backend"])).encode()
    replies = {}
    for case, changed in _bad_signatures(body).items():
        headers: dict[str, str] = webhook.github_headers("installation", body)
        for name, value in changed.items():
            headers.pop(name, None)
            if value is not None:
                headers[name] = value
        reply = await webhook.post_raw(body, headers)
        replies[case] = (reply.status, reply.body)

    assert replies == dict.fromkeys(_bad_signatures(body), (401, {"error": "Invalid signature"}))
    assert await deliveries(db) == []
    assert await installations(db) == {}
    assert await repositories(db) == {}


MALFORMED = [
    ("not JSON", b"{not json", {}, "Invalid JSON body"),
    ("truncated JSON", b'{"action": "created"', {}, "Invalid JSON body"),
    ("not UTF-8", b'{"action": "\xff"}', {}, "Invalid JSON body"),
    ("a JSON array", b"[]", {}, "Request body must be a JSON object"),
    ("a JSON string", b'"ping"', {}, "Request body must be a JSON object"),
    ("empty", b"", {}, "Request body must be a JSON object"),
    (
        "plain text",
        b"{}",
        {"Content-Type": "text/plain"},
        "Content-Type must be application/json",
    ),
    (
        "no content type",
        b"{}",
        {"Content-Type": None},
        "Content-Type must be application/json",
    ),
    (
        "unknown charset",
        b"{}",
        {"Content-Type": "application/json; charset=no-such-charset"},
        "Content-Type must be application/json",
    ),
    ("no event", b"{}", {"X-GitHub-Event": None}, "Missing header 'X-GitHub-Event'"),
    ("no delivery", b"{}", {"X-GitHub-Delivery": None}, "Missing header 'X-GitHub-Delivery'"),
    ("empty delivery", b"{}", {"X-GitHub-Delivery": ""}, "Invalid header 'X-GitHub-Delivery'"),
    (
        "overlong delivery",
        b"{}",
        {"X-GitHub-Delivery": "d" * 101},
        "Invalid header 'X-GitHub-Delivery'",
    ),
    ("overlong event", b"{}", {"X-GitHub-Event": "e" * 101}, "Invalid header 'X-GitHub-Event'"),
]


async def test_a_signed_but_malformed_delivery_is_a_400_and_leaves_no_trace(
    webhook: Webhooks, db: Database
) -> None:
    replies = {}
    for case, body, changed, _ in MALFORMED:
        headers = webhook.github_headers("installation", body)
        for name, value in changed.items():
            headers.pop(name, None)
            if value is not None:
                headers[name] = value
        headers["X-Hub-Signature-256"] = sign_webhook(body)
        reply = await webhook.post_raw(body, headers)
        replies[case] = (reply.status, reply.body)

    assert replies == {case: (400, {"error": message}) for case, _, _, message in MALFORMED}
    assert await deliveries(db) == []


async def test_a_body_over_one_mib_is_refused_with_413(webhook: Webhooks, db: Database) -> None:
    payload = github_payload("ping")
    payload["padding"] = "x" * (1024 * 1024)

    reply = await webhook("ping", payload)

    assert (reply.status, reply.body) == (413, {"error": "Request body is larger than 1 MiB"})
    assert await deliveries(db) == []


# --- redeliveries ---------------------------------------------------------------------------


@pytest.mark.both_databases
async def test_a_redelivery_is_answered_2xx_and_has_no_second_effect(
    webhook: Webhooks, db: Database
) -> None:
    created = installation_event("created", repos=["acme/backend"])
    delivery_id = str(uuid.uuid4())
    first = await webhook("installation", created, delivery_id)
    deleted = await webhook("installation", installation_event("deleted", repos=["acme/backend"]))

    again = await webhook("installation", created, delivery_id)

    assert first.status == 202
    assert first.body["status"] == "accepted"
    assert deleted.status == 202
    # The same X-GitHub-Delivery: the installation deleted since is not brought back.
    assert (again.status, again.body) == (
        200,
        {"status": "duplicate", "outcome": first.body["outcome"]},
    )
    assert await installations(db) == {}
    assert await repositories(db) == {}
    assert len(await deliveries(db)) == 2


@pytest.mark.both_databases
async def test_identical_deliveries_arriving_together_take_effect_once(
    webhook: Webhooks, db: Database
) -> None:
    created = installation_event("created", repos=["acme/backend"])
    delivery_id = str(uuid.uuid4())

    replies = await asyncio.gather(
        *(webhook("installation", created, delivery_id) for _ in range(6))
    )

    statuses = sorted((reply.status, reply.body["status"]) for reply in replies)
    assert statuses == [(200, "duplicate")] * 5 + [(202, "accepted")]
    [row] = await deliveries(db)
    assert row.delivery_id == delivery_id
    assert row.outcome == next(r.body["outcome"] for r in replies if r.status == 202)


@pytest.mark.both_databases
async def test_different_deliveries_for_one_installation_at_once_all_succeed(
    webhook: Webhooks, db: Database
) -> None:
    payloads = [
        ("installation", installation_event("created", repos=["acme/backend"])),
        ("installation", installation_event("new_permissions_accepted", repos=["acme/backend"])),
        ("installation_repositories", installation_repositories_event("added", repos=["a/x"])),
        ("installation_repositories", installation_repositories_event("added", repos=["a/y"])),
    ]

    replies = await asyncio.gather(*(webhook(event, payload) for event, payload in payloads))

    assert [reply.status for reply in replies] == [202] * 4
    assert list(await installations(db)) == [INSTALLATION_ID]
    assert await repositories(db) == {
        "acme/backend": INSTALLATION_ID,
        "a/x": INSTALLATION_ID,
        "a/y": INSTALLATION_ID,
    }
    assert len(await deliveries(db)) == 4


# --- installation events --------------------------------------------------------------------


@pytest.mark.both_databases
async def test_installation_created_records_the_installation_and_its_repositories(
    webhook: Webhooks, db: Database, clock: TestClock
) -> None:
    payload = installation_event("created", account="Acme", repos=["Acme/Backend", "acme/monorepo"])

    reply = await webhook("installation", payload)

    assert (reply.status, reply.body) == (
        202,
        {
            "status": "accepted",
            "outcome": f"installation {INSTALLATION_ID} (Acme) created; 2 repositories",
        },
    )
    [installation] = (await installations(db)).values()
    assert (installation.id, installation.account, installation.suspended) == (
        INSTALLATION_ID,
        "Acme",
        False,
    )
    assert installation.updated_at == clock.now
    # Repository names are kept in lower case; lookups ignore case.
    assert await repositories(db) == {
        "acme/backend": INSTALLATION_ID,
        "acme/monorepo": INSTALLATION_ID,
    }
    assert await served_by(db, "ACME/backend") == INSTALLATION_ID
    assert await served_by(db, "acme/unknown") is None
    [row] = await deliveries(db)
    assert (row.event, row.action, row.outcome) == (
        "installation",
        "created",
        reply.body["outcome"],
    )


async def test_installation_created_with_requester_is_the_same(
    webhook: Webhooks, db: Database
) -> None:
    payload = github_payload("installation", "created.with-requester")
    payload["installation"]["id"] = INSTALLATION_ID

    reply = await webhook("installation", payload)

    assert reply.status == 202
    assert await repositories(db) == {"codertocat/hello-world": INSTALLATION_ID}


async def test_installation_deleted_forgets_it_and_its_repositories_only(
    webhook: Webhooks, db: Database
) -> None:
    await webhook("installation", installation_event("created", repos=["acme/backend", "acme/a"]))
    await webhook(
        "installation",
        installation_event(
            "created", installation_id=OTHER_INSTALLATION_ID, account="Other", repos=["other/b"]
        ),
    )

    reply = await webhook("installation", installation_event("deleted", repos=["acme/backend"]))

    assert (reply.status, reply.body["outcome"]) == (
        202,
        f"installation {INSTALLATION_ID} (Acme) deleted; 2 repositories forgotten",
    )
    assert list(await installations(db)) == [OTHER_INSTALLATION_ID]
    assert await repositories(db) == {"other/b": OTHER_INSTALLATION_ID}
    assert await served_by(db, "acme/backend") is None


@pytest.mark.both_databases
async def test_suspend_and_unsuspend_switch_the_installation_off_and_on(
    webhook: Webhooks, db: Database
) -> None:
    await webhook("installation", installation_event("created", repos=["acme/backend"]))

    suspended = await webhook("installation", installation_event("suspend"))
    while_suspended = await served_by(db, "acme/backend")
    flag_while_suspended = (await installations(db))[INSTALLATION_ID].suspended
    unsuspended = await webhook("installation", installation_event("unsuspend"))

    assert suspended.body == {
        "status": "accepted",
        "outcome": f"installation {INSTALLATION_ID} (Acme) suspended",
    }
    assert flag_while_suspended is True
    assert while_suspended is None  # a suspended installation's tokens would be refused
    assert unsuspended.body["outcome"] == f"installation {INSTALLATION_ID} (Acme) unsuspended"
    assert (await installations(db))[INSTALLATION_ID].suspended is False
    assert await served_by(db, "acme/backend") == INSTALLATION_ID
    # Suspending kept the repositories: unsuspending needs no new event to serve them.
    assert await repositories(db) == {"acme/backend": INSTALLATION_ID}


async def test_suspend_of_an_installation_not_seen_yet_records_it_suspended(
    webhook: Webhooks, db: Database
) -> None:
    reply = await webhook("installation", installation_event("suspend"))

    assert reply.status == 202
    assert (await installations(db))[INSTALLATION_ID].suspended is True


async def test_new_permissions_accepted_refreshes_the_installation(
    webhook: Webhooks, db: Database
) -> None:
    await webhook("installation", installation_event("created", repos=["acme/backend"]))

    reply = await webhook(
        "installation",
        installation_event(
            "new_permissions_accepted", account="Acme-Renamed", repos=["acme/backend", "acme/new"]
        ),
    )

    assert reply.body["outcome"] == (
        f"installation {INSTALLATION_ID} (Acme-Renamed) new permissions accepted; 2 repositories"
    )
    assert (await installations(db))[INSTALLATION_ID].account == "Acme-Renamed"
    assert await repositories(db) == {
        "acme/backend": INSTALLATION_ID,
        "acme/new": INSTALLATION_ID,
    }


@pytest.mark.both_databases
async def test_repositories_added_and_removed_follow_the_installation(
    webhook: Webhooks, db: Database
) -> None:
    await webhook("installation", installation_event("created", repos=["acme/backend"]))

    added = await webhook(
        "installation_repositories",
        installation_repositories_event("added", repos=["Acme/Monorepo", "acme/tools"]),
    )
    after_adding = await repositories(db)
    removed = await webhook(
        "installation_repositories",
        installation_repositories_event("removed", repos=["acme/backend", "ACME/tools"]),
    )

    assert added.body == {
        "status": "accepted",
        "outcome": f"installation {INSTALLATION_ID}: 2 repositories added, 0 repositories removed",
    }
    assert after_adding == {
        "acme/backend": INSTALLATION_ID,
        "acme/monorepo": INSTALLATION_ID,
        "acme/tools": INSTALLATION_ID,
    }
    assert removed.body["outcome"] == (
        f"installation {INSTALLATION_ID}: 0 repositories added, 2 repositories removed"
    )
    assert await repositories(db) == {"acme/monorepo": INSTALLATION_ID}
    assert await served_by(db, "acme/backend") is None


async def test_repositories_added_for_an_unknown_installation_record_it_too(
    webhook: Webhooks, db: Database
) -> None:
    reply = await webhook(
        "installation_repositories", installation_repositories_event("added", repos=["acme/x"])
    )

    assert reply.status == 202
    assert (await installations(db))[INSTALLATION_ID].account == "Acme"
    assert await served_by(db, "acme/x") == INSTALLATION_ID


@pytest.mark.both_databases
async def test_a_repository_moved_to_another_installation_stays_with_it(
    webhook: Webhooks, db: Database
) -> None:
    await webhook("installation", installation_event("created", repos=["acme/backend"]))
    await webhook(
        "installation_repositories",
        installation_repositories_event(
            "added", installation_id=OTHER_INSTALLATION_ID, account="Other", repos=["acme/backend"]
        ),
    )

    # The first installation's late "removed" must not take it from the second.
    await webhook(
        "installation_repositories",
        installation_repositories_event("removed", repos=["acme/backend"]),
    )

    assert await repositories(db) == {"acme/backend": OTHER_INSTALLATION_ID}


# --- without the App, or half of it ----------------------------------------------------------


async def test_without_the_app_webhooks_answer_503_and_the_rest_api_works(
    api: Api, client: TestClient[Any, Any], conformance: OpenApiConformance, db: Database
) -> None:
    sender = Webhooks(client, conformance)

    reply = await sender("installation", installation_event("created", repos=["acme/backend"]))
    created = await api.create_rc("v1.0.0-rc1")

    assert (reply.status, reply.body) == (503, {"error": "GitHub App not configured"})
    assert created.status == 201
    assert await deliveries(db) == []
    assert await installations(db) == {}


HALF_CONFIGURED = [
    ("TARMAC_GITHUB_WEBHOOK_SECRET", {"github_app_id": 1, "github_private_key": "KEY"}),
    ("TARMAC_GITHUB_APP_ID", {"github_private_key": "KEY", "github_webhook_secret": "s"}),
    (
        "TARMAC_GITHUB_PRIVATE_KEY or TARMAC_GITHUB_PRIVATE_KEY_PATH",
        {"github_app_id": 1, "github_webhook_secret": "s"},
    ),
]


@pytest.mark.parametrize(("missing", "given"), HALF_CONFIGURED, ids=[m for m, _ in HALF_CONFIGURED])
def test_a_half_configured_app_stops_create_app_naming_what_is_missing(
    tmp_path: Path,
    projects_file: Path,
    github_private_key: str,
    missing: str,
    given: dict[str, Any],
) -> None:
    values = {k: github_private_key if v == "KEY" else v for k, v in given.items()}
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}",
        config=projects_file,
        **values,
    )

    with pytest.raises(GitHubAppMisconfigured) as raised:
        create_app(settings)

    assert str(raised.value) == f"the GitHub App is half configured; missing: {missing}"
    assert github_private_key not in str(raised.value)


def test_serve_with_a_half_configured_app_says_why_and_exits_2(
    tmp_path: Path, projects_file: Path
) -> None:
    env = tarmac_env(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'tarmac.db'}",
        config=projects_file,
        github_app_id="12345",
        github_webhook_secret=WEBHOOK_SECRET,
    )

    result = run_tarmac("serve", "--port", "1", env=env, cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr == (
        "error: the GitHub App is half configured; missing: "
        "TARMAC_GITHUB_PRIVATE_KEY or TARMAC_GITHUB_PRIVATE_KEY_PATH\n"
    )
    assert WEBHOOK_SECRET not in result.stdout + result.stderr


def test_the_test_app_talks_to_the_fake_github(
    github_app_settings: Settings, fake_github: FakeGitHub
) -> None:
    app = github_app_settings.github_app()

    assert app is not None
    assert (app.app_id, app.api_url) == (TEST_APP_ID, fake_github.server_url)
    assert WEBHOOK_SECRET not in repr(app) + repr(github_app_settings)


# --- secrets and logs -------------------------------------------------------------------------


async def test_secrets_never_appear_in_replies_or_logs_and_every_line_names_the_delivery(
    webhook: Webhooks,
    github_api: Api,
    db: Database,
    github_private_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    created = installation_event("created", repos=["acme/backend"])
    sent: list[tuple[str, dict[str, Any], str | None, dict[str, str]]] = [
        ("ping", github_payload("ping"), None, {}),
        ("installation", created, None, {}),
        ("installation", created, "wrong-secret", {}),
        ("release", github_payload("release", "published"), None, {}),
        ("installation", created, None, {"Content-Type": "text/plain"}),
    ]
    replies = []
    delivery_ids = []
    for event, payload, secret, headers in sent:
        delivery_id = str(uuid.uuid4())
        delivery_ids.append(delivery_id)
        replies.append(await webhook(event, payload, delivery_id, secret, headers=headers))
    delivery_ids.append(delivery_ids[1])
    replies.append(await webhook("installation", created, delivery_ids[1]))
    replies.append(await github_api.get("/api/openapi.json"))

    assert [r.status for r in replies] == [200, 202, 401, 202, 400, 200, 200]
    key_lines = [line for line in github_private_key.splitlines() if "-----" not in line]
    texts = [json.dumps(r.body) for r in replies] + [caplog.text]
    for text in texts:
        assert WEBHOOK_SECRET not in text
        assert not any(line in text for line in key_lines)
    ours = [r for r in caplog.records if r.name.startswith(("api.webhooks", "bot.github.inbound"))]
    assert ours
    for record in ours:
        assert any(d in record.getMessage() for d in delivery_ids), record.getMessage()
    logged = {d for d in delivery_ids if any(d in r.getMessage() for r in ours)}
    assert logged == set(delivery_ids)


async def test_the_endpoint_is_in_the_openapi_document_without_security(
    openapi_document: dict[str, Any],
) -> None:
    operation = openapi_document["paths"][WEBHOOK_PATH]["post"]

    assert operation["security"] == []
    assert set(operation["responses"]) >= {"200", "202", "400", "401", "413", "503"}
