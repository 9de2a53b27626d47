"""One function per REST endpoint the client calls (docs/api.md has each answer's schema).

Each returns the server's JSON as it came: the client prints it as it is for `--json`, so its
output is the API's own documented shape."""

from __future__ import annotations

from typing import Any

from bot.client.http import Answer, TarmacHttp, api_path

JsonObject = dict[str, Any]


async def environments(http: TarmacHttp, project: str) -> list[JsonObject]:
    answer = await http.get(api_path(project, "environments"))
    listed: list[JsonObject] = answer.body
    return listed


async def release_candidate(http: TarmacHttp, project: str, version: str) -> JsonObject:
    answer = await http.get(api_path(project, "releases", version))
    found: JsonObject = answer.body
    return found


async def deploy(
    http: TarmacHttp, project: str, environment: str, version: str, key: str
) -> JsonObject:
    path = api_path(project, "environments", environment, "deployments")
    answer = await http.write("POST", path, {"release_candidate_version": version}, key)
    created: JsonObject = answer.body
    return created


async def deployment(
    http: TarmacHttp, project: str, environment: str, deployment_id: int
) -> JsonObject:
    path = api_path(project, "environments", environment, "deployments", str(deployment_id))
    answer = await http.get(path)
    found: JsonObject = answer.body
    return found


async def rollback(
    http: TarmacHttp, project: str, environment: str, *, force: bool, key: str
) -> JsonObject:
    path = api_path(project, "environments", environment, "rollback")
    answer = await http.write("POST", path, {"force": force}, key)
    created: JsonObject = answer.body
    return created


async def freeze(
    http: TarmacHttp,
    project: str,
    environment: str,
    *,
    reason: str | None,
    until: str | None,
    key: str,
) -> JsonObject:
    path = api_path(project, "environments", environment, "freeze")
    answer = await http.write("PUT", path, {"reason": reason, "until": until}, key)
    frozen: JsonObject = answer.body
    return frozen


async def unfreeze(http: TarmacHttp, project: str, environment: str, *, key: str) -> JsonObject:
    path = api_path(project, "environments", environment, "freeze")
    answer = await http.write("DELETE", path, None, key)
    unfrozen: JsonObject = answer.body
    return unfrozen


async def changes(
    http: TarmacHttp, project: str, version: str, *, since: str | None, environment: str | None
) -> Answer:
    """The change report (200), or 202 while the server fetches it: the caller waits."""
    query = {"since": since} if since is not None else {"environment": environment or ""}
    return await http.get(api_path(project, "releases", version, "changes"), query)
