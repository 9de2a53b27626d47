"""Release candidates through the REST API: creating them, listing releases, reading one RC."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from yarl import URL

from api.app import create_app
from bot.app.releases import create_release_candidate
from bot.config.projects_file import load_projects_file
from bot.config.projects_sync import sync_projects
from bot.settings import Settings
from bot.storage.db import Database
from bot.storage.models import Release, ReleaseCandidate
from bot.storage.projects import find_project
from tests.conftest import (
    BAD_PAGINATION,
    SHA_A,
    SHA_B,
    Api,
    Reply,
    TestClock,
    make_token,
)
from tests.openapi_conformance import OpenApiConformance

RELEASES = "/api/releases/Backend/releases"


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


async def count(db: Database, model: type[Release] | type[ReleaseCandidate]) -> int:
    async with db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


# --- creating -------------------------------------------------------------------------------


async def test_creating_an_rc_answers_201_with_the_candidate(api: Api, clock: TestClock) -> None:
    reply = await api.create_rc("v1.4.0-rc2")

    assert reply.status == 201
    assert reply.body == {
        "version": "v1.4.0-rc2",
        "release_version": "v1.4.0",
        "commit": SHA_A,
        "repo": "acme/backend",
        "build_status": "ready",
        "build_error": None,
        "created_at": reply.body["created_at"],
        "rejected": None,
    }
    assert datetime.fromisoformat(reply.body["created_at"]) == clock.now


@pytest.mark.both_databases
async def test_the_same_rc_at_the_same_commit_again_is_accepted(api: Api, db: Database) -> None:
    first = await api.create_rc("v1.0.0-rc1")
    again = await api.create_rc("v1.0.0-rc1")

    assert again.status == 201
    assert again.body == first.body
    assert await count(db, ReleaseCandidate) == 1
    assert await count(db, Release) == 1


async def test_the_same_rc_at_another_commit_is_a_conflict(api: Api, db: Database) -> None:
    await api.create_rc("v1.0.0-rc1", SHA_A)

    reply = await api.create_rc("v1.0.0-rc1", SHA_B)

    assert reply.status == 409
    assert reply.body == {"error": "Release candidate already exists with a different commit"}
    shown = await api.get(f"{RELEASES}/v1.0.0-rc1")
    assert shown.body["commit"] == SHA_A


async def test_two_rcs_of_one_release_share_the_release(api: Api, db: Database) -> None:
    await api.create_rc("v1.0.0-rc1", SHA_A)
    await api.create_rc("v1.0.0-rc2", SHA_B)

    assert await count(db, Release) == 1
    assert await count(db, ReleaseCandidate) == 2


@pytest.mark.parametrize(
    "version",
    [
        "v1.0.0",
        "v1-rcx",
        "-rc1",
        "v1.0.0-rc",
        "v1.0.0-RC1",
        "v1.0.0-rc1a",
    ],
)
async def test_an_invalid_rc_version_is_refused(api: Api, db: Database, version: str) -> None:
    reply = await api.create_rc(version)

    assert reply.status == 400
    assert reply.body == {"error": "Invalid release candidate version"}
    assert await count(db, ReleaseCandidate) == 0


@pytest.mark.parametrize("version", ["v1.4.0-rc2", "2026.11.28-rc1", "release-7-rc10", "v1-rc0"])
async def test_any_release_text_with_an_rc_suffix_is_a_version(api: Api, version: str) -> None:
    reply = await api.create_rc(version)

    assert reply.status == 201
    assert reply.body["version"] == version
    assert reply.body["release_version"] == version.rsplit("-rc", 1)[0]


@pytest.mark.parametrize(
    "commit",
    [
        "abc1234",  # short
        "a" * 39,
        "a" * 41,
        "g" * 40,  # not hex
        "",
    ],
)
async def test_an_invalid_commit_is_refused(api: Api, db: Database, commit: str) -> None:
    reply = await api.create_rc("v1.0.0-rc1", commit)

    assert reply.status == 400
    assert reply.body == {"error": "Invalid commit hash"}
    assert await count(db, ReleaseCandidate) == 0
    assert await count(db, Release) == 0


async def test_an_upper_case_commit_is_stored_lower_case(api: Api) -> None:
    commit = "ABCDEF0123456789ABCDEF0123456789ABCDEF01"

    reply = await api.create_rc("v1.0.0-rc1", commit)

    assert reply.status == 201
    assert reply.body["commit"] == commit.lower()
    shown = await api.get(f"{RELEASES}/v1.0.0-rc1")
    assert shown.body["commit"] == commit.lower()
    # The same commit in either case is the same commit.
    again = await api.create_rc("v1.0.0-rc1", commit.lower())
    assert again.status == 201


@pytest.mark.parametrize("repo", ["acme/monorepo", "other/backend", "backend"])
async def test_a_repo_that_is_not_the_projects_is_not_found(
    api: Api, db: Database, repo: str
) -> None:
    reply = await api.create_rc("v1.0.0-rc1", repo=repo)

    assert reply.status == 404
    assert reply.body == {"error": "GitHub repository not found"}
    assert await count(db, ReleaseCandidate) == 0


async def test_the_repo_is_compared_without_case(api: Api) -> None:
    reply = await api.create_rc("v1.0.0-rc1", repo="ACME/Backend")

    assert reply.status == 201
    assert reply.body["repo"] == "acme/backend"


@pytest.mark.parametrize("project", ["Nope", "backend"])
async def test_an_unknown_project_is_not_found(api: Api, project: str) -> None:
    reply = await api.post(
        f"/api/releases/{project}/releases/v1.0.0-rc1", {"repo": "acme/backend", "commit": SHA_A}
    )

    assert reply.status == 404
    assert reply.body == {"error": "Release project not found"}


async def test_triggering_the_build_workflow_leaves_the_rc_building(github_api: Api) -> None:
    reply = await github_api.create_rc("v1.0.0-rc1", trigger_build_workflow=True)

    assert reply.status == 201
    assert reply.body["build_status"] == "building"


async def test_a_build_without_a_github_app_is_refused_since_nothing_would_end_it(
    api: Api, db: Database
) -> None:
    reply = await api.create_rc("v1.0.0-rc1", trigger_build_workflow=True)

    assert reply.status == 400
    assert reply.body["error"].startswith("trigger_build_workflow needs the GitHub App")
    assert await count(db, ReleaseCandidate) == 0


@pytest.mark.parametrize("extra", [{"trigger_build_workflow": False}, {}])
async def test_without_a_build_the_rc_is_ready_at_once(api: Api, extra: dict[str, Any]) -> None:
    reply = await api.create_rc("v1.0.0-rc1", **extra)

    assert reply.status == 201
    assert reply.body["build_status"] == "ready"


async def test_a_build_of_a_project_without_build_workflow_is_refused(
    api: Api, db: Database
) -> None:
    reply = await api.create_rc("frontend-1-rc1", project="Frontend", trigger_build_workflow=True)

    assert reply.status == 400
    assert reply.body == {"error": "Release project has no build workflow configured"}
    assert await count(db, ReleaseCandidate) == 0
    without = await api.create_rc("frontend-1-rc1", project="Frontend")
    assert without.status == 201
    assert without.body["repo"] == "acme/monorepo"


# --- listing releases -----------------------------------------------------------------------


@pytest.mark.both_databases
async def test_releases_are_listed_newest_first_with_their_candidates(
    github_api: Api, clock: TestClock
) -> None:
    api = github_api  # a building candidate needs the GitHub App, which runs the build
    await api.create_rc("v1.0.0-rc1", SHA_A)
    await api.create_rc("v1.0.0-rc2", SHA_B)
    clock.advance(minutes=5)
    await api.create_rc("v2.0.0-rc1", SHA_B, trigger_build_workflow=True)

    reply = await api.get(RELEASES)

    assert reply.status == 200
    assert [r["version"] for r in reply.body] == ["v2.0.0", "v1.0.0"]
    newest, oldest = reply.body
    assert datetime.fromisoformat(newest["created_at"]) == clock.now
    assert newest["release_candidates"] == [
        {
            "version": "v2.0.0-rc1",
            "release_version": "v2.0.0",
            "commit": SHA_B,
            "repo": "acme/backend",
            "build_status": "building",
            "build_error": None,
            "created_at": newest["created_at"],
            "rejected": None,
        }
    ]
    assert [(c["version"], c["commit"]) for c in oldest["release_candidates"]] == [
        ("v1.0.0-rc2", SHA_B),
        ("v1.0.0-rc1", SHA_A),
    ]
    assert "Link" not in reply.headers


async def test_a_project_without_releases_lists_none(api: Api) -> None:
    await api.create_rc("v1.0.0-rc1")

    reply = await api.get("/api/releases/Frontend/releases")

    assert reply.status == 200
    assert reply.body == []


async def test_releases_of_an_unknown_project_are_not_found(api: Api) -> None:
    reply = await api.get("/api/releases/Nope/releases")

    assert reply.status == 404
    assert reply.body == {"error": "Release project not found"}


@pytest.mark.both_databases
async def test_releases_are_paginated_with_a_link_header(api: Api) -> None:
    for number in range(1, 6):
        await api.create_rc(f"v{number}.0.0-rc1")

    first = await api.get(RELEASES, params={"per_page": "2"})
    second = await api.get(RELEASES, params={"per_page": "2", "page": "2"})
    last = await api.get(RELEASES, params={"per_page": "2", "page": "3"})
    beyond = await api.get(RELEASES, params={"per_page": "2", "page": "4"})

    assert [r["version"] for r in first.body] == ["v5.0.0", "v4.0.0"]
    assert [r["version"] for r in second.body] == ["v3.0.0", "v2.0.0"]
    assert [r["version"] for r in last.body] == ["v1.0.0"]
    assert beyond.body == []

    links = parse_links(first)
    assert set(links) == {"next"}
    assert links["next"].path == RELEASES
    assert links["next"].query == {"page": "2", "per_page": "2"}
    links = parse_links(second)
    assert set(links) == {"first", "prev", "next"}
    assert links["first"].query == {"page": "1", "per_page": "2"}
    assert links["prev"].query == {"page": "1", "per_page": "2"}
    assert links["next"].query == {"page": "3", "per_page": "2"}
    assert set(parse_links(last)) == {"first", "prev"}
    assert parse_links(last)["prev"].query == {"page": "2", "per_page": "2"}


async def test_releases_default_to_ten_a_page(api: Api) -> None:
    for number in range(1, 12):
        await api.create_rc(f"v{number}-rc1")

    reply = await api.get(RELEASES)

    assert len(reply.body) == 10
    assert reply.body[0]["version"] == "v11"
    assert parse_links(reply)["next"].query == {"page": "2", "per_page": "10"}


@pytest.mark.parametrize(("params", "message"), BAD_PAGINATION)
async def test_bad_pagination_parameters_are_refused(
    api: Api, params: dict[str, str], message: str
) -> None:
    reply = await api.get(RELEASES, params=params)

    assert reply.status == 400
    assert reply.body == {"error": message}


async def test_per_page_of_100_is_allowed(api: Api) -> None:
    await api.create_rc("v1.0.0-rc1")

    reply = await api.get(RELEASES, params={"per_page": "100", "page": "1"})

    assert reply.status == 200
    assert len(reply.body) == 1


# --- one release candidate ------------------------------------------------------------------


async def test_an_rc_is_shown_with_its_deployments_newest_first(api: Api, clock: TestClock) -> None:
    await api.ship("staging", "v1.0.0-rc1")
    clock.advance(minutes=1)
    await api.deploy("production", "v1.0.0-rc1")
    await api.create_rc("v1.0.0-rc2", SHA_B)
    await api.deploy("staging", "v1.0.0-rc2")

    reply = await api.get(f"{RELEASES}/v1.0.0-rc1")

    assert reply.status == 200
    assert reply.body["version"] == "v1.0.0-rc1"
    assert reply.body["release_version"] == "v1.0.0"
    assert reply.body["commit"] == SHA_A
    assert reply.body["build_status"] == "ready"
    assert [(d["environment_name"], d["status"]) for d in reply.body["deployments"]] == [
        ("production", "pending"),
        ("staging", "success"),
    ]
    assert all(d["release_candidate_version"] == "v1.0.0-rc1" for d in reply.body["deployments"])


async def test_an_rc_never_deployed_has_no_deployments(api: Api) -> None:
    await api.create_rc("v1.0.0-rc1")

    reply = await api.get(f"{RELEASES}/v1.0.0-rc1")

    assert reply.status == 200
    assert reply.body["deployments"] == []


@pytest.mark.parametrize("version", ["v1.0.0-rc2", "v2.0.0-rc1"])
async def test_an_unknown_rc_is_not_found(api: Api, version: str) -> None:
    await api.create_rc("v1.0.0-rc1")

    reply = await api.get(f"{RELEASES}/{version}")

    assert reply.status == 404
    assert reply.body == {"error": "Release not found"}


async def test_an_rc_of_another_project_is_not_found(api: Api) -> None:
    await api.create_rc("v1.0.0-rc1")

    reply = await api.get("/api/releases/Frontend/releases/v1.0.0-rc1")

    assert reply.status == 404
    assert reply.body == {"error": "Release not found"}


async def test_showing_an_invalid_rc_version_is_refused(api: Api) -> None:
    reply = await api.get(f"{RELEASES}/v1.0.0")

    assert reply.status == 400
    assert reply.body == {"error": "Invalid release candidate version"}


async def test_showing_an_rc_of_an_unknown_project_is_not_found(api: Api) -> None:
    reply = await api.get("/api/releases/Nope/releases/v1.0.0-rc1")

    assert reply.status == 404
    assert reply.body == {"error": "Release project not found"}


# --- builds that never finish ------------------------------------------------------------


async def test_the_server_fails_a_build_past_its_timeout_and_the_answer_says_why(
    aiohttp_client: Any,
    settings: Settings,
    clock: TestClock,
    db: Database,
    conformance: OpenApiConformance,
) -> None:
    config = load_projects_file(settings.config)
    async with db.write() as session:
        await sync_projects(session, config, clock.now)
        project = await find_project(session, "Backend")
        await create_release_candidate(
            session,
            project,
            version="v1-rc1",
            repo="acme/backend",
            commit=SHA_A,
            build=True,
            now=clock.now,
        )
    clock.advance(minutes=61)  # Backend's build: the default 60 minutes

    # The server's background work sweeps for stuck builds as it does for deployments.
    app = create_app(settings, clock=clock, background_work=True)
    api = Api(await aiohttp_client(app), conformance)
    api.token = await make_token(db)
    deadline = time.monotonic() + 30
    while (rc := await api.get(f"{RELEASES}/v1-rc1")).body["build_status"] == "building":
        assert time.monotonic() < deadline, "the build was never timed out"
        await asyncio.sleep(0.05)

    assert (rc.status, rc.body["build_status"], rc.body["build_error"]) == (
        200,
        "failed",
        "Build timed out: no result after 60 minutes",
    )
