"""GraphQL at /api/graphql: the same tokens, scopes, operations and refusals as REST, batched
reads (a counted, bounded number of SQL statements), cursor pagination, limits, and the SDL in
docs/ kept in step with the schema."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import event

from api.app import create_app
from api.graphql.limits import MAX_COST, MAX_DEPTH
from api.graphql.schema import schema
from api.graphql.sdl import SDL_PATH
from api.keys import SERVICE
from bot.domain.changes import ChangeReport, Commit, PathFilter, PullRequest
from bot.github.outbound.worker import OutboxWorker
from bot.settings import Settings
from bot.storage import change_reports
from bot.storage.db import Database
from tests.conftest import SHA_A, SHA_B, Api, TestClock, make_token
from tests.fake_github import FakeGitHub
from tests.test_api_errors import snapshot

GRAPHQL = "/api/graphql"

# The query `tarmac status` sends (the CLI depends on these field names).
STATUS_QUERY = """
query Status {
  projects(first: 100) {
    nodes {
      name
      environments {
        name
        production
        frozen
        freeze { reason by until }
        runningCandidate { version }
        runningSince
        activeDeployment { id status kind releaseCandidate { version } }
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}
"""

# "For every project, what runs in production, since when, which candidate is waiting in
# staging, and how many pull requests would it ship."
COMPOSITE_QUERY = """
query Composite {
  projects(first: 100) {
    nodes {
      name
      production: environment(name: "production") {
        runningCandidate { version }
        runningSince
      }
      staging: environment(name: "staging") {
        runningCandidate {
          version
          changes(environment: "production") { status pullRequestCount }
        }
      }
    }
    pageInfo { hasNextPage }
  }
}
"""


async def gql(
    api: Api,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"query": query}
    if variables is not None:
        body["variables"] = variables
    reply = await api.post(GRAPHQL, body, token=token, headers=headers, check=False)
    assert reply.status == 200, reply.body
    assert isinstance(reply.body, dict)
    return reply.body


def codes(answer: dict[str, Any]) -> list[tuple[str, str, int]]:
    return [
        (e["message"], e["extensions"]["code"], e["extensions"]["status"])
        for e in answer.get("errors", [])
    ]


async def store_report(
    db: Database, base: str, head: str, pull_requests: int, repo: str = "acme/backend"
) -> None:
    """A finished change report between two commits of acme/backend, as the outbox worker
    stores one it fetched."""
    paths = PathFilter(())
    report = ChangeReport(
        base_commit=base,
        head_commit=head,
        ahead_by=pull_requests,
        behind_by=0,
        diverged=False,
        commits=tuple(
            Commit(sha=f"{n:040x}", message=f"change {n}", author="dev", url=f"https://x/{n}")
            for n in range(pull_requests)
        ),
        pull_requests=tuple(
            PullRequest(
                number=n, title=f"PR {n}", author="dev", url=f"https://x/p/{n}", merged_at=None
            )
            for n in range(pull_requests)
        ),
    )
    async with db.write() as session:
        await change_reports.ask_for_report(session, repo, base, head, paths, report_now())
        await change_reports.store_report(
            session, repo, paths, report, github_calls=1, now=report_now()
        )


def report_now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


# --- the endpoint ---------------------------------------------------------------------------


async def test_a_request_without_a_token_is_unauthorized_as_rest_says(api: Api) -> None:
    reply = await api.post(
        GRAPHQL, {"query": "{ projects { nodes { name } } }"}, token="", check=False
    )

    assert reply.status == 401
    assert reply.body == {"error": "Unauthorized"}


async def test_the_status_query_answers_every_environment(api: Api, clock: TestClock) -> None:
    await api.ship("production", "v1.0.0-rc1")
    shipped_at = clock.now
    await api.create_rc("v1.1.0-rc1", SHA_B)
    deployed = await api.deploy("staging", "v1.1.0-rc1")
    until = (clock.now + timedelta(hours=2)).replace(microsecond=0)
    await api.put(
        "/api/releases/Backend/environments/production/freeze",
        {"reason": "release week", "until": until.isoformat()},
    )

    answer = await gql(api, STATUS_QUERY)

    assert "errors" not in answer, answer
    projects = answer["data"]["projects"]
    assert [p["name"] for p in projects["nodes"]] == ["Backend", "Frontend"]
    assert projects["pageInfo"]["hasNextPage"] is False
    staging, production = projects["nodes"][0]["environments"]
    assert staging == {
        "name": "staging",
        "production": False,
        "frozen": False,
        "freeze": None,
        "runningCandidate": None,
        "runningSince": None,
        "activeDeployment": {
            "id": str(deployed.body["id"]),
            "status": "PENDING",
            "kind": "DEPLOY",
            "releaseCandidate": {"version": "v1.1.0-rc1"},
        },
    }
    assert production["frozen"] is True
    assert production["freeze"] == {
        "reason": "release week",
        "by": "ci@example.com",
        "until": until.isoformat().replace("+00:00", "Z"),
    }
    assert production["runningCandidate"] == {"version": "v1.0.0-rc1"}
    # Times as REST writes them: UTC, ending in Z.
    assert production["runningSince"] == shipped_at.isoformat().replace("+00:00", "Z")
    assert production["activeDeployment"] is None


async def test_the_composite_query_answers_in_one_request(api: Api, db: Database) -> None:
    await api.ship("production", "v1.0.0-rc1", SHA_A)
    await api.ship("staging", "v1.1.0-rc1", SHA_B)
    await store_report(db, SHA_A, SHA_B, pull_requests=3)

    answer = await gql(api, COMPOSITE_QUERY)

    assert "errors" not in answer, answer
    backend, frontend = answer["data"]["projects"]["nodes"]
    assert backend == {
        "name": "Backend",
        "production": {
            "runningCandidate": {"version": "v1.0.0-rc1"},
            "runningSince": backend["production"]["runningSince"],
        },
        "staging": {
            "runningCandidate": {
                "version": "v1.1.0-rc1",
                "changes": {"status": "READY", "pullRequestCount": 3},
            }
        },
    }
    assert backend["production"]["runningSince"] is not None
    assert frontend == {
        "name": "Frontend",
        "production": {"runningCandidate": None, "runningSince": None},
        "staging": None,
    }


async def test_a_change_report_not_in_yet_needs_the_github_app(api: Api) -> None:
    await api.ship("production", "v1.0.0-rc1", SHA_A)
    await api.ship("staging", "v1.1.0-rc1", SHA_B)

    answer = await gql(api, COMPOSITE_QUERY)

    assert codes(answer) == [
        (
            "Change reports need the GitHub App, which reads the commits and pull requests "
            "between the candidates from GitHub",
            "CHANGES_NEED_GITHUB_APP",
            409,
        )
    ]
    assert answer["data"]["projects"]["nodes"][0]["staging"]["runningCandidate"]["changes"] is None


CHANGES_SINCE = """
query($version: String!, $since: String!) {
  project(name: "Backend") {
    releaseCandidate(version: $version) { changes(since: $since) { status } }
  }
}
"""


async def test_a_refused_comparison_is_said_once_then_asked_again_as_rest_does(
    github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await github_api.create_rc("v1.0.0-rc1", fake_github.history("acme/backend").tip or "")
    await github_api.create_rc("v1.1.0-rc1", "e" * 40)  # a commit GitHub does not have
    asked = {"version": "v1.1.0-rc1", "since": "v1.0.0-rc1"}

    def status(answer: dict[str, Any]) -> Any:
        found = answer["data"]["project"]["releaseCandidate"]["changes"]
        return found and found["status"]

    first = await gql(github_api, CHANGES_SINCE, asked)
    await outbox.drain()
    refused = await gql(github_api, CHANGES_SINCE, asked)
    again = await gql(github_api, CHANGES_SINCE, asked)

    assert "errors" not in first, first
    assert status(first) == "PENDING"
    assert [(code, status) for _, code, status in codes(refused)] == [("CHANGES_REFUSED", 409)]
    assert codes(refused)[0][0].startswith("GitHub could not compare")
    assert status(refused) is None
    assert "errors" not in again, again
    assert status(again) == "PENDING"


# --- batched loading: a bounded number of statements -------------------------------------

ENVIRONMENTS = ["dev", "qa", "test", "staging", "canary", "production"]


def many_projects_yaml(count: int) -> str:
    lines = ["projects:"]
    for number in range(count):
        lines += [f"  - name: p{number:02d}", f"    repo: acme/p{number:02d}", "    environments:"]
        for name in ENVIRONMENTS:
            lines.append(f"      - name: {name}")
            if name == "production":
                lines.append("        production: true")
    return "\n".join(lines) + "\n"


def sha(project: int, n: int) -> str:
    return f"{project:020x}{n:020x}"


async def seed_history(db: Database, count: int, clock: TestClock) -> None:
    """Per project: v1 succeeded everywhere, v2 succeeded in staging (waiting for production,
    three pull requests ahead), v2 under way in canary; a few failures in between."""
    from sqlalchemy import select

    from bot.storage.models import Deployment, Environment, Project, Release, ReleaseCandidate

    now = clock.now
    async with db.write() as session:
        projects = list(await session.scalars(select(Project).order_by(Project.name)))
        environments = list(await session.scalars(select(Environment)))
        by_project: dict[int, dict[str, Environment]] = {}
        for environment in environments:
            by_project.setdefault(environment.project_id, {})[environment.name] = environment
        for index, project in enumerate(projects[:count]):
            candidates = []
            for number in (1, 2):
                release = Release(project_id=project.id, version=f"v{number}.0.0", created_at=now)
                candidate = ReleaseCandidate(
                    project_id=project.id,
                    release=release,
                    version=f"v{number}.0.0-rc1",
                    number=1,
                    commit_sha=sha(index, number),
                    repo=project.repo,
                    build_status="ready",
                    created_at=now,
                )
                session.add_all([release, candidate])
                candidates.append(candidate)
            await session.flush()
            v1, v2 = candidates

            def deployment(
                env: str,
                rc: ReleaseCandidate,
                status: str,
                envs: dict[str, Environment] = by_project[project.id],
            ) -> Deployment:
                return Deployment(
                    environment_id=envs[env].id,
                    release_candidate_id=rc.id,
                    kind="deploy",
                    status=status,
                    actor="seed",
                    deploy_start_at=now,
                    deploy_end_at=now if status != "in_progress" else None,
                    updated_at=now,
                )

            rows = [deployment(env, v1, "success") for env in ENVIRONMENTS]
            rows += [deployment("staging", v2, "failure"), deployment("staging", v2, "success")]
            rows += [deployment("canary", v2, "in_progress")]
            session.add_all(rows)
    for index, project in enumerate(projects[:count]):
        await store_report(db, sha(index, 1), sha(index, 2), 3, repo=project.repo)


STATEMENTS_SEEN: list[list[str]] = []


@contextmanager
def counted_statements(database: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not statement.strip().upper().startswith("BEGIN"):  # SQLite's, per session
            seen.append(statement)

    engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


async def counted(api: Api, database: Database, query: str, token: str) -> tuple[int, Any]:
    await gql(api, "{ projects(first: 1) { nodes { name } } }", token=token)  # its use noted
    with counted_statements(database) as statements:
        answer = await gql(api, query, token=token)
    STATEMENTS_SEEN.append([" ".join(s.split())[:90] for s in statements])
    assert "errors" not in answer, answer
    return len(statements), answer["data"]


async def test_fifty_projects_cost_the_statements_of_one(
    aiohttp_client: Any, conformance: Any, tmp_path: Path, database_url: str, clock: TestClock
) -> None:
    projects_file = tmp_path / "many.yml"
    projects_file.write_text(many_projects_yaml(50))
    settings = Settings(database_url=database_url, config=projects_file)
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(settings, clock=clock, background_work=False)
    )
    database = client.app[SERVICE].db
    await seed_history(database, 50, clock)
    api = Api(client, conformance)
    every = await make_token(database, "every-project")
    one = await make_token(database, "one-project", ["p07"])

    status_fifty, status = await counted(api, database, STATUS_QUERY, every)
    status_one, _ = await counted(api, database, STATUS_QUERY, one)
    composite_fifty, composite = await counted(api, database, COMPOSITE_QUERY, every)
    composite_one, alone = await counted(api, database, COMPOSITE_QUERY, one)

    assert len(status["projects"]["nodes"]) == 50
    assert [p["name"] for p in alone["projects"]["nodes"]] == ["p07"]
    # Status: the token, projects, environments, running, active. Composite: the token,
    # projects, environments, running, the candidates' projects, stored reports.
    assert (status_fifty, composite_fifty) == (status_one, composite_one), STATEMENTS_SEEN
    assert (status_fifty, composite_fifty) == (5, 6), STATEMENTS_SEEN
    first = composite["projects"]["nodes"][0]
    assert first["production"]["runningCandidate"] == {"version": "v1.0.0-rc1"}
    assert first["staging"]["runningCandidate"] == {
        "version": "v2.0.0-rc1",
        "changes": {"status": "READY", "pullRequestCount": 3},
    }
    canary = status["projects"]["nodes"][0]["environments"][4]
    assert canary["activeDeployment"]["status"] == "IN_PROGRESS"
    assert canary["runningCandidate"] == {"version": "v1.0.0-rc1"}


# --- every REST refusal has its GraphQL twin ---------------------------------------------

CREATE = """mutation($project: String!, $version: String!, $repo: String!, $commit: String!,
  $build: Boolean! = false) {
  createReleaseCandidate(project: $project, version: $version, repo: $repo, commit: $commit,
    triggerBuildWorkflow: $build) { version }
}"""
DEPLOY = """mutation($environment: String!, $version: String!) {
  deploy(project: "Backend", environment: $environment, version: $version) { id }
}"""
REPORT = """mutation($version: String!, $status: DeploymentStatus!) {
  reportStatus(project: "Backend", environment: "staging", version: $version,
    status: $status) { id }
}"""
ROLL_BACK = """mutation($environment: String!) {
  rollBack(project: "Backend", environment: $environment) { id }
}"""
FREEZE = """mutation($until: DateTime) {
  freeze(project: "Backend", environment: "staging", until: $until) { frozen }
}"""
CANCEL = """mutation($id: ID!) {
  cancelDeployment(project: "Backend", environment: "staging", id: $id) { id }
}"""
BACKEND_RC = {"project": "Backend", "version": "v1.0.0-rc1", "repo": "acme/backend"}

# tests/test_api_errors.py's BAD_REQUESTS, as mutations: (query, variables, code, status).
REFUSALS: list[tuple[str, dict[str, Any], str, int]] = [
    (CREATE, {**BACKEND_RC, "commit": "abc"}, "INVALID_COMMIT", 400),
    (CREATE, {**BACKEND_RC, "repo": "acme/other", "commit": SHA_A}, "REPOSITORY_NOT_FOUND", 404),
    (CREATE, {**BACKEND_RC, "commit": SHA_B}, "RC_COMMIT_CONFLICT", 409),
    (CREATE, {**BACKEND_RC, "version": "v1.0.0", "commit": SHA_A}, "INVALID_RC_VERSION", 400),
    (
        CREATE,
        {
            "project": "Frontend",
            "version": "f-1-rc1",
            "repo": "acme/monorepo",
            "commit": SHA_A,
            "build": True,
        },
        "NO_BUILD_WORKFLOW",
        400,
    ),
    (CREATE, {**BACKEND_RC, "project": "Nope", "commit": SHA_A}, "PROJECT_NOT_FOUND", 404),
    (DEPLOY, {"environment": "staging", "version": "v9-rc1"}, "RELEASE_NOT_FOUND", 404),
    (REPORT, {"version": "v9-rc1", "status": "SUCCESS"}, "RELEASE_NOT_FOUND", 404),
    (DEPLOY, {"environment": "production", "version": "v1.0.0-rc1"}, "ENVIRONMENT_FROZEN", 400),
    (ROLL_BACK, {"environment": "production"}, "ENVIRONMENT_FROZEN", 400),
    (ROLL_BACK, {"environment": "qa"}, "ENVIRONMENT_NOT_FOUND", 404),
    (FREEZE, {"until": "2000-01-01T00:00:00Z"}, "FREEZE_UNTIL_IN_PAST", 400),
    (CANCEL, {"id": "999"}, "DEPLOYMENT_NOT_FOUND", 404),
    (CANCEL, {"id": "1" * 19}, "DEPLOYMENT_NOT_FOUND", 404),
    (CANCEL, {"id": "1"}, "DEPLOYMENT_ALREADY_ENDED", 409),
]


@pytest.mark.parametrize(
    ("query", "variables", "code", "status"),
    REFUSALS,
    ids=[f"{code}-{index}" for index, (_, _, code, _) in enumerate(REFUSALS)],
)
async def test_a_refused_mutation_says_what_rest_says_and_changes_nothing(
    api: Api,
    db: Database,
    clock: TestClock,
    query: str,
    variables: dict[str, Any],
    code: str,
    status: int,
) -> None:
    await api.ship("staging", "v1.0.0-rc1")
    await api.ship("production", "v1.0.0-rc1")
    await api.create_rc("v1.1.0-rc1", SHA_B)
    await api.deploy("production", "v1.1.0-rc1")
    until = (clock.now + timedelta(days=1)).isoformat()
    await api.put(
        "/api/releases/Backend/environments/production/freeze", {"reason": "x", "until": until}
    )
    before = await snapshot(db)

    answer = await gql(api, query, variables)

    from bot.core.errors import RefusalCode

    assert codes(answer) == [(RefusalCode[code].value, code, status)]
    assert answer["data"] is None
    assert await snapshot(db) == before


async def test_mutations_commit_together_or_not_at_all(api: Api, db: Database) -> None:
    await api.create_rc("v1.0.0-rc1")
    before = await snapshot(db)

    answer = await gql(
        api,
        """mutation {
          first: deploy(project: "Backend", environment: "staging", version: "v1.0.0-rc1") { id }
          refused: deploy(project: "Backend", environment: "staging", version: "v9-rc1") { id }
          after: freeze(project: "Backend", environment: "staging") { frozen }
        }""",
    )

    # A refused mutation (its field is non-null) ends the request: the rest is not run, and
    # the first deploy, which had run, is rolled back with it.
    assert [code for _, code, _ in codes(answer)] == ["RELEASE_NOT_FOUND"]
    assert answer["data"] is None
    assert await snapshot(db) == before


async def test_mutations_answer_what_they_did(api: Api) -> None:
    created = await gql(api, CREATE, {**BACKEND_RC, "commit": SHA_A})
    deployed = await gql(
        api,
        """mutation { deploy(project: "Backend", environment: "staging", version: "v1.0.0-rc1") {
          id status kind actor releaseCandidate { version } from { version }
          environment { name activeDeployment { id } } } }""",
    )
    reported = await gql(api, REPORT, {"version": "v1.0.0-rc1", "status": "SUCCESS"})
    frozen = await gql(
        api,
        """mutation { freeze(project: "Backend", environment: "staging", reason: "calm") {
          frozen freeze { reason by } } }""",
    )
    unfrozen = await gql(
        api, 'mutation { unfreeze(project: "Backend", environment: "staging") { frozen } }'
    )

    assert created == {"data": {"createReleaseCandidate": {"version": "v1.0.0-rc1"}}}
    deployment = deployed["data"]["deploy"]
    assert deployment["status"] == "PENDING"
    assert deployment["actor"] == "ci@example.com"
    assert deployment["from"] is None
    assert deployment["environment"]["activeDeployment"] == {"id": deployment["id"]}
    assert reported == {"data": {"reportStatus": {"id": deployment["id"]}}}
    assert frozen["data"]["freeze"] == {
        "frozen": True,
        "freeze": {"reason": "calm", "by": "ci@example.com"},
    }
    assert unfrozen == {"data": {"unfreeze": {"frozen": False}}}
    rest = await api.get("/api/releases/Backend/environments/staging/deployments")
    assert [d["status"] for d in rest.body] == ["success"]


async def test_a_retried_mutation_with_its_idempotency_key_runs_once(api: Api) -> None:
    await api.create_rc("v1.0.0-rc1")
    key = {"Idempotency-Key": "deploy-staging-1"}
    query = (
        'mutation { deploy(project: "Backend", environment: "staging", version: "v1.0.0-rc1") '
        "{ id } }"
    )

    first = await api.post(GRAPHQL, {"query": query}, headers=key, check=False)
    again = await api.post(GRAPHQL, {"query": query}, headers=key, check=False)

    assert first.body == again.body
    assert again.headers["Idempotent-Replayed"] == "true"
    rest = await api.get("/api/releases/Backend/environments/staging/deployments")
    assert len(rest.body) == 1


# --- scopes --------------------------------------------------------------------------------


async def test_a_scoped_token_sees_exactly_its_project_everywhere(api: Api, db: Database) -> None:
    await api.ship("staging", "v1.0.0-rc1")
    await api.create_rc("frontend-1.0-rc1", project="Frontend")
    await api.deploy("production", "frontend-1.0-rc1", project="Frontend")
    frontend = await make_token(db, "frontend-ci", ["Frontend"], "fe@example.com")

    listed = await gql(
        api,
        """{ projects { edges { cursor node { name
              environments { name project { name }
                deployments { nodes { environment { project { name } } } } }
              deployments { nodes { releaseCandidate { version } } }
              releases { nodes { version candidates { version deployments { nodes { id } } } } } } }
            pageInfo { hasNextPage } } }""",
        token=frontend,
    )
    named = await gql(
        api,
        '{ backend: project(name: "Backend") { name } nope: project(name: "Nope") { name } }',
        token=frontend,
    )
    wrote = await gql(
        api,
        'mutation { freeze(project: "Backend", environment: "staging") { frozen } }',
        token=frontend,
    )

    assert "errors" not in listed, listed
    edges = listed["data"]["projects"]["edges"]
    assert [edge["node"]["name"] for edge in edges] == ["Frontend"]
    node = edges[0]["node"]
    assert {e["project"]["name"] for e in node["environments"]} == {"Frontend"}
    assert [d["releaseCandidate"]["version"] for d in node["deployments"]["nodes"]] == [
        "frontend-1.0-rc1"
    ]
    assert [r["version"] for r in node["releases"]["nodes"]] == ["frontend-1.0"]
    assert named == {"data": {"backend": None, "nope": None}}
    assert codes(wrote) == [("Release project not found", "PROJECT_NOT_FOUND", 404)]
    assert "Backend" not in json.dumps(listed)


# --- pagination and filters --------------------------------------------------------------


async def test_deployments_page_by_cursor_and_filter(api: Api) -> None:
    await api.ship("staging", "v1.0.0-rc1")
    await api.ship("staging", "v1.1.0-rc1", SHA_B)
    await api.deploy("staging", "v1.0.0-rc1")
    await api.rollback("staging")
    page = """query($after: String, $status: [DeploymentStatus!], $kind: [DeploymentKind!]) {
      project(name: "Backend") { environment(name: "staging") {
        deployments(first: 2, after: $after, status: $status, kind: $kind) {
          edges { cursor node { status kind releaseCandidate { version } } }
          pageInfo { hasNextPage endCursor } } } } }"""

    def of(answer: dict[str, Any]) -> dict[str, Any]:
        assert "errors" not in answer, answer
        found: dict[str, Any] = answer["data"]["project"]["environment"]["deployments"]
        return found

    first = of(await gql(api, page))
    second = of(await gql(api, page, {"after": first["pageInfo"]["endCursor"]}))
    rollbacks = of(await gql(api, page, {"kind": ["ROLLBACK"]}))
    successes = of(await gql(api, page, {"status": ["SUCCESS"]}))
    bad = await gql(api, page, {"after": "bm90LWEtY3Vyc29y"})
    too_many = await gql(api, "{ projects(first: 101) { nodes { name } } }")

    assert [e["node"]["kind"] for e in first["edges"]] == ["ROLLBACK", "DEPLOY"]
    assert first["pageInfo"]["hasNextPage"] is True
    assert [e["node"]["releaseCandidate"]["version"] for e in second["edges"]] == [
        "v1.1.0-rc1",
        "v1.0.0-rc1",
    ]
    assert second["pageInfo"]["hasNextPage"] is False
    assert [e["node"]["kind"] for e in rollbacks["edges"]] == ["ROLLBACK"]
    assert {e["node"]["status"] for e in successes["edges"]} == {"SUCCESS"}
    assert [code for _, code, _ in codes(bad)] == ["INVALID_ARGUMENT"]
    assert codes(too_many) == [("'first' must be from 1 to 100", "INVALID_ARGUMENT", 400)]


# --- limits --------------------------------------------------------------------------------


async def test_an_abusive_query_is_refused_before_anything_runs(api: Api, db: Database) -> None:
    deep = "{ projects { nodes { " + "environments { project { " * 5 + "name" + " } }" * 6 + " }"
    costly = """{ projects(first: 100) { nodes { deployments(first: 100) { nodes {
        releaseCandidate { deployments(first: 100) { nodes { id } } } } } } } }"""
    aliased = (
        "{ "
        + " ".join(f"a{n}: projects {{ pageInfo {{ hasNextPage }} }}" for n in range(31))
        + " }"
    )
    huge = "{ projects { nodes { " + "name " * 2100 + "} } }"

    with counted_statements(api.client.app[SERVICE].db) as statements:
        answers = [await gql(api, query) for query in (deep, costly, aliased, huge)]

    messages = [" | ".join(e["message"] for e in answer["errors"]) for answer in answers]
    assert all("data" not in answer or answer["data"] is None for answer in answers)
    assert f"exceeds maximum operation depth of {MAX_DEPTH}" in messages[0]
    assert messages[1].startswith("Query refused: its estimated cost ")
    assert f"over the limit of {MAX_COST}" in messages[1]
    assert "aliases" in messages[2]
    assert "token" in messages[3].lower()
    # Nothing but the token was read.
    assert all("api_tokens" in statement for statement in statements), statements


async def test_the_status_and_composite_queries_are_within_the_limits(api: Api) -> None:
    for query in (STATUS_QUERY, COMPOSITE_QUERY):
        answer = await gql(api, query)
        assert "errors" not in answer or all(
            e["extensions"]["code"] == "CHANGES_NEED_GITHUB_APP" for e in answer["errors"]
        ), answer


# --- the SDL in docs/ ----------------------------------------------------------------------


def test_the_sdl_in_docs_is_the_schema() -> None:
    from api.graphql.sdl import sdl

    assert SDL_PATH.read_text(encoding="utf-8") == sdl(), "run `make docs`"
    assert "type Query" in sdl()
    assert schema.as_str().strip() == sdl().strip()


async def test_a_mutation_whose_answer_asks_for_a_change_report_does_not_wait_on_itself(
    github_api: Api,
) -> None:
    await github_api.ship("production", "v1.0.0-rc1", SHA_A)
    await github_api.create_rc("v1.1.0-rc1", SHA_B)

    answer = await asyncio.wait_for(
        gql(
            github_api,
            """mutation { deploy(project: "Backend", environment: "staging",
              version: "v1.1.0-rc1") {
              releaseCandidate { changes(environment: "production") { status } } } }""",
        ),
        timeout=20,
    )

    assert "errors" not in answer, answer
    changes = answer["data"]["deploy"]["releaseCandidate"]["changes"]
    assert changes == {"status": "PENDING"}
