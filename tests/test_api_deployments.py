"""Deployments through the REST API: deploying an RC, reported statuses, the history list."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import func, select, update
from yarl import URL

from bot.storage.db import Database
from bot.storage.models import Deployment, ReleaseCandidate
from tests.conftest import BAD_PAGINATION, SHA_B, SHA_C, Api, Reply, TestClock, make_token

DEPLOYMENTS = "/api/releases/Backend/environments/{}/deployments"
STATUSES = [
    "pending",
    "in_progress",
    "success",
    "failure",
    "canceling",
    "canceled",
    "error",
    "unknown",
]
FINAL = ["success", "failure", "canceled", "error"]
OPEN = ["pending", "in_progress", "canceling", "unknown"]


def parse_links(reply: Reply) -> dict[str, URL]:
    """The Link header as {rel: url}; empty when there is none."""
    header = reply.headers.get("Link")
    if header is None:
        return {}
    links = {}
    for part in header.split(","):
        target, rel = part.split(";")
        links[rel.strip().removeprefix('rel="').removesuffix('"')] = URL(target.strip()[1:-1])
    return links


async def deployment_count(db: Database) -> int:
    async with db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(Deployment)) or 0)


async def set_build_status(db: Database, version: str, status: str) -> None:
    async with db.write() as session:
        await session.execute(
            update(ReleaseCandidate)
            .where(ReleaseCandidate.version == version)
            .values(build_status=status)
        )


def at(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


# --- creating -------------------------------------------------------------------------------


async def test_deploying_an_rc_answers_201_with_a_pending_deployment(
    api: Api, clock: TestClock
) -> None:
    await api.create_rc("v1.0.0-rc1")

    reply = await api.deploy("staging", "v1.0.0-rc1")

    assert reply.status == 201
    assert reply.body == {
        "id": reply.body["id"],
        "environment_name": "staging",
        "release_candidate_version": "v1.0.0-rc1",
        "release_version": "v1.0.0",
        "from_release_candidate_version": None,
        "from_release_version": None,
        "status": "pending",
        "actor": "ci@example.com",
        "deploy_start_at": reply.body["deploy_start_at"],
        "deploy_end_at": None,
        "error_message": None,
        "kind": "deploy",
        "waiting_for": None,
        "approvals_required": 0,
        "approvals": [],
    }
    assert isinstance(reply.body["id"], int)
    assert at(reply.body["deploy_start_at"]) == clock.now


async def test_a_deployment_comes_from_the_rc_running_in_the_environment(api: Api) -> None:
    await api.ship("production", "v1.0.0-rc1")
    await api.create_rc("v1.1.0-rc1", SHA_B)
    await api.ship("staging", "v1.1.0-rc1", SHA_B)  # other environments do not count

    reply = await api.deploy("production", "v1.1.0-rc1")

    assert reply.status == 201
    assert reply.body["from_release_candidate_version"] == "v1.0.0-rc1"
    assert reply.body["from_release_version"] == "v1.0.0"


async def test_a_failed_deployment_does_not_change_where_the_next_comes_from(api: Api) -> None:
    await api.ship("production", "v1.0.0-rc1")
    await api.create_rc("v1.1.0-rc1", SHA_B)
    await api.deploy("production", "v1.1.0-rc1")
    await api.report("production", "v1.1.0-rc1", "failure")
    await api.create_rc("v1.2.0-rc1", SHA_C)

    reply = await api.deploy("production", "v1.2.0-rc1")

    assert reply.body["from_release_candidate_version"] == "v1.0.0-rc1"


async def test_the_actor_is_the_tokens_email_else_its_name(api: Api, db: Database) -> None:
    await api.create_rc("v1.0.0-rc1")
    nameless = await make_token(db, "deploy-bot")

    reply = await api.post(
        DEPLOYMENTS.format("staging"),
        {"release_candidate_version": "v1.0.0-rc1"},
        token=nameless,
    )

    assert reply.status == 201
    assert reply.body["actor"] == "deploy-bot"


async def test_deploying_to_an_unknown_environment_is_not_found(api: Api, db: Database) -> None:
    await api.create_rc("v1.0.0-rc1")

    for environment in ["qa", "Staging", "PRODUCTION"]:
        reply = await api.deploy(environment, "v1.0.0-rc1")
        assert reply.status == 404
        assert reply.body == {"error": "Release environment not found"}
    assert await deployment_count(db) == 0


async def test_deploying_an_unknown_rc_is_not_found(api: Api, db: Database) -> None:
    await api.create_rc("v1.0.0-rc1")

    reply = await api.deploy("staging", "v1.0.0-rc2")

    assert reply.status == 404
    assert reply.body == {"error": "Release not found"}
    assert await deployment_count(db) == 0


async def test_deploying_an_rc_of_another_project_is_not_found(api: Api) -> None:
    await api.create_rc("v1.0.0-rc1")

    reply = await api.deploy("production", "v1.0.0-rc1", project="Frontend")

    assert reply.status == 404
    assert reply.body == {"error": "Release not found"}


async def test_deploying_in_an_unknown_project_is_not_found(api: Api) -> None:
    reply = await api.deploy("staging", "v1.0.0-rc1", project="backend")

    assert reply.status == 404
    assert reply.body == {"error": "Release project not found"}


@pytest.mark.parametrize("version", ["v1.0.0", "v1-rcx", "-rc1", "v1.0.0-rc"])
async def test_deploying_an_invalid_version_is_refused(api: Api, version: str) -> None:
    reply = await api.deploy("staging", version)

    assert reply.status == 400
    assert reply.body == {"error": "Invalid release candidate version"}


@pytest.mark.parametrize(
    ("build_status", "message"),
    [
        ("building", "Release candidate is still building"),
        ("failed", "Release candidate build failed"),
    ],
)
async def test_an_rc_without_a_good_build_is_not_deployed(
    api: Api, db: Database, build_status: str, message: str
) -> None:
    await api.create_rc("v1.0.0-rc1")
    await set_build_status(db, "v1.0.0-rc1", build_status)

    reply = await api.deploy("staging", "v1.0.0-rc1")

    assert reply.status == 400
    assert reply.body == {"error": message}
    assert await deployment_count(db) == 0


async def test_a_frozen_environment_takes_no_deployment(api: Api, db: Database) -> None:
    await api.create_rc("v1.0.0-rc1")
    await api.put("/api/releases/Backend/environments/production/freeze", {"reason": "audit"})

    frozen = await api.deploy("production", "v1.0.0-rc1")
    elsewhere = await api.deploy("staging", "v1.0.0-rc1")

    assert frozen.status == 400
    assert frozen.body == {"error": "Environment is frozen"}
    assert elsewhere.status == 201
    assert await deployment_count(db) == 1


# --- reporting a status (PATCH) -------------------------------------------------------------


async def test_a_report_updates_the_deployment_under_way(api: Api, clock: TestClock) -> None:
    await api.create_rc("v1.0.0-rc1")
    deployed = await api.deploy("staging", "v1.0.0-rc1")
    clock.advance(minutes=2)

    reply = await api.report("staging", "v1.0.0-rc1", "in_progress")

    assert reply.status == 200
    assert reply.body == {**deployed.body, "status": "in_progress"}


async def test_a_report_without_a_deployment_creates_one(
    api: Api, db: Database, clock: TestClock
) -> None:
    await api.create_rc("v1.0.0-rc1")

    reply = await api.report("staging", "v1.0.0-rc1", "success")

    assert reply.status == 200
    assert reply.body["kind"] == "reported"
    assert reply.body["status"] == "success"
    assert reply.body["actor"] == "ci@example.com"
    assert at(reply.body["deploy_start_at"]) == clock.now
    assert at(reply.body["deploy_end_at"]) == clock.now
    assert await deployment_count(db) == 1
    listed = await api.deployments("staging")
    assert listed.body == [reply.body]


@pytest.mark.parametrize("status", STATUSES)
async def test_every_status_of_the_spec_is_accepted(api: Api, status: str) -> None:
    await api.create_rc("v1.0.0-rc1")
    await api.deploy("staging", "v1.0.0-rc1")

    reply = await api.report("staging", "v1.0.0-rc1", status)

    assert reply.status == 200
    assert reply.body["status"] == status
    assert reply.body["kind"] == "deploy"
    assert (reply.body["deploy_end_at"] is not None) == (status in FINAL)


@pytest.mark.parametrize("status", ["done", "SUCCESS", ""])
async def test_an_unknown_status_is_refused_naming_the_field(
    api: Api, db: Database, status: str
) -> None:
    await api.create_rc("v1.0.0-rc1")
    await api.deploy("staging", "v1.0.0-rc1")

    reply = await api.report("staging", "v1.0.0-rc1", status)

    assert reply.status == 400
    assert reply.body == {
        "error": "Invalid field 'status': Input should be 'pending', 'in_progress', "
        "'canceling', 'success', 'failure', 'canceled', 'error' or 'unknown'"
    }
    listed = await api.deployments("staging")
    assert [d["status"] for d in listed.body] == ["pending"]


async def test_a_report_updates_the_newest_deployment_of_that_rc(api: Api) -> None:
    await api.create_rc("v1.0.0-rc1")
    await api.create_rc("v1.0.0-rc2", SHA_B)
    first = await api.deploy("staging", "v1.0.0-rc1")
    await api.report("staging", "v1.0.0-rc1", "failure")
    second = await api.deploy("staging", "v1.0.0-rc1")
    # The environment's newest deployment is another RC's (a failed attempt reported, which
    # supersedes nothing).
    other = await api.report("staging", "v1.0.0-rc2", "failure")

    reply = await api.report("staging", "v1.0.0-rc1", "success")

    assert reply.body["id"] == second.body["id"]
    listed = await api.deployments("staging")
    assert [(d["id"], d["status"]) for d in listed.body] == [
        (other.body["id"], "failure"),
        (second.body["id"], "success"),
        (first.body["id"], "failure"),
    ]


async def test_deploy_end_at_is_set_when_a_final_status_is_first_reached(
    api: Api, clock: TestClock
) -> None:
    await api.create_rc("v1.0.0-rc1")
    started = clock.now
    await api.deploy("staging", "v1.0.0-rc1")
    clock.advance(minutes=1)
    running = await api.report("staging", "v1.0.0-rc1", "in_progress")
    clock.advance(minutes=1)
    unsure = await api.report("staging", "v1.0.0-rc1", "unknown")
    clock.advance(minutes=1)
    ended = clock.now
    done = await api.report("staging", "v1.0.0-rc1", "success")
    clock.advance(minutes=1)
    retried = await api.report("staging", "v1.0.0-rc1", "success")

    assert running.body["deploy_end_at"] is None
    assert unsure.body["deploy_end_at"] is None
    assert at(done.body["deploy_end_at"]) == ended
    assert at(done.body["deploy_start_at"]) == started
    assert retried.status == 200
    assert retried.body == done.body


@pytest.mark.parametrize("status", FINAL)
async def test_the_same_final_status_again_changes_nothing(
    api: Api, db: Database, clock: TestClock, status: str
) -> None:
    await api.create_rc("v1.0.0-rc1")
    await api.deploy("staging", "v1.0.0-rc1")
    first = await api.report("staging", "v1.0.0-rc1", status)
    clock.advance(minutes=5)

    again = await api.report("staging", "v1.0.0-rc1", status)

    assert again.status == 200
    assert again.body == first.body
    assert await deployment_count(db) == 1


@pytest.mark.parametrize(
    ("final", "then"),
    [("failure", "success"), ("success", "failure"), ("canceled", "in_progress")],
)
async def test_another_status_after_a_final_one_is_a_new_deployment(
    api: Api, db: Database, clock: TestClock, final: str, then: str
) -> None:
    await api.create_rc("v1.0.0-rc1")
    deployed = await api.deploy("staging", "v1.0.0-rc1")
    ended = await api.report("staging", "v1.0.0-rc1", final)
    clock.advance(minutes=3)

    reply = await api.report("staging", "v1.0.0-rc1", then)

    assert reply.status == 200
    assert reply.body["id"] != deployed.body["id"]
    assert reply.body["kind"] == "reported"
    assert reply.body["status"] == then
    assert at(reply.body["deploy_start_at"]) == clock.now
    assert await deployment_count(db) == 2
    listed = await api.deployments("staging")
    assert listed.body[1] == ended.body


async def test_a_report_is_not_blocked_by_a_freeze(api: Api) -> None:
    await api.create_rc("v1.0.0-rc1")
    await api.create_rc("v1.0.0-rc2", SHA_B)
    await api.deploy("production", "v1.0.0-rc1")
    frozen = await api.put("/api/releases/Backend/environments/production/freeze", {})
    assert frozen.body["frozen"] is True

    updated = await api.report("production", "v1.0.0-rc1", "success")
    created = await api.report("production", "v1.0.0-rc2", "in_progress")

    assert updated.status == 200
    assert updated.body["status"] == "success"
    assert created.status == 200
    assert created.body["kind"] == "reported"


async def test_a_report_can_carry_an_error_message(api: Api) -> None:
    await api.create_rc("v1.0.0-rc1")
    await api.deploy("staging", "v1.0.0-rc1")

    reply = await api.patch(
        DEPLOYMENTS.format("staging"),
        {
            "release_candidate_version": "v1.0.0-rc1",
            "status": "failure",
            "error_message": "helm upgrade timed out",
        },
    )

    assert reply.status == 200
    assert reply.body["error_message"] == "helm upgrade timed out"
    listed = await api.deployments("staging")
    assert listed.body[0]["error_message"] == "helm upgrade timed out"


async def test_an_error_message_over_2000_characters_is_refused(api: Api) -> None:
    await api.create_rc("v1.0.0-rc1")

    reply = await api.patch(
        DEPLOYMENTS.format("staging"),
        {"release_candidate_version": "v1.0.0-rc1", "status": "error", "error_message": "x" * 2001},
    )

    assert reply.status == 400
    assert reply.body == {
        "error": "Invalid field 'error_message': String should have at most 2000 characters"
    }


@pytest.mark.parametrize(
    ("project", "environment", "version", "status", "message"),
    [
        ("Backend", "staging", "v1.0.0-rc9", 404, "Release not found"),
        ("Backend", "qa", "v1.0.0-rc1", 404, "Release environment not found"),
        ("Nope", "staging", "v1.0.0-rc1", 404, "Release project not found"),
        ("Backend", "staging", "v1.0.0", 400, "Invalid release candidate version"),
    ],
)
async def test_a_report_that_cannot_be_placed_is_refused(
    api: Api, db: Database, project: str, environment: str, version: str, status: int, message: str
) -> None:
    await api.create_rc("v1.0.0-rc1")

    reply = await api.patch(
        f"/api/releases/{project}/environments/{environment}/deployments",
        {"release_candidate_version": version, "status": "success"},
    )

    assert reply.status == status
    assert reply.body == {"error": message}
    assert await deployment_count(db) == 0


# --- listing --------------------------------------------------------------------------------


@pytest.mark.both_databases
async def test_deployments_are_listed_newest_first_with_the_fields_of_the_spec(
    api: Api, clock: TestClock
) -> None:
    await api.ship("production", "v1.0.0-rc1")
    clock.advance(minutes=10)
    await api.create_rc("v1.1.0-rc1", SHA_B)
    await api.deploy("production", "v1.1.0-rc1")

    reply = await api.deployments("production")

    assert reply.status == 200
    assert [set(d) for d in reply.body] == [
        {
            "actor",
            "deploy_end_at",
            "deploy_start_at",
            "environment_name",
            "error_message",
            "from_release_candidate_version",
            "from_release_version",
            "id",
            "release_candidate_version",
            "release_version",
            "status",
            "kind",
            "waiting_for",
            "approvals_required",
            "approvals",
        }
    ] * 2
    newest, oldest = reply.body
    assert newest["id"] > oldest["id"]
    assert (newest["release_candidate_version"], newest["status"]) == ("v1.1.0-rc1", "pending")
    assert newest["from_release_candidate_version"] == "v1.0.0-rc1"
    assert newest["from_release_version"] == "v1.0.0"
    assert at(newest["deploy_start_at"]) == clock.now
    assert newest["deploy_end_at"] is None
    assert (oldest["release_candidate_version"], oldest["status"]) == ("v1.0.0-rc1", "success")
    assert oldest["from_release_candidate_version"] is None
    assert oldest["from_release_version"] is None
    assert oldest["deploy_end_at"] is not None
    assert all(d["environment_name"] == "production" for d in reply.body)
    assert all(d["actor"] == "ci@example.com" for d in reply.body)
    assert "Link" not in reply.headers


async def test_an_environment_never_deployed_lists_nothing(api: Api) -> None:
    await api.ship("staging", "v1.0.0-rc1")

    reply = await api.deployments("production")

    assert reply.status == 200
    assert reply.body == []


@pytest.mark.both_databases
async def test_deployments_are_paginated_with_a_link_header(api: Api) -> None:
    await api.create_rc("v1.0.0-rc1")
    ids = [(await api.deploy("staging", "v1.0.0-rc1")).body["id"] for _ in range(5)]
    ids.reverse()

    pages = [
        await api.deployments("staging", per_page="2", page=str(page)) for page in (1, 2, 3, 4)
    ]

    assert [[d["id"] for d in page.body] for page in pages] == [
        ids[0:2],
        ids[2:4],
        ids[4:5],
        [],
    ]
    path = DEPLOYMENTS.format("staging")
    first, second, third, beyond = (parse_links(page) for page in pages)
    assert set(first) == {"next"}
    assert first["next"].path == path
    assert first["next"].query == {"page": "2", "per_page": "2"}
    assert set(second) == {"first", "prev", "next"}
    assert second["first"].query == {"page": "1", "per_page": "2"}
    assert second["prev"].query == {"page": "1", "per_page": "2"}
    assert second["next"].query == {"page": "3", "per_page": "2"}
    assert set(third) == {"first", "prev"}
    assert third["prev"].query == {"page": "2", "per_page": "2"}
    assert set(beyond) == {"first", "prev"}
    assert beyond["prev"].query == {"page": "3", "per_page": "2"}


async def test_deployments_default_to_ten_a_page(api: Api) -> None:
    await api.create_rc("v1.0.0-rc1")
    for _ in range(11):
        await api.deploy("staging", "v1.0.0-rc1")

    reply = await api.deployments("staging")

    assert len(reply.body) == 10
    assert parse_links(reply)["next"].query == {"page": "2", "per_page": "10"}


@pytest.mark.parametrize(("params", "message"), BAD_PAGINATION)
async def test_bad_pagination_parameters_are_refused(
    api: Api, params: dict[str, str], message: str
) -> None:
    reply = await api.deployments("staging", **params)

    assert reply.status == 400
    assert reply.body == {"error": message}


@pytest.mark.parametrize(
    ("project", "environment", "message"),
    [
        ("Backend", "qa", "Release environment not found"),
        ("Nope", "staging", "Release project not found"),
        ("Frontend", "staging", "Release environment not found"),
    ],
)
async def test_listing_where_there_is_no_environment_is_not_found(
    api: Api, project: str, environment: str, message: str
) -> None:
    reply = await api.deployments(environment, project=project)

    assert reply.status == 404
    assert reply.body == {"error": message}
