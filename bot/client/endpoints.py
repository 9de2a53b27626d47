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
    http: TarmacHttp,
    project: str,
    environment: str,
    version: str,
    key: str,
    *,
    force: bool = False,
    reason: str | None = None,
) -> JsonObject:
    path = api_path(project, "environments", environment, "deployments")
    body: JsonObject = {"release_candidate_version": version}
    if force:
        body["force"] = True
    if reason is not None:
        body["reason"] = reason
    answer = await http.write("POST", path, body, key)
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
    http: TarmacHttp,
    project: str,
    environment: str,
    *,
    force: bool,
    key: str,
    reason: str | None = None,
) -> JsonObject:
    path = api_path(project, "environments", environment, "rollback")
    body: JsonObject = {"force": force}
    if reason is not None:
        body["reason"] = reason
    answer = await http.write("POST", path, body, key)
    created: JsonObject = answer.body
    return created


async def approve(
    http: TarmacHttp, project: str, environment: str, deployment_id: int, *, key: str
) -> JsonObject:
    path = _deployment(project, environment, deployment_id, "approve")
    answer = await http.write("POST", path, None, key)
    approved: JsonObject = answer.body
    return approved


async def reject(
    http: TarmacHttp, project: str, environment: str, deployment_id: int, *, reason: str, key: str
) -> JsonObject:
    path = _deployment(project, environment, deployment_id, "reject")
    answer = await http.write("POST", path, {"reason": reason}, key)
    rejected: JsonObject = answer.body
    return rejected


def _deployment(project: str, environment: str, deployment_id: int, action: str) -> str:
    return api_path(project, "environments", environment, "deployments", str(deployment_id), action)


async def mark_bad(
    http: TarmacHttp, project: str, version: str, *, reason: str, key: str
) -> JsonObject:
    path = api_path(project, "releases", version, "reject")
    answer = await http.write("POST", path, {"reason": reason}, key)
    marked: JsonObject = answer.body
    return marked


async def clear_bad(http: TarmacHttp, project: str, version: str, *, key: str) -> JsonObject:
    answer = await http.write("DELETE", api_path(project, "releases", version, "reject"), None, key)
    cleared: JsonObject = answer.body
    return cleared


async def audit(
    http: TarmacHttp, project: str, *, environment: str | None, page: int, per_page: int
) -> Answer:
    """One page of the audit, newest first; its `Link` header says whether another follows."""
    query = {"page": str(page), "per_page": str(per_page)}
    if environment is not None:
        query["environment"] = environment
    return await http.get(api_path(project, "audit"), query)


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
