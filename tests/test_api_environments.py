"""Environments through the REST API: what runs where, what is under way, freezes."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from api.app import create_app
from bot.settings import Settings
from tests.conftest import PROJECTS_WITHOUT_STAGING_YAML, SHA_B, Api, TestClock
from tests.openapi_conformance import OpenApiConformance

ENVIRONMENTS = "/api/releases/Backend/environments"
FREEZE = ENVIRONMENTS + "/{}/freeze"

WITHOUT_STAGING = PROJECTS_WITHOUT_STAGING_YAML


def at(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


async def environments(api: Api, project: str = "Backend") -> dict[str, Any]:
    reply = await api.get(f"/api/releases/{project}/environments")
    assert reply.status == 200, reply.body
    return {e["name"]: e for e in reply.body}


# --- listing --------------------------------------------------------------------------------


async def test_environments_are_listed_as_the_projects_file_declares_them(api: Api) -> None:
    reply = await api.get(ENVIRONMENTS)

    assert reply.status == 200
    assert reply.body == [
        {
            "name": "staging",
            "production": False,
            "url": "https://staging.example.com",
            "deploy_workflow": "deploy.yml",
            "auto_deploy": True,
            "removed": False,
            "running_release_candidate_version": None,
            "running_release_version": None,
            "frozen": False,
            "freeze": None,
            "calendar_freeze": None,
            "next_freeze": None,
            "policy": {"requires": [], "soak_minutes": 0, "approvals_required": 0},
            "active_deployment": None,
        },
        {
            "name": "production",
            "production": True,
            "url": None,
            "deploy_workflow": "deploy.yml",
            "auto_deploy": False,
            "removed": False,
            "running_release_candidate_version": None,
            "running_release_version": None,
            "frozen": False,
            "freeze": None,
            "calendar_freeze": None,
            "next_freeze": None,
            "policy": {"requires": [], "soak_minutes": 0, "approvals_required": 0},
            "active_deployment": None,
        },
    ]


async def test_an_environment_without_deploy_workflow_says_so(api: Api) -> None:
    frontend = await environments(api, "Frontend")

    assert list(frontend) == ["production"]
    assert frontend["production"]["deploy_workflow"] is None
    assert frontend["production"]["production"] is True


@pytest.mark.both_databases
async def test_environments_show_the_running_version_and_the_deployment_under_way(
    api: Api,
) -> None:
    await api.ship("staging", "v1.0.0-rc1")
    await api.create_rc("v1.1.0-rc1", SHA_B)
    await api.deploy("staging", "v1.1.0-rc1")
    under_way = await api.report("staging", "v1.1.0-rc1", "in_progress")

    shown = await environments(api)

    assert shown["staging"]["running_release_candidate_version"] == "v1.0.0-rc1"
    assert shown["staging"]["running_release_version"] == "v1.0.0"
    assert shown["staging"]["active_deployment"] == under_way.body
    assert shown["production"]["running_release_candidate_version"] is None
    assert shown["production"]["active_deployment"] is None


async def test_the_running_version_is_the_newest_success(api: Api) -> None:
    await api.ship("production", "v1.0.0-rc1")
    await api.create_rc("v1.1.0-rc1", SHA_B)
    await api.deploy("production", "v1.1.0-rc1")
    await api.report("production", "v1.1.0-rc1", "failure")

    assert (await environments(api))["production"]["running_release_candidate_version"] == (
        "v1.0.0-rc1"
    )

    await api.report("production", "v1.1.0-rc1", "success")

    shown = (await environments(api))["production"]
    assert shown["running_release_candidate_version"] == "v1.1.0-rc1"
    assert shown["active_deployment"] is None


async def test_environments_of_an_unknown_project_are_not_found(api: Api) -> None:
    reply = await api.get("/api/releases/Nope/environments")

    assert reply.status == 404
    assert reply.body == {"error": "Release project not found"}


async def test_an_environment_removed_from_the_projects_file_keeps_its_history(
    api: Api,
    aiohttp_client: Any,
    database_url: str,
    tmp_path: Path,
    clock: TestClock,
    conformance: OpenApiConformance,
) -> None:
    await api.ship("staging", "v1.0.0-rc1")
    await api.create_rc("v1.1.0-rc1", SHA_B)
    under_way = await api.deploy("staging", "v1.1.0-rc1")
    smaller = tmp_path / "smaller.yml"
    smaller.write_text(WITHOUT_STAGING)
    app = create_app(
        Settings(database_url=database_url, config=smaller), clock=clock, background_work=False
    )
    restarted = Api(await aiohttp_client(app), conformance)
    restarted.token = api.token

    shown = await environments(restarted)
    history = await restarted.deployments("staging")
    deploy = await restarted.deploy("staging", "v1.1.0-rc1")
    rollback = await restarted.rollback("staging")
    reported = await restarted.report("staging", "v1.0.0-rc1", "failure")
    finished = await restarted.report("staging", "v1.1.0-rc1", "success")

    assert shown["staging"]["removed"] is True
    assert shown["staging"]["running_release_candidate_version"] == "v1.0.0-rc1"
    assert shown["production"]["removed"] is False
    assert [d["release_candidate_version"] for d in history.body] == ["v1.1.0-rc1", "v1.0.0-rc1"]
    removed = {"error": "Release environment was removed from the projects file"}
    assert (deploy.status, deploy.body) == (400, removed)
    assert (rollback.status, rollback.body) == (400, removed)
    # A new deployment through a report is refused; the one already under way may finish.
    assert (reported.status, reported.body) == (400, removed)
    assert finished.status == 200
    assert finished.body["id"] == under_way.body["id"]


# --- freezing -------------------------------------------------------------------------------


async def test_freezing_answers_with_the_frozen_environment(api: Api, clock: TestClock) -> None:
    until = clock.now + timedelta(hours=2)

    reply = await api.put(
        FREEZE.format("production"), {"reason": "Black Friday", "until": until.isoformat()}
    )

    assert reply.status == 200
    assert reply.body["name"] == "production"
    assert reply.body["frozen"] is True
    assert reply.body["freeze"] == {
        "reason": "Black Friday",
        "by": "ci@example.com",
        "since": reply.body["freeze"]["since"],
        "until": reply.body["freeze"]["until"],
    }
    assert at(reply.body["freeze"]["since"]) == clock.now
    assert at(reply.body["freeze"]["until"]) == until
    shown = await environments(api)
    assert shown["production"] == reply.body
    assert shown["staging"]["frozen"] is False


@pytest.mark.parametrize("body", [None, {}])
async def test_a_freeze_needs_no_reason_nor_end(api: Api, body: dict[str, str] | None) -> None:
    reply = await api.put(FREEZE.format("staging"), body)

    assert reply.status == 200
    assert reply.body["frozen"] is True
    assert reply.body["freeze"]["reason"] is None
    assert reply.body["freeze"]["until"] is None
    assert reply.body["freeze"]["by"] == "ci@example.com"


@pytest.mark.both_databases
async def test_an_until_in_another_time_zone_is_stored_in_utc(api: Api, clock: TestClock) -> None:
    until = clock.now + timedelta(hours=3)
    local = until.astimezone(datetime.fromisoformat("2000-01-01T00:00:00+05:30").tzinfo)

    reply = await api.put(FREEZE.format("production"), {"until": local.isoformat()})

    assert reply.status == 200
    assert reply.body["freeze"]["until"].endswith("Z")
    assert at(reply.body["freeze"]["until"]) == until


@pytest.mark.parametrize(
    ("until", "message"),
    [
        (timedelta(minutes=-1), "Freeze 'until' must be in the future"),
        (timedelta(0), "Freeze 'until' must be in the future"),
        ("2030-01-01T00:00:00", "Invalid field 'until': Input should have timezone info"),
        ("tomorrow", "Invalid field 'until': Input should be a valid datetime, input is too short"),
        (
            "9999-12-31T23:59:59-14:00",
            "Invalid field 'until': must be a time that exists in UTC (before "
            "10000-01-01T00:00:00Z)",
        ),
    ],
)
async def test_a_bad_until_is_refused(
    api: Api, clock: TestClock, until: timedelta | str, message: str
) -> None:
    text = until if isinstance(until, str) else (clock.now + until).isoformat()

    reply = await api.put(FREEZE.format("production"), {"until": text})

    assert reply.status == 400
    assert reply.body == {"error": message}
    assert (await environments(api))["production"]["frozen"] is False


async def test_a_freeze_whose_until_passed_is_over(api: Api, clock: TestClock) -> None:
    await api.create_rc("v1.0.0-rc1")
    until = clock.now + timedelta(minutes=60)
    await api.put(FREEZE.format("production"), {"until": until.isoformat()})
    clock.advance(minutes=59)

    still = await api.deploy("production", "v1.0.0-rc1")
    assert (still.status, still.body) == (400, {"error": "Environment is frozen"})

    clock.advance(minutes=1)

    shown = (await environments(api))["production"]
    assert shown["frozen"] is False
    assert shown["freeze"] is None
    deployed = await api.deploy("production", "v1.0.0-rc1")
    assert deployed.status == 201


async def test_freezing_again_keeps_since_and_takes_the_new_reason(
    api: Api, clock: TestClock
) -> None:
    first = await api.put(FREEZE.format("production"), {"reason": "audit"})
    clock.advance(minutes=10)

    again = await api.put(FREEZE.format("production"), {"reason": "incident"})

    assert again.status == 200
    assert again.body["freeze"]["reason"] == "incident"
    assert again.body["freeze"]["since"] == first.body["freeze"]["since"]


async def test_a_freeze_after_an_expired_one_starts_anew(api: Api, clock: TestClock) -> None:
    until = clock.now + timedelta(minutes=5)
    await api.put(FREEZE.format("production"), {"until": until.isoformat()})
    clock.advance(minutes=6)

    reply = await api.put(FREEZE.format("production"), {"reason": "again"})

    assert at(reply.body["freeze"]["since"]) == clock.now
    assert reply.body["freeze"]["until"] is None


async def test_unfreezing_answers_with_the_environment_and_allows_deploys(api: Api) -> None:
    await api.create_rc("v1.0.0-rc1")
    await api.put(FREEZE.format("production"), {"reason": "audit"})

    reply = await api.delete(FREEZE.format("production"))

    assert reply.status == 200
    assert reply.body["name"] == "production"
    assert reply.body["frozen"] is False
    assert reply.body["freeze"] is None
    assert (await api.deploy("production", "v1.0.0-rc1")).status == 201


async def test_unfreezing_an_environment_not_frozen_is_fine(api: Api) -> None:
    reply = await api.delete(FREEZE.format("staging"))

    assert reply.status == 200
    assert reply.body["frozen"] is False
    assert reply.body["freeze"] is None


async def test_a_reason_over_2000_characters_is_refused(api: Api) -> None:
    reply = await api.put(FREEZE.format("production"), {"reason": "x" * 2001})

    assert reply.status == 400
    assert reply.body == {
        "error": "Invalid field 'reason': String should have at most 2000 characters"
    }


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
@pytest.mark.parametrize(
    ("project", "environment", "message"),
    [
        ("Nope", "production", "Release project not found"),
        ("Backend", "qa", "Release environment not found"),
    ],
)
async def test_freezing_where_there_is_no_environment_is_not_found(
    api: Api, method: str, project: str, environment: str, message: str
) -> None:
    reply = await api.request(method, f"/api/releases/{project}/environments/{environment}/freeze")

    assert reply.status == 404
    assert reply.body == {"error": message}
