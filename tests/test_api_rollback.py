"""The rollback rule through the REST API."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from bot.storage.db import Database
from bot.storage.models import Deployment
from tests.conftest import SHA_B, SHA_C, Api, TestClock

ROLLBACK = "/api/releases/Backend/environments/production/rollback"
NOTHING = {"error": "No previous deployment to roll back from"}


async def deployment_count(db: Database) -> int:
    async with db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(Deployment)) or 0)


async def ship_three(api: Api) -> None:
    await api.ship("production", "v1.0.0-rc1")
    await api.ship("production", "v1.1.0-rc1", SHA_B)
    await api.ship("production", "v1.2.0-rc1", SHA_C)


async def test_without_any_deployment_there_is_nothing_to_roll_back(api: Api) -> None:
    await api.create_rc("v1.0.0-rc1")

    reply = await api.rollback("production")

    assert reply.status == 404
    assert reply.body == NOTHING


async def test_after_a_success_the_environment_goes_back_to_the_rc_before(
    api: Api, clock: TestClock
) -> None:
    await api.ship("production", "v1.0.0-rc1")
    await api.ship("production", "v1.1.0-rc1", SHA_B)
    clock.advance(minutes=7)

    reply = await api.rollback("production")

    assert reply.status == 201
    assert reply.body == {
        "id": reply.body["id"],
        "environment_name": "production",
        "release_candidate_version": "v1.0.0-rc1",
        "release_version": "v1.0.0",
        "from_release_candidate_version": "v1.1.0-rc1",
        "from_release_version": "v1.1.0",
        "status": "pending",
        "actor": "ci@example.com",
        "deploy_start_at": clock.now.isoformat().replace("+00:00", "Z"),
        "deploy_end_at": None,
        "error_message": None,
        "kind": "rollback",
        "waiting_for": None,
        "approvals_required": 0,
        "approvals": [],
    }
    listed = await api.deployments("production")
    assert listed.body[0] == reply.body


async def test_rolling_back_twice_goes_back_two_versions_and_never_forward(api: Api) -> None:
    await ship_three(api)

    first = await api.rollback("production")
    await api.report("production", "v1.1.0-rc1", "success")
    second = await api.rollback("production")
    await api.report("production", "v1.0.0-rc1", "success")
    third = await api.rollback("production")

    assert (first.status, first.body["release_candidate_version"]) == (201, "v1.1.0-rc1")
    assert first.body["from_release_candidate_version"] == "v1.2.0-rc1"
    assert (second.status, second.body["release_candidate_version"]) == (201, "v1.0.0-rc1")
    assert second.body["from_release_candidate_version"] == "v1.1.0-rc1"
    # v1.2.0 and v1.1.0 were rolled away from: there is nothing older than v1.0.0.
    assert third.status == 404
    assert third.body == NOTHING


async def test_a_second_rollback_while_the_first_is_under_way_keeps_its_target(
    api: Api,
) -> None:
    await ship_three(api)
    first = await api.rollback("production")

    second = await api.rollback("production")

    # Not forward to v1.2.0, the RC the first rollback rolled away from.
    assert (second.status, second.body["release_candidate_version"]) == (201, "v1.1.0-rc1")
    assert second.body["from_release_candidate_version"] == "v1.2.0-rc1"
    listed = await api.deployments("production")
    assert [(d["id"], d["status"]) for d in listed.body[:2]] == [
        (second.body["id"], "pending"),
        (first.body["id"], "canceled"),
    ]


async def test_a_failed_rollback_is_retried_to_the_same_target(api: Api) -> None:
    await ship_three(api)
    await api.rollback("production")
    await api.report("production", "v1.1.0-rc1", "failure")

    retry = await api.rollback("production")

    assert (retry.status, retry.body["release_candidate_version"]) == (201, "v1.1.0-rc1")
    await api.report("production", "v1.1.0-rc1", "success")
    onwards = await api.rollback("production")
    assert (onwards.status, onwards.body["release_candidate_version"]) == (201, "v1.0.0-rc1")


async def test_a_redeploy_of_a_rolled_back_rc_counts_again(api: Api) -> None:
    await api.ship("production", "v1.0.0-rc1")
    await api.ship("production", "v1.1.0-rc1", SHA_B)
    await api.rollback("production")
    await api.report("production", "v1.0.0-rc1", "success")
    await api.deploy("production", "v1.1.0-rc1")
    await api.report("production", "v1.1.0-rc1", "success")

    reply = await api.rollback("production")

    assert reply.status == 201
    assert reply.body["release_candidate_version"] == "v1.0.0-rc1"
    assert reply.body["from_release_candidate_version"] == "v1.1.0-rc1"


@pytest.mark.parametrize("status", ["failure", "error", "canceled"])
async def test_after_a_failed_deployment_the_running_rc_is_redeployed(
    api: Api, status: str
) -> None:
    await api.ship("production", "v1.0.0-rc1")
    await api.create_rc("v1.1.0-rc1", SHA_B)
    await api.deploy("production", "v1.1.0-rc1")
    await api.report("production", "v1.1.0-rc1", status)

    reply = await api.rollback("production")

    assert reply.status == 201
    assert reply.body["release_candidate_version"] == "v1.0.0-rc1"
    assert reply.body["from_release_candidate_version"] == "v1.0.0-rc1"
    assert reply.body["kind"] == "rollback"
    assert reply.body["status"] == "pending"


async def test_active_deployments_are_canceled_by_a_rollback(api: Api, clock: TestClock) -> None:
    await api.ship("production", "v1.0.0-rc1")
    await api.ship("production", "v1.1.0-rc1", SHA_B)
    await api.create_rc("v1.2.0-rc1", SHA_C)
    superseded = await api.deploy("production", "v1.2.0-rc1")
    await api.deploy("production", "v1.2.0-rc1")
    under_way = await api.report("production", "v1.2.0-rc1", "in_progress")
    staging = await api.deploy("staging", "v1.2.0-rc1")
    clock.advance(minutes=3)

    reply = await api.rollback("production")

    assert reply.status == 201
    assert reply.body["release_candidate_version"] == "v1.1.0-rc1"
    listed = await api.deployments("production")
    by_id = {d["id"]: d for d in listed.body}
    assert by_id[under_way.body["id"]]["status"] == "canceled"
    assert by_id[under_way.body["id"]]["error_message"] == "Canceled by a rollback"
    assert by_id[under_way.body["id"]]["deploy_end_at"] == reply.body["deploy_start_at"]
    # The first deploy had already been superseded by the second.
    assert by_id[superseded.body["id"]]["status"] == "canceled"
    assert by_id[superseded.body["id"]]["error_message"] == (
        f"Superseded by deployment {under_way.body['id']}"
    )
    other = await api.deployments("staging")
    assert other.body[0]["id"] == staging.body["id"]
    assert other.body[0]["status"] == "pending"


async def test_a_frozen_environment_is_rolled_back_only_with_force(api: Api, db: Database) -> None:
    await api.ship("production", "v1.0.0-rc1")
    await api.ship("production", "v1.1.0-rc1", SHA_B)
    await api.create_rc("v1.2.0-rc1", SHA_C)
    active = await api.deploy("production", "v1.2.0-rc1")
    await api.put("/api/releases/Backend/environments/production/freeze", {"reason": "incident"})
    before = await deployment_count(db)

    refused = await api.rollback("production")
    not_forced = await api.rollback("production", force=False)

    assert refused.status == 400
    assert refused.body == {"error": "Environment is frozen"}
    assert not_forced.status == 400
    assert not_forced.body == {"error": "Environment is frozen"}
    # Refused before anything changed: the deployment under way is still under way.
    assert await deployment_count(db) == before
    listed = await api.deployments("production")
    assert listed.body[0]["id"] == active.body["id"]
    assert listed.body[0]["status"] == "pending"

    forced = await api.rollback("production", force=True)

    assert forced.status == 201
    assert forced.body["release_candidate_version"] == "v1.1.0-rc1"
    assert forced.body["status"] == "pending"


async def test_with_only_one_rc_ever_successful_there_is_nothing_to_go_back_to(
    api: Api, db: Database
) -> None:
    await api.ship("production", "v1.0.0-rc1")
    await api.deploy("production", "v1.0.0-rc1")
    await api.report("production", "v1.0.0-rc1", "success")

    reply = await api.rollback("production")

    assert reply.status == 404
    assert reply.body == NOTHING
    assert await deployment_count(db) == 2


async def test_without_any_success_there_is_nothing_to_go_back_to(api: Api) -> None:
    await api.create_rc("v1.0.0-rc1")
    await api.deploy("production", "v1.0.0-rc1")
    await api.report("production", "v1.0.0-rc1", "failure")

    reply = await api.rollback("production")

    assert reply.status == 404
    assert reply.body == NOTHING


@pytest.mark.parametrize("body", [None, "", "{}", '{"force": false}', '{"unknown": 1}'])
async def test_the_body_is_optional(api: Api, body: str | None) -> None:
    await api.ship("production", "v1.0.0-rc1")
    await api.ship("production", "v1.1.0-rc1", SHA_B)
    headers = {} if body is None else {"Content-Type": "application/json"}

    reply = await api.post(ROLLBACK, data=body, headers=headers)

    assert reply.status == 201
    assert reply.body["release_candidate_version"] == "v1.0.0-rc1"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"force": "yes"}, "Invalid field 'force': Input should be a valid boolean"),
        ({"force": 1}, "Invalid field 'force': Input should be a valid boolean"),
        ({"force": None}, "Invalid field 'force': Input should be a valid boolean"),
        ([], "Request body must be a JSON object"),
    ],
)
async def test_a_bad_body_is_refused(api: Api, db: Database, body: Any, message: str) -> None:
    await api.ship("production", "v1.0.0-rc1")
    await api.ship("production", "v1.1.0-rc1", SHA_B)

    reply = await api.post(ROLLBACK, body)

    assert reply.status == 400
    assert reply.body == {"error": message}
    assert await deployment_count(db) == 2


@pytest.mark.parametrize(
    ("project", "environment", "message"),
    [
        ("Nope", "production", "Release project not found"),
        ("backend", "production", "Release project not found"),
        ("Backend", "qa", "Release environment not found"),
        ("Frontend", "staging", "Release environment not found"),
    ],
)
async def test_rolling_back_where_there_is_no_environment_is_not_found(
    api: Api, project: str, environment: str, message: str
) -> None:
    await api.ship("production", "v1.0.0-rc1")

    reply = await api.rollback(environment, project=project)

    assert reply.status == 404
    assert reply.body == {"error": message}
