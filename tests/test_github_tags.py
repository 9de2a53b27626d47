"""Tags make release candidates: GitHub's `push` and `create` examples, re-addressed to the test
repositories and tags, signed, posted to the real app; the `create` path resolved through the
fake GitHub's Git refs; what they leave read back through the API and the database."""

from __future__ import annotations

import copy
import secrets
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.github.outbound.worker import OutboxWorker
from bot.storage.db import Database
from bot.storage.models import OutboxItem, Project, ReleaseCandidate
from tests.conftest import (
    BACKEND_INSTALLATION,
    MONOREPO_INSTALLATION,
    PROJECTS_YAML,
    SHA_A,
    SHA_B,
    Api,
    Webhooks,
    github_payload,
)
from tests.fake_github import FakeGitHub

# The test projects, plus build inputs for Backend, and two more projects on the monorepo:
# `Api` (prefix `api-`) and `Tools` (no prefix, auto-deployed to production, no workflows).
TAGS_PROJECTS_YAML = (
    PROJECTS_YAML.replace(
        "      workflow: build.yml\n",
        "      workflow: build.yml\n      inputs: {target: release, debug: false, shards: 3}\n",
    )
    + """
  - name: Api
    repo: acme/monorepo
    tag_prefix: api-
    environments:
      - name: production
        production: true
  - name: Tools
    repo: Acme/Monorepo
    environments:
      - name: production
        production: true
        auto_deploy: true
"""
)

INSTALLATIONS = {"acme/backend": BACKEND_INSTALLATION, "acme/monorepo": MONOREPO_INSTALLATION}
INSTALLATIONS["acme/backend\x00"] = BACKEND_INSTALLATION  # a forged payload's
BUILD_INPUTS = {"target": "release", "debug": "false", "shards": "3"}


@pytest.fixture
def projects_file(tmp_path: Path) -> Path:
    path = tmp_path / "tarmac.yml"
    path.write_text(TAGS_PROJECTS_YAML)
    return path


# --- GitHub's payloads, re-addressed ------------------------------------------------------


def readdress(payload: dict[str, Any], repo: str) -> dict[str, Any]:
    """Point one of GitHub's examples at `repo` and the installation serving it."""
    owner, name = repo.split("/")
    payload["repository"]["full_name"] = repo
    payload["repository"]["name"] = name
    payload["repository"]["owner"]["login"] = owner
    payload["installation"] = {
        "id": INSTALLATIONS[repo.lower()],
        "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNQ==",
    }
    return payload


def tag_push(
    tag: str, commit: str, *, repo: str = "acme/backend", annotated: bool = False
) -> dict[str, Any]:
    """The `push` of a new tag (GitHub's only tag-creation push example is GHES 3.5's). For an
    annotated tag `after` is the tag object's SHA and `head_commit.id` the commit."""
    payload = readdress(github_payload("push", flavour="ghes-35"), repo)
    payload["ref"] = f"refs/tags/{tag}"
    payload["before"] = "0" * 40
    payload["after"] = secrets.token_hex(20) if annotated else commit
    payload["head_commit"]["id"] = commit
    payload["created"] = True
    payload["deleted"] = False
    return payload


def tag_deletion(tag: str, commit: str, *, repo: str = "acme/backend") -> dict[str, Any]:
    payload = readdress(github_payload("push", "with-installation"), repo)
    assert payload["deleted"] is True
    assert payload["head_commit"] is None
    payload["ref"] = f"refs/tags/{tag}"
    payload["before"] = commit
    return payload


def tag_create(tag: str, *, repo: str = "acme/backend") -> dict[str, Any]:
    """The `create` of a tag: its short name and no SHA at all."""
    payload = readdress(github_payload("create", "with-installation"), repo)
    assert payload["ref_type"] == "tag"
    payload["ref"] = tag
    return payload


def branch_push(branch: str, commit: str) -> dict[str, Any]:
    payload = readdress(github_payload("push", "with-new-branch"), "acme/backend")
    payload["ref"] = f"refs/heads/{branch}"
    payload["after"] = commit
    return payload


# --- reading back -----------------------------------------------------------------------


async def candidates(db: Database, project: str = "Backend") -> list[ReleaseCandidate]:
    async with db.read() as session:
        rows = await session.scalars(
            select(ReleaseCandidate)
            .join(Project, Project.id == ReleaseCandidate.project_id)
            .where(Project.name == project)
            .order_by(ReleaseCandidate.id)
        )
        return list(rows)


async def outbox_actions(db: Database) -> list[str]:
    async with db.read() as session:
        return list(await session.scalars(select(OutboxItem.action).order_by(OutboxItem.id)))


async def accepted(webhook: Webhooks, event: str, payload: Any, **kwargs: Any) -> str:
    reply = await webhook(event, payload, **kwargs)
    assert reply.status == 202, reply.body
    assert reply.body["status"] == "accepted", reply.body
    return str(reply.body["outcome"])


async def ignored(webhook: Webhooks, event: str, payload: Any) -> str:
    reply = await webhook(event, payload)
    assert (reply.status, reply.body["status"]) == (202, "ignored"), reply.body
    return str(reply.body["outcome"])


def ref_lookups(fake: FakeGitHub) -> list[str]:
    return [c.path for c in fake.calls_to("GET", r"/git/")]


# --- push -------------------------------------------------------------------------------


async def test_a_pushed_tag_makes_a_building_rc_whose_build_runs_on_the_tag(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub, db: Database
) -> None:
    outcome = await accepted(webhook, "push", tag_push("v1.4.0-rc2", SHA_A.upper()))

    assert outcome == "release candidate Backend v1.4.0-rc2 created; building"
    reply = await github_api.get("/api/releases/Backend/releases/v1.4.0-rc2")
    assert reply.body["commit"] == SHA_A
    assert reply.body["release_version"] == "v1.4.0"
    assert reply.body["build_status"] == "building"
    [candidate] = await candidates(db)
    assert candidate.tag == "v1.4.0-rc2"

    await outbox.drain()

    [run] = fake_github.runs.values()
    assert (run.repo, run.workflow, run.ref) == ("acme/backend", "build.yml", "v1.4.0-rc2")
    assert run.inputs == {
        **BUILD_INPUTS,
        "tarmac_release_candidate_version": "v1.4.0-rc2",
        "tarmac_commit_sha": SHA_A,
    }
    [dispatch] = fake_github.calls_to("POST", r"/actions/workflows/build\.yml/dispatches$")
    assert dispatch.body["return_run_details"] is True
    [candidate] = await candidates(db)
    assert candidate.build_run_id == run.id
    assert candidate.build_run_url == f"https://github.com/acme/backend/actions/runs/{run.id}"
    assert ref_lookups(fake_github) == []  # the push named the commit


async def test_an_annotated_tag_push_makes_the_rc_at_the_commit_not_the_tag_object(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub, db: Database
) -> None:
    payload = tag_push("v2-rc1", SHA_B, annotated=True)
    assert payload["after"] != SHA_B

    await accepted(webhook, "push", payload)
    await outbox.drain()

    [candidate] = await candidates(db)
    assert (candidate.version, candidate.commit_sha, candidate.tag) == ("v2-rc1", SHA_B, "v2-rc1")
    [run] = fake_github.runs.values()
    assert run.inputs["tarmac_commit_sha"] == SHA_B


async def test_a_tag_without_build_makes_a_ready_rc_that_is_auto_deployed(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    outcome = await accepted(webhook, "push", tag_push("v3-rc1", SHA_A, repo="ACME/monorepo"))

    assert outcome == "release candidate Tools v3-rc1 created; ready"
    [deployment] = (await github_api.deployments("production", project="Tools")).body
    assert deployment["release_candidate_version"] == "v3-rc1"
    assert deployment["actor"] == "tarmac (auto-deploy)"
    await outbox.drain()
    [mirrored] = fake_github.deployments["acme/monorepo"]
    assert mirrored["environment"] == "production"
    assert fake_github.runs == {}  # no build, no deploy workflow


# --- create -----------------------------------------------------------------------------


@pytest.mark.parametrize("annotated", [False, True], ids=["lightweight", "annotated"])
async def test_a_create_alone_resolves_the_tag_through_git_refs(
    annotated: bool,
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    db: Database,
) -> None:
    fake_github.add_tag("acme/backend", "v1-rc3", SHA_B, annotated=annotated)

    outcome = await accepted(webhook, "create", tag_create("v1-rc3"))

    assert outcome == "tag v1-rc3: resolving its commit for Backend v1-rc3"
    assert await candidates(db) == []  # no SHA in a `create`
    await outbox.drain()

    [candidate] = await candidates(db)
    assert (candidate.version, candidate.commit_sha, candidate.tag) == ("v1-rc3", SHA_B, "v1-rc3")
    assert candidate.build_status == "building"
    lookups = ref_lookups(fake_github)
    assert lookups[0] == "/repos/acme/backend/git/ref/tags/v1-rc3"
    assert len(lookups) == (2 if annotated else 1)
    [run] = fake_github.runs.values()  # built on the tag, like a pushed one
    assert (run.ref, run.inputs["tarmac_commit_sha"]) == ("v1-rc3", SHA_B)
    assert candidate.build_run_id == run.id


async def test_a_tag_deleted_before_it_is_resolved_makes_no_rc(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub, db: Database
) -> None:
    await accepted(webhook, "create", tag_create("v1-rc1"))

    await outbox.drain()  # the fake has no such tag: 404

    assert await candidates(db) == []
    async with db.read() as session:
        [item] = await session.scalars(select(OutboxItem))
    assert (item.action, item.state) == ("resolve_tag", "delivered")
    assert fake_github.runs == {}


# --- both events, any order, and again --------------------------------------------------


@pytest.mark.both_databases
@pytest.mark.parametrize(
    "order",
    ["push, create", "create, push", "create, resolved, push"],
)
async def test_create_and_push_of_one_tag_make_one_rc_in_either_order(
    order: str,
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    db: Database,
) -> None:
    fake_github.add_tag("acme/backend", "v5-rc1", SHA_A, annotated=True)
    outcomes = []
    for step in order.split(", "):
        if step == "push":
            outcomes.append(await accepted(webhook, "push", tag_push("v5-rc1", SHA_A)))
        elif step == "create":
            outcomes.append(await accepted(webhook, "create", tag_create("v5-rc1")))
        else:
            await outbox.drain()

    await outbox.drain()

    [candidate] = await candidates(db)
    assert (candidate.commit_sha, candidate.tag, candidate.build_status) == (
        SHA_A,
        "v5-rc1",
        "building",
    )
    assert len(fake_github.runs) == 1  # built once
    if order == "push, create":
        assert outcomes[1] == "release candidate Backend v5-rc1 exists"
        assert ref_lookups(fake_github) == []
    if order == "create, push":
        assert ref_lookups(fake_github) == []  # the push made it before the lookup was due
    if order == "create, resolved, push":
        assert outcomes[1] == "release candidate Backend v5-rc1 exists"


@pytest.mark.both_databases
async def test_a_redelivered_or_repeated_tag_push_changes_nothing_more(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub, db: Database
) -> None:
    payload = tag_push("v1-rc1", SHA_A)
    delivery = str(uuid.uuid4())
    await accepted(webhook, "push", payload, delivery_id=delivery)
    await outbox.drain()

    again = await webhook("push", payload, delivery_id=delivery)
    assert (again.status, again.body["status"]) == (200, "duplicate")
    # The same tag in another delivery (GitHub sends no such thing, but nothing forbids it).
    repeated = await accepted(webhook, "push", copy.deepcopy(payload))
    await outbox.drain()

    assert repeated == "release candidate Backend v1-rc1 exists"
    assert len(await candidates(db)) == 1
    assert len(fake_github.runs) == 1
    assert await outbox_actions(db) == ["dispatch_build_workflow"]


# --- which project a tag belongs to -----------------------------------------------------


async def test_the_longest_matching_tag_prefix_picks_the_project_in_a_monorepo(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub, db: Database
) -> None:
    monorepo = "acme/monorepo"
    assert await accepted(webhook, "push", tag_push("frontend/v2-rc1", SHA_A, repo=monorepo)) == (
        "release candidate Frontend v2-rc1 created; ready"
    )
    # `api-` is the Api's prefix: never the prefix-less Tools' `api-v1-rc1`.
    assert await accepted(webhook, "push", tag_push("api-v1-rc1", SHA_B, repo=monorepo)) == (
        "release candidate Api v1-rc1 created; ready"
    )
    assert await accepted(webhook, "push", tag_push("v7-rc2", SHA_A, repo=monorepo)) == (
        "release candidate Tools v7-rc2 created; ready"
    )
    # A tag with the prefix but no RC version after it is the prefix's project's, and no RC.
    outcome = await ignored(webhook, "push", tag_push("api-nightly", SHA_A, repo=monorepo))
    assert outcome == "ignored: tag api-nightly is no release candidate of a project"
    # A `create` with a slash in the tag resolves it through the multi-segment ref path.
    fake_github.add_tag(monorepo, "frontend/v2-rc2", SHA_B)
    await accepted(webhook, "create", tag_create("frontend/v2-rc2", repo=monorepo))
    await outbox.drain()

    assert [(c.version, c.tag) for c in await candidates(db, "Frontend")] == [
        ("v2-rc1", "frontend/v2-rc1"),
        ("v2-rc2", "frontend/v2-rc2"),
    ]
    assert [c.commit_sha for c in await candidates(db, "Frontend")] == [SHA_A, SHA_B]
    assert [c.version for c in await candidates(db, "Api")] == ["v1-rc1"]
    assert [c.version for c in await candidates(db, "Tools")] == ["v7-rc2"]
    assert fake_github.calls_to("GET", r"/git/ref/tags/frontend/v2-rc2$")


@pytest.mark.parametrize(
    ("event", "payload", "reason"),
    [
        ("push", lambda: tag_push("nightly", SHA_A), "tag nightly is no release candidate"),
        ("push", lambda: tag_push("v1.0.0", SHA_A), "tag v1.0.0 is no release candidate"),
        ("create", lambda: tag_create("release-candidate"), "no release candidate"),
        ("push", lambda: branch_push("v1-rc1", SHA_A), "not a tag"),
        ("create", lambda: {**tag_create("v1-rc1"), "ref_type": "branch"}, "not a tag"),
        ("push", lambda: tag_deletion("v1-rc1", SHA_A), "tag v1-rc1 deleted"),
        # Forged names: ignored without being echoed into the delivery's stored outcome (a NUL
        # anywhere in a payload makes the whole delivery ignored before any handler runs).
        ("push", lambda: tag_push("v1-rc1\x00", SHA_A), "ignored: NUL character in the payload"),
        ("create", lambda: tag_create("v1\x00-rc1"), "ignored: NUL character in the payload"),
        ("create", lambda: tag_create("v1 -rc1"), "ignored: not a valid tag name"),
        ("create", lambda: tag_create("v1\x1b-rc1"), "ignored: not a valid tag name"),
        ("push", lambda: tag_push("v1-rc1", SHA_A, repo="acme/backend\x00"), "NUL character"),
    ],
    ids=[
        "no-rc",
        "release-only",
        "create-no-rc",
        "branch",
        "branch-create",
        "deletion",
        "nul-push",
        "nul-create",
        "space",
        "escape",
        "nul-repo",
    ],
)
async def test_tags_that_make_no_rc_are_ignored(
    event: str,
    payload: Any,
    reason: str,
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    db: Database,
) -> None:
    outcome = await ignored(webhook, event, payload())

    assert reason in outcome
    assert await candidates(db) == []
    assert await outbox_actions(db) == []


async def test_deleting_a_tag_leaves_its_rc_as_it_was(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub, db: Database
) -> None:
    await accepted(webhook, "push", tag_push("v1-rc1", SHA_A))
    await outbox.drain()
    [before] = await candidates(db)

    outcome = await ignored(webhook, "push", tag_deletion("v1-rc1", SHA_A))
    await outbox.drain()

    assert outcome == "ignored: tag v1-rc1 deleted"
    [after] = await candidates(db)
    assert (after.id, after.commit_sha, after.build_status, after.build_run_id) == (
        before.id,
        before.commit_sha,
        before.build_status,
        before.build_run_id,
    )
    assert len(fake_github.runs) == 1


async def test_a_tag_at_another_commit_than_its_existing_rc_is_refused_not_failed(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub, db: Database
) -> None:
    created = await github_api.create_rc("v1-rc1", SHA_A)
    assert created.status == 201

    outcome = await ignored(webhook, "push", tag_push("v1-rc1", SHA_B))
    await outbox.drain()

    assert outcome == (
        "ignored: release candidate Backend v1-rc1: "
        "Release candidate already exists with a different commit"
    )
    [candidate] = await candidates(db)
    assert (candidate.commit_sha, candidate.tag, candidate.build_status) == (SHA_A, None, "ready")
    assert fake_github.runs == {}
