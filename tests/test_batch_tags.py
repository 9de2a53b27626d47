"""Tags handled as a batch of the inbox (bot/storage/batch_reads.py): the batch reads its
repositories' projects, releases and RCs once, and writes its new RCs together, yet each
delivery does what it would have done alone, in arrival order: two RCs of one release, both
events of one tag in either order, a tag moved to another commit, builds and auto-deploys."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import event, select

from bot.app.operations import Mirror
from bot.config.projects_file import ProjectsConfig, parse_projects
from bot.config.projects_sync import sync_projects
from bot.github.inbound.inbox import InboxReader
from bot.service import Service, open_service
from bot.settings import Settings
from bot.storage import inbox
from bot.storage.models import Deployment, OutboxItem, ReleaseCandidate, WebhookDelivery
from tests.conftest import PROJECTS_YAML, SHA_A, SHA_B, TestClock
from tests.test_github_tags import tag_create, tag_push

# SQL is what these tests check: both databases in make test (tests/databases.py).
pytestmark = pytest.mark.both_databases

MIRRORED = Mirror(enabled=True)
# Beside Backend (a build) and Frontend (no build, nothing auto-deployed): Web, in Frontend's
# repository, no build, with an environment that takes auto-deploy.
BATCH_YAML = PROJECTS_YAML + (
    "  - name: Web\n    repo: acme/monorepo\n    tag_prefix: web/\n    environments:\n"
    "      - name: staging\n        deploy_workflow: deploy.yml\n        auto_deploy: true\n"
)

Delivery = tuple[str, str, dict[str, Any]]  # id, event, payload


@pytest.fixture
async def service(settings: Settings, clock: TestClock) -> AsyncIterator[Service]:
    opened = await open_service(settings, clock=clock)
    yield opened
    await opened.close()


@pytest.fixture
async def projects(service: Service, clock: TestClock) -> ProjectsConfig:
    config = parse_projects(yaml.safe_load(BATCH_YAML), Path("tarmac.yml"))
    async with service.db.write() as session:
        await sync_projects(session, config, clock())
    return config


async def handle_as_one_batch(
    service: Service, projects: ProjectsConfig, clock: TestClock, deliveries: list[Delivery]
) -> tuple[dict[str, str], int]:
    """The deliveries appended, then handled in one transaction of the reader: each one's
    stored outcome, and how many statements the transaction ran."""
    arrivals = [inbox.Arrival(i, e, json.dumps(p).encode()) for i, e, p in deliveries]
    async with service.db.write() as session:
        await inbox.append(session, arrivals, clock())
    reader = InboxReader(service.db, projects, clock, mirror=MIRRORED, max_batch=len(arrivals))
    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    engine = service.db.engine.sync_engine
    event.listen(engine, "before_execute", count)
    try:
        await reader.drain_once(look_first=False)
    finally:
        event.remove(engine, "before_execute", count)
    assert reader.transactions == 1
    async with service.db.read() as session:
        rows = await session.scalars(select(WebhookDelivery))
        outcomes = {r.delivery_id: r.outcome for r in rows}
    assert set(outcomes) >= {i for i, _, _ in deliveries}
    return outcomes, statements


async def made(service: Service) -> dict[str, ReleaseCandidate]:
    async with service.db.read() as session:
        return {rc.version: rc for rc in await session.scalars(select(ReleaseCandidate))}


def frontend_push(version: str, commit: str = SHA_A) -> dict[str, Any]:
    return tag_push(f"frontend/{version}", commit, repo="acme/monorepo")


async def test_a_batch_of_tags_does_what_each_would_alone(
    service: Service, projects: ProjectsConfig, clock: TestClock
) -> None:
    deliveries: list[Delivery] = [
        ("f1", "push", frontend_push("v2.0.0-rc1")),
        ("f2", "push", frontend_push("v2.0.0-rc2")),  # the release the batch just made
        ("f3", "create", tag_create("frontend/v2.1.0-rc1", repo="acme/monorepo")),
        ("f4", "push", frontend_push("v2.1.0-rc1")),  # after its create: made now
        ("f5", "push", frontend_push("v2.2.0-rc1")),
        ("f6", "create", tag_create("frontend/v2.2.0-rc1", repo="acme/monorepo")),  # exists
        ("f7", "push", frontend_push("v2.0.0-rc1", SHA_B)),  # moved: refused, not failed
        ("f8", "push", frontend_push("v2.0.0-rc1")),  # the same again: nothing more
        ("b1", "push", tag_push("v3.0.0-rc1", SHA_A)),  # a build, on the RC's id
        ("w1", "push", tag_push("web/v4.0.0-rc1", SHA_A, repo="acme/monorepo")),  # auto-deployed
        ("b2", "push", tag_push("v3.0.0-rc2", SHA_B)),
    ]

    outcomes, _ = await handle_as_one_batch(service, projects, clock, deliveries)

    frontend = "release candidate Frontend"
    assert {i: outcomes[i] for i, _, _ in deliveries} == {
        "f1": f"{frontend} v2.0.0-rc1 created; ready",
        "f2": f"{frontend} v2.0.0-rc2 created; ready",
        "f3": "tag frontend/v2.1.0-rc1: resolving its commit for Frontend v2.1.0-rc1",
        "f4": f"{frontend} v2.1.0-rc1 created; ready",
        "f5": f"{frontend} v2.2.0-rc1 created; ready",
        "f6": f"{frontend} v2.2.0-rc1 exists",
        "f7": (
            f"ignored: {frontend} v2.0.0-rc1: "
            "Release candidate already exists with a different commit"
        ),
        "f8": f"{frontend} v2.0.0-rc1 exists",
        "b1": "release candidate Backend v3.0.0-rc1 created; building",
        "w1": "release candidate Web v4.0.0-rc1 created; ready",
        "b2": "release candidate Backend v3.0.0-rc2 created; building",
    }
    rcs = await made(service)
    assert set(rcs) == {f"v2.{n}" for n in ("0.0-rc1", "0.0-rc2", "1.0-rc1", "2.0-rc1")} | {
        "v3.0.0-rc1",
        "v3.0.0-rc2",
        "v4.0.0-rc1",
    }
    assert rcs["v2.0.0-rc1"].commit_sha == SHA_A
    assert rcs["v2.0.0-rc1"].release_id == rcs["v2.0.0-rc2"].release_id
    async with service.db.read() as session:
        builds = list(
            await session.scalars(
                select(OutboxItem.release_candidate_id)
                .where(OutboxItem.action == "dispatch_build_workflow")
                .order_by(OutboxItem.id)
            )
        )
        deployed = list(await session.scalars(select(Deployment.release_candidate_id)))
    assert builds == [rcs["v3.0.0-rc1"].id, rcs["v3.0.0-rc2"].id]
    assert deployed == [rcs["v4.0.0-rc1"].id]


async def test_a_batch_of_tags_runs_as_many_statements_for_twenty_four_as_for_three(
    service: Service, projects: ProjectsConfig, clock: TestClock
) -> None:
    def pushes(label: str, count: int) -> list[Delivery]:
        return [(f"{label}{n}", "push", frontend_push(f"v{label}.{n}-rc1")) for n in range(count)]

    few_outcomes, few = await handle_as_one_batch(service, projects, clock, pushes("5", 3))
    many_outcomes, many = await handle_as_one_batch(service, projects, clock, pushes("6", 24))

    assert len(await made(service)) == 27
    assert all(o.endswith("created; ready") for o in {**few_outcomes, **many_outcomes}.values())
    # Before the batch read ahead, each tag ran five statements of its own.
    assert many == few
