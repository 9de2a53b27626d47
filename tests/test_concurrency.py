"""Many requests for one environment at the same moment leave one consistent history.

Every test fires its requests at once through the real app (asyncio.gather) on each backend:
PostgreSQL serialises them with `SELECT … FOR UPDATE` on the environment row, SQLite with one
writer. Whatever order the server picked, the invariants asserted here must hold.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from bot.app.operations import Mirror, report_status
from bot.app.releases import create_release_candidate
from bot.config.projects_file import parse_projects
from bot.config.projects_sync import sync_projects
from bot.domain.rollback import CANCELED_BY_ROLLBACK
from bot.domain.statuses import ACTIVE_STATUSES, FINAL_STATUSES, DeploymentStatus
from bot.storage.db import Database
from bot.storage.models import Deployment, ReleaseCandidate
from bot.storage.projects import find_project
from tests.conftest import PROJECTS_YAML, SHA_A, SHA_B, Api, Reply

# SQL is what these tests check: both databases in make test (tests/databases.py).
pytestmark = pytest.mark.both_databases

ENVIRONMENT = "production"


def assert_no_server_error(replies: list[Reply]) -> None:
    failed = [(reply.status, reply.body) for reply in replies if reply.status >= 500]
    assert failed == []


async def history(api: Api, environment: str = ENVIRONMENT) -> list[dict[str, Any]]:
    """Every deployment of the environment, oldest first."""
    deployments: list[dict[str, Any]] = []
    page = 1
    while True:
        reply = await api.deployments(environment, per_page="100", page=str(page))
        assert reply.status == 200, reply.body
        deployments.extend(reply.body)
        if len(reply.body) < 100:
            return sorted(deployments, key=lambda d: d["id"])
        page += 1


def assert_from_chain(deployments: list[dict[str, Any]]) -> None:
    """Each deployment's from_* is the RC of the one before it (all reached success in turn)."""
    previous = None
    for deployment in deployments:
        assert deployment["from_release_candidate_version"] == previous, deployment
        previous = deployment["release_candidate_version"]


async def create_rcs(api: Api, versions: list[str]) -> None:
    replies = await asyncio.gather(*(api.create_rc(version) for version in versions))
    assert [reply.status for reply in replies] == [201] * len(versions), replies


async def test_concurrent_success_reports_chain_their_from_versions(api: Api) -> None:
    versions = [f"v1-rc{n}" for n in range(1, 26)]
    await create_rcs(api, versions)

    replies = await asyncio.gather(
        *(api.report(ENVIRONMENT, version, "success") for version in versions)
    )

    assert_no_server_error(replies)
    assert [reply.status for reply in replies] == [200] * 25
    deployments = await history(api)
    assert len(deployments) == 25
    assert sorted(d["release_candidate_version"] for d in deployments) == sorted(versions)
    assert {(d["kind"], d["status"]) for d in deployments} == {("reported", "success")}
    assert_from_chain(deployments)
    assert {reply.body["id"] for reply in replies} == {d["id"] for d in deployments}


async def test_concurrent_rollbacks_leave_one_active_deployment(api: Api) -> None:
    for n in range(1, 6):
        await api.ship(ENVIRONMENT, f"v1-rc{n}")

    replies = await asyncio.gather(*(api.rollback(ENVIRONMENT) for _ in range(20)))

    assert_no_server_error(replies)
    assert [reply.status for reply in replies] == [201] * 20, [r.body for r in replies]
    deployments = await history(api)
    assert len(deployments) == 25
    shipped, rollbacks = deployments[:5], deployments[5:]
    assert [(d["kind"], d["status"]) for d in shipped] == [("deploy", "success")] * 5
    assert_from_chain(shipped)
    assert {d["kind"] for d in rollbacks} == {"rollback"}
    assert {reply.body["id"] for reply in replies} == {d["id"] for d in rollbacks}

    # Exactly one active deployment: the last rollback; it canceled the one before it, and so on.
    active = [d for d in deployments if d["status"] in ACTIVE_STATUSES]
    assert [d["id"] for d in active] == [rollbacks[-1]["id"]]
    for canceled in rollbacks[:-1]:
        assert (canceled["status"], canceled["error_message"]) == (
            "canceled",
            CANCELED_BY_ROLLBACK,
        )
    # Whatever the order, every rollback goes back to rc4: the first rolls away from rc5, and
    # each later one finds a rollback under way and keeps its target, never forward to rc5.
    targets = [
        (d["release_candidate_version"], d["from_release_candidate_version"]) for d in rollbacks
    ]
    assert targets == [("v1-rc4", "v1-rc5")] * 20


async def test_deploys_reports_and_rollbacks_at_once_keep_history_consistent(api: Api) -> None:
    """10 deploys, 10 success reports of the same RCs and 5 rollbacks, all at once.

    Seven RCs shipped first guarantee every rollback a target whatever the order: a rollback
    marks one RC as rolled back, so at most five of the seven are marked and at least one
    unmarked is not the running one.
    """
    for n in range(1, 8):
        await api.ship(ENVIRONMENT, f"v1-rc{n}")
    new_versions = [f"v2-rc{n}" for n in range(1, 11)]
    await create_rcs(api, new_versions)

    calls: list[tuple[str, Any]] = []
    for index, version in enumerate(new_versions):
        calls.append(("deploy", api.deploy(ENVIRONMENT, version)))
        calls.append(("report", api.report(ENVIRONMENT, version, "success")))
        if index % 2 == 1:
            calls.append(("rollback", api.rollback(ENVIRONMENT)))
    replies = await asyncio.gather(*(call for _, call in calls))
    by_kind: dict[str, list[Reply]] = {"deploy": [], "report": [], "rollback": []}
    for (kind, _), reply in zip(calls, replies, strict=True):
        by_kind[kind].append(reply)

    assert_no_server_error(list(replies))
    assert [r.status for r in by_kind["deploy"]] == [201] * 10
    assert [r.status for r in by_kind["report"]] == [200] * 10
    assert [r.status for r in by_kind["rollback"]] == [201] * 5, [
        r.body for r in by_kind["rollback"]
    ]
    for version, reply in zip(new_versions, by_kind["report"], strict=True):
        assert (reply.body["release_candidate_version"], reply.body["status"]) == (
            version,
            "success",
        )

    deployments = await history(api)
    created_by_reports = [r for r in by_kind["report"] if r.body["kind"] == "reported"]
    assert len(deployments) == 7 + 10 + len(created_by_reports) + 5
    # A report either finished the deploy of its RC or, when it came first or the deploy was
    # already canceled by a rollback, recorded a deployment of its own.
    deploy_ids = {r.body["release_candidate_version"]: r.body["id"] for r in by_kind["deploy"]}
    for reply in by_kind["report"]:
        if reply.body["kind"] == "deploy":
            assert reply.body["id"] == deploy_ids[reply.body["release_candidate_version"]]
        else:
            assert reply.body["kind"] == "reported"
    rollback_ids = sorted(r.body["id"] for r in by_kind["rollback"])
    assert [d["id"] for d in deployments if d["kind"] == "rollback"] == rollback_ids

    # A rollback cancels everything under way, and so does a newer deployment (superseding):
    # at most one deployment is still active, and everything older than it has ended.
    active = [d["id"] for d in deployments if d["status"] in ACTIVE_STATUSES]
    assert len(active) <= 1, active
    for deployment in deployments:
        if active and deployment["id"] < active[0]:
            assert deployment["status"] in FINAL_STATUSES, deployment
    for deployment in deployments:
        if deployment["status"] != "canceled":
            continue
        message = deployment["error_message"]
        if message == CANCELED_BY_ROLLBACK:
            assert any(r > deployment["id"] for r in rollback_ids)
        else:
            superseding = int(message.removeprefix("Superseded by deployment "))
            assert superseding > deployment["id"], deployment

    # from_* is what ran when the deployment was created: the RC of an earlier success, with
    # no deployment that was already a success when recorded (a report) in between.
    assert_from_chain(deployments[:7])
    for position, deployment in enumerate(deployments[7:], start=7):
        earlier = deployments[:position]
        source = deployment["from_release_candidate_version"]
        successes = [
            d
            for d in earlier
            if d["status"] == "success" and d["release_candidate_version"] == source
        ]
        assert successes, deployment
        skipped = [
            d
            for d in earlier
            if d["id"] > successes[-1]["id"]
            and d["kind"] == "reported"
            and d["status"] == "success"
        ]
        assert skipped == [], deployment

    environments = await api.get("/api/releases/Backend/environments")
    production = next(e for e in environments.body if e["name"] == ENVIRONMENT)
    newest_success = [d for d in deployments if d["status"] == "success"][-1]
    assert (
        production["running_release_candidate_version"]
        == (newest_success["release_candidate_version"])
    )


async def test_concurrent_identical_rc_creations_make_one_rc(api: Api, db: Database) -> None:
    replies = await asyncio.gather(*(api.create_rc("v3.0.0-rc1", SHA_B) for _ in range(20)))

    assert_no_server_error(replies)
    assert [reply.status for reply in replies] == [201] * 20
    assert all(reply.body == replies[0].body for reply in replies)
    async with db.read() as session:
        assert await session.scalar(select(func.count()).select_from(ReleaseCandidate)) == 1
    listed = await api.get("/api/releases/Backend/releases")
    assert [
        (release["version"], [rc["version"] for rc in release["release_candidates"]])
        for release in listed.body
    ] == [("v3.0.0", ["v3.0.0-rc1"])]


async def test_two_replicas_writing_to_one_environment_keep_the_chain(
    db: Database, database_url: str
) -> None:
    """Two Database objects on one database, as two replicas would have."""
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    config = parse_projects(yaml.safe_load(PROJECTS_YAML), Path("tarmac.yml"))
    async with db.write() as session:
        await sync_projects(session, config, now)
    versions = [f"v1-rc{n}" for n in range(1, 25)]
    for version in versions:
        async with db.write() as session:
            await create_release_candidate(
                session,
                await find_project(session, "Backend"),
                version=version,
                repo="acme/backend",
                commit=SHA_A,
                build=False,
                now=now,
            )

    other_replica = Database.from_url(database_url)

    async def report(replica: Database, version: str) -> None:
        async with replica.write() as session:
            await report_status(
                session,
                Mirror(enabled=False),
                project_name="Backend",
                environment_name=ENVIRONMENT,
                version=version,
                status=DeploymentStatus.SUCCESS,
                actor=None,
                clock=lambda: now,
            )

    try:
        await asyncio.gather(
            *(
                report(db if index % 2 else other_replica, version)
                for index, version in enumerate(versions)
            )
        )
    finally:
        await other_replica.dispose()

    async with db.read() as session:
        rows = list(await session.scalars(select(Deployment).order_by(Deployment.id)))
    chain: list[dict[str, Any]] = [
        {
            "release_candidate_version": d.release_candidate.version,
            "from_release_candidate_version": (
                d.from_release_candidate.version if d.from_release_candidate else None
            ),
        }
        for d in rows
    ]
    assert len(chain) == len(versions)
    assert sorted(d["release_candidate_version"] for d in chain) == sorted(versions)
    assert_from_chain(chain)
