"""`tarmac status`: what runs where, since when, what is under way, what is frozen.

One shape whichever way it was asked: one project through REST (its environments, and for
each running candidate the success that made it run), every project the token sees through
GraphQL (`POST /api/graphql`, the query below, agreed with the server). docs/cli.md gives the
JSON schema of `StatusReport`.
"""

from __future__ import annotations

from typing import Any

from bot.client import endpoints
from bot.client.http import Refused, TarmacHttp
from bot.domain.statuses import DeploymentStatus

JsonObject = dict[str, Any]

STATUS_QUERY = """query Status {
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
}"""
# The pages after the first: the same selection, after the cursor the last page ended at.
STATUS_QUERY_AFTER = STATUS_QUERY.replace("query Status {", "query Status($cursor: String!) {", 1)
STATUS_QUERY_AFTER = STATUS_QUERY_AFTER.replace(
    "projects(first: 100)", "projects(first: 100, after: $cursor)", 1
)
NO_GRAPHQL = (
    "this server has no GraphQL endpoint (/api/graphql), which listing every project needs; "
    "name a project: tarmac status PROJECT"
)


class GraphQLFailed(Exception):
    """The GraphQL answer carried errors: the first one's message."""


async def project_status(http: TarmacHttp, project: str) -> JsonObject:
    listed = await endpoints.environments(http, project)
    environments = [await _from_rest(http, project, env) for env in listed]
    return {"projects": [{"name": project, "environments": environments}]}


async def every_project_status(http: TarmacHttp) -> JsonObject:
    projects: list[JsonObject] = []
    cursor: str | None = None
    while True:
        page = await _status_page(http, cursor)
        projects.extend(_project_from_graphql(node) for node in page["nodes"])
        info = page["pageInfo"]
        if not info["hasNextPage"] or not info.get("endCursor"):
            return {"projects": projects}
        cursor = str(info["endCursor"])


async def _status_page(http: TarmacHttp, cursor: str | None) -> JsonObject:
    try:
        if cursor is None:
            answer = await http.graphql(STATUS_QUERY)
        else:
            answer = await http.graphql(STATUS_QUERY_AFTER, {"cursor": cursor})
    except Refused as refused:
        if refused.status in (404, 405):
            raise Refused(refused.status, NO_GRAPHQL) from None
        raise
    body = answer.body if isinstance(answer.body, dict) else {}
    errors = body.get("errors")
    if errors:
        first = errors[0] if isinstance(errors[0], dict) else {}
        raise GraphQLFailed(str(first.get("message") or "the GraphQL query failed"))
    page: JsonObject = body["data"]["projects"]
    return page


async def _from_rest(http: TarmacHttp, project: str, environment: JsonObject) -> JsonObject:
    freeze = environment["freeze"]
    active = environment["active_deployment"]
    running = environment["running_release_candidate_version"]
    return {
        "name": environment["name"],
        "production": environment["production"],
        "running_release_candidate_version": running,
        "running_since": (
            await _running_since(http, project, environment["name"], running) if running else None
        ),
        "frozen": environment["frozen"],
        "freeze": _freeze(freeze),
        "active_deployment": (
            None
            if active is None
            else {
                "id": active["id"],
                "status": active["status"],
                "kind": active["kind"],
                "release_candidate_version": active["release_candidate_version"],
            }
        ),
    }


async def _running_since(http: TarmacHttp, project: str, environment: str, version: str) -> Any:
    """When the running candidate started running: the end of its newest success there (the
    environments listing names the candidate, not the deployment)."""
    candidate = await endpoints.release_candidate(http, project, version)
    successes = [
        d
        for d in candidate["deployments"]
        if d["environment_name"] == environment and d["status"] == DeploymentStatus.SUCCESS
    ]
    if not successes:
        return None
    newest = max(successes, key=lambda d: (d["deploy_end_at"] or d["deploy_start_at"], d["id"]))
    return newest["deploy_end_at"] or newest["deploy_start_at"]


def _freeze(freeze: JsonObject | None) -> JsonObject | None:
    """A freeze as the status report shows it, from REST's or GraphQL's (the same fields)."""
    if freeze is None:
        return None
    return {"reason": freeze["reason"], "by": freeze["by"], "until": freeze["until"]}


def _project_from_graphql(node: JsonObject) -> JsonObject:
    return {
        "name": node["name"],
        "environments": [_environment_from_graphql(e) for e in node["environments"]],
    }


def _environment_from_graphql(environment: JsonObject) -> JsonObject:
    freeze = environment.get("freeze")
    running = environment.get("runningCandidate")
    active = environment.get("activeDeployment")
    return {
        "name": environment["name"],
        "production": environment["production"],
        "running_release_candidate_version": running["version"] if running else None,
        "running_since": environment.get("runningSince"),
        "frozen": environment["frozen"],
        "freeze": _freeze(freeze),
        "active_deployment": (
            None
            if active is None
            else {
                "id": active["id"],
                # GraphQL enums may read IN_PROGRESS; the REST spelling is in_progress.
                "status": str(active["status"]).lower(),
                "kind": str(active["kind"]).lower(),
                "release_candidate_version": (active.get("releaseCandidate") or {}).get("version"),
            }
        ),
    }
