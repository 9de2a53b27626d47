"""GraphQL at /api/graphql: the same tokens, scopes, operations and refusals as REST, batched
reads (a counted, bounded number of SQL statements), cursor pagination, limits, and the SDL in
docs/ kept in step with the schema."""

from __future__ import annotations

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
from bot.settings import Settings
from bot.storage import change_reports
from bot.storage.db import Database
from tests.conftest import SHA_A, SHA_B, Api, TestClock, make_token
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


async def store_report(db: Database, base: str, head: str, pull_requests: int) -> None:
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
        await change_reports.ask_for_report(
            session, "acme/backend", base, head, paths, report_now()
        )
        await change_reports.store_report(
            session, "acme/backend", paths, report, github_calls=1, now=report_now()
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
        "until": until.isoformat(),
    }
    assert production["runningCandidate"] == {"version": "v1.0.0-rc1"}
    assert production["runningSince"] == shipped_at.isoformat()
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
