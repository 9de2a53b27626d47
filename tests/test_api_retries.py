"""Retries that make no mess: Idempotency-Key on every write, a new deployment superseding the
older active ones, and a deployment read and canceled by its id."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from api.app import create_app
from api.idempotency import INVALID_KEY, KEY_REUSED
from bot.settings import Settings
from bot.storage import idempotency
from bot.storage.db import Database
from bot.storage.models import Deployment, IdempotencyKey
from tests.conftest import SHA_B, Api, Reply, TestClock, make_token
from tests.openapi_conformance import OpenApiConformance

DEPLOYMENTS = "/api/releases/Backend/environments/staging/deployments"
KEY = "9f7d1c2e-5b7a-4e0f-9d4c-0c6a1e2b3f41"


def keyed(key: str = KEY) -> dict[str, str]:
    return {"Idempotency-Key": key}


async def deploy(api: Api, version: str = "v1.0.0-rc1", **kwargs: Any) -> Reply:
    return await api.post(DEPLOYMENTS, {"release_candidate_version": version}, **kwargs)


async def deployment_count(db: Database) -> int:
    async with db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(Deployment)) or 0)


# --- Idempotency-Key ----------------------------------------------------------------------


@pytest.mark.both_databases
async def test_three_identical_posts_with_one_key_make_one_deployment(
    api: Api, db: Database
) -> None:
    await api.create_rc("v1.0.0-rc1")

    answers = [await deploy(api, headers=keyed()) for _ in range(3)]

    assert [a.status for a in answers] == [201, 201, 201]
    assert answers[1].body == answers[0].body
    assert answers[2].body == answers[0].body
    assert "Idempotent-Replayed" not in answers[0].headers
    assert answers[1].headers["Idempotent-Replayed"] == "true"
    assert await deployment_count(db) == 1


@pytest.mark.both_databases
async def test_concurrent_requests_with_one_key_make_one_deployment(api: Api, db: Database) -> None:
    await api.create_rc("v1.0.0-rc1")

    answers = await asyncio.gather(*(deploy(api, headers=keyed()) for _ in range(6)))

    assert {a.status for a in answers} == {201}
    assert len({a.body["id"] for a in answers}) == 1
    assert await deployment_count(db) == 1
    listed = await api.deployments("staging")
    assert [d["status"] for d in listed.body] == ["pending"]  # nothing superseded either


async def test_the_same_key_with_another_body_is_refused_and_changes_nothing(
    api: Api, db: Database
) -> None:
    await api.create_rc("v1.0.0-rc1")
    await api.create_rc("v1.0.0-rc2", SHA_B)
    first = await deploy(api, headers=keyed())

    other_body = await deploy(api, "v1.0.0-rc2", headers=keyed())
    other_path = await api.post(
        "/api/releases/Backend/environments/production/deployments",
        {"release_candidate_version": "v1.0.0-rc1"},
        headers=keyed(),
    )

    for refused in (other_body, other_path):
        assert refused.status == 422
        assert refused.body == {"error": KEY_REUSED}
    listed = await api.deployments("staging")
    assert [(d["id"], d["status"]) for d in listed.body] == [(first.body["id"], "pending")]
    assert await deployment_count(db) == 1


async def test_keys_belong_to_their_token(api: Api, db: Database) -> None:
    await api.create_rc("v1.0.0-rc1")
    other_token = await make_token(db, "other-pipeline")

    mine = await deploy(api, headers=keyed())
    theirs = await deploy(api, headers=keyed(), token=other_token)

    assert theirs.status == 201
    assert "Idempotent-Replayed" not in theirs.headers
    assert theirs.body["id"] != mine.body["id"]


async def test_a_key_is_kept_24_hours(api: Api, clock: TestClock, db: Database) -> None:
    await api.create_rc("v1.0.0-rc1")
    first = await deploy(api, headers=keyed())

    clock.advance(hours=23, minutes=59)
    assert (await deploy(api, headers=keyed())).body == first.body
    clock.advance(minutes=1)
    again = await deploy(api, headers=keyed())

    assert again.status == 201
    assert again.body["id"] != first.body["id"]
    assert "Idempotent-Replayed" not in again.headers
    async with db.write() as session:
        # The expired answer was replaced; the new one is not purged.
        assert await idempotency.purge_expired_keys(session, clock()) == 0
        clock.advance(hours=24)
        assert await idempotency.purge_expired_keys(session, clock()) == 1


@pytest.mark.parametrize(
    "key", ["", "x" * 256, "clé-non-ascii", "tab\tinside"], ids=["empty", "long", "utf8", "tab"]
)
async def test_an_invalid_key_is_refused_and_changes_nothing(
    api: Api, db: Database, key: str
) -> None:
    await api.create_rc("v1.0.0-rc1")

    reply = await api.request(
        "POST",
        DEPLOYMENTS,
        data=b'{"release_candidate_version": "v1.0.0-rc1"}',
        headers={"Content-Type": "application/json", "Idempotency-Key": key},
        check=key != "clé-non-ascii",  # aiohttp's client sends it as latin-1 bytes
    )

    assert reply.status == 400
    assert reply.body == {"error": INVALID_KEY}
    assert await deployment_count(db) == 0


async def test_a_refusal_is_not_remembered_so_its_retry_runs_again(api: Api) -> None:
    await api.create_rc("v1.0.0-rc1")
    await api.put("/api/releases/Backend/environments/staging/freeze", {"reason": "audit"})

    refused = await deploy(api, headers=keyed())
    await api.delete("/api/releases/Backend/environments/staging/freeze")
    retried = await deploy(api, headers=keyed())

    assert refused.status == 400
    assert retried.status == 201
    assert "Idempotent-Replayed" not in retried.headers


async def test_every_write_of_the_api_answers_its_retry_from_the_key(
    api: Api, db: Database
) -> None:
    await api.ship("production", "v1.0.0-rc1")
    await api.ship("production", "v1.1.0-rc1", SHA_B)
    writes: list[tuple[str, str, Any]] = [
        (
            "POST",
            "/api/releases/Backend/releases/v1.2.0-rc1",
            {"repo": "acme/backend", "commit": SHA_B},
        ),
        ("POST", DEPLOYMENTS, {"release_candidate_version": "v1.2.0-rc1"}),
        ("PATCH", DEPLOYMENTS, {"release_candidate_version": "v1.2.0-rc1", "status": "success"}),
        ("POST", "/api/releases/Backend/environments/production/rollback", None),
        ("POST", "/api/releases/Backend/environments/production/deployments/{id}/cancel", None),
        ("PUT", "/api/releases/Backend/environments/staging/freeze", {"reason": "audit"}),
        ("DELETE", "/api/releases/Backend/environments/staging/freeze", None),
    ]
    rollback_id = None
    for number, (method, path, body) in enumerate(writes):
        path = path.format(id=rollback_id)
        headers = keyed(f"write-{number}")
        first = await api.request(method, path, json_body=body, headers=headers)
        again = await api.request(method, path, json_body=body, headers=headers)
        assert first.status in (200, 201), (method, path, first.body)
        assert (again.status, again.body) == (first.status, first.body), (method, path)
        assert again.headers["Idempotent-Replayed"] == "true", (method, path)
        if path.endswith("/rollback"):
            rollback_id = first.body["id"]
    async with db.read() as session:
        stored = await session.scalar(select(func.count()).select_from(IdempotencyKey))
    assert stored == len(writes)


async def test_a_stored_answer_holds_across_a_restart_and_another_replica(
    api: Api, aiohttp_client: Any, settings: Settings, conformance: OpenApiConformance
) -> None:
    await api.create_rc("v1.0.0-rc1")
    first = await deploy(api, headers=keyed())

    replica = Api(await aiohttp_client(create_app(settings, background_work=False)), conformance)
    replica.token = api.token
    again = await deploy(replica, headers=keyed())

    assert (again.status, again.body) == (201, first.body)
    assert again.headers["Idempotent-Replayed"] == "true"


# --- a new deployment supersedes the older active ones ------------------------------------


@pytest.mark.both_databases
async def test_three_identical_posts_without_a_key_leave_one_active_deployment(
    api: Api,
) -> None:
    await api.create_rc("v1.0.0-rc1")

    answers = [await deploy(api) for _ in range(3)]

    ids = [a.body["id"] for a in answers]
    assert len(set(ids)) == 3
    listed = {d["id"]: d for d in (await api.deployments("staging")).body}
    assert listed[ids[2]]["status"] == "pending"
    for older, newer in ((ids[0], ids[1]), (ids[1], ids[2])):
        assert listed[older]["status"] == "canceled"
        assert listed[older]["error_message"] == f"Superseded by deployment {newer}"
        assert listed[older]["deploy_end_at"] is not None
    # A success report now closes the one deployment still under way.
    reported = await api.report("staging", "v1.0.0-rc1", "success")
    assert reported.body["id"] == ids[2]


async def test_a_reported_failure_supersedes_nothing(api: Api) -> None:
    await api.create_rc("v1.0.0-rc1")
    await api.create_rc("v1.0.0-rc2", SHA_B)
    under_way = await deploy(api)

    await api.report("staging", "v1.0.0-rc2", "failure")

    listed = {d["id"]: d for d in (await api.deployments("staging")).body}
    assert listed[under_way.body["id"]]["status"] == "pending"


# --- one deployment by id: read, cancel --------------------------------------------------


async def test_a_deployment_is_read_by_its_id_within_its_environment(api: Api) -> None:
    await api.create_rc("v1.0.0-rc1")
    deployed = await deploy(api)
    path = f"{DEPLOYMENTS}/{deployed.body['id']}"

    found = await api.get(path)
    elsewhere = await api.get(
        f"/api/releases/Backend/environments/production/deployments/{deployed.body['id']}"
    )
    missing = await api.get(f"{DEPLOYMENTS}/999999")
    not_an_id = await api.get(f"{DEPLOYMENTS}/abc", check=False)
    too_long = await api.get(f"{DEPLOYMENTS}/{'9' * 19}", check=False)

    assert (found.status, found.body) == (200, deployed.body)
    for refused in (elsewhere, missing):
        assert (refused.status, refused.body) == (404, {"error": "Deployment not found"})
    for refused in (not_an_id, too_long):
        assert (refused.status, refused.body) == (404, {"error": "Not found"})


async def test_cancel_ends_a_deployment_under_way_and_a_retry_is_harmless(
    api: Api, clock: TestClock
) -> None:
    await api.create_rc("v1.0.0-rc1")
    deployed = await deploy(api)
    await api.report("staging", "v1.0.0-rc1", "in_progress")
    clock.advance(minutes=2)
    cancel = f"{DEPLOYMENTS}/{deployed.body['id']}/cancel"

    canceled = await api.post(cancel)
    again = await api.post(cancel)

    assert canceled.status == 200
    assert canceled.body["status"] == "canceled"
    assert canceled.body["error_message"] == "Canceled by ci@example.com"
    assert canceled.body["deploy_end_at"] is not None
    assert (again.status, again.body) == (200, canceled.body)


async def test_a_deployment_that_ended_cannot_be_canceled(api: Api) -> None:
    done = await api.ship("staging", "v1.0.0-rc1")

    refused = await api.post(f"{DEPLOYMENTS}/{done.body['id']}/cancel")
    missing = await api.post(f"{DEPLOYMENTS}/424242/cancel")

    assert refused.status == 409
    assert refused.body == {
        "error": "Deployment has already ended; only a pending, in_progress, canceling or "
        "unknown deployment can be canceled"
    }
    assert (missing.status, missing.body) == (404, {"error": "Deployment not found"})
    assert (await api.get(f"{DEPLOYMENTS}/{done.body['id']}")).body["status"] == "success"
