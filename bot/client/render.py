"""The client's human output: lines and tables for a terminal (`--json` prints the data)."""

from __future__ import annotations

from typing import Any

JsonObject = dict[str, Any]
NOTHING = "-"
STATUS_COLUMNS = ["PROJECT", "ENVIRONMENT", "RUNNING", "SINCE", "ACTIVE", "FROZEN"]
AUDIT_COLUMNS = ["AT", "DOOR", "ACTOR", "ACTION", "DECISION", "ENVIRONMENT", "RC", "REASON"]


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned columns two spaces apart, as wide as their widest cell."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def moment(timestamp: str | None) -> str:
    """An ISO 8601 timestamp to the second: `2026-11-28T21:09:11Z`."""
    if not timestamp:
        return NOTHING
    head, dot, fraction = timestamp.partition(".")
    if not dot:
        return timestamp
    return head + ("Z" if fraction.endswith("Z") else "")


def status_table(report: JsonObject) -> list[str]:
    rows = [
        [
            project["name"],
            environment["name"] + (" (production)" if environment["production"] else ""),
            environment["running_release_candidate_version"] or NOTHING,
            moment(environment["running_since"]),
            _active(environment["active_deployment"]),
            _frozen(environment),
        ]
        for project in report["projects"]
        for environment in project["environments"]
    ]
    if not rows:
        return ["no projects"]
    return table(STATUS_COLUMNS, rows)


def _active(active: JsonObject | None) -> str:
    if active is None:
        return NOTHING
    kind = "" if active["kind"] == "deploy" else f" ({active['kind']})"
    version = active["release_candidate_version"] or "?"
    return f"#{active['id']} {version} {active['status']}{kind}"


def _frozen(environment: JsonObject) -> str:
    if not environment["frozen"]:
        return NOTHING
    freeze = environment["freeze"] or {}
    parts = [p for p in (freeze.get("reason"), _until(freeze.get("until"))) if p]
    return "yes" + (f": {', '.join(parts)}" if parts else "")


def _until(until: str | None) -> str | None:
    return f"until {moment(until)}" if until else None


def deployment_line(deployment: JsonObject) -> str:
    """The first line told of a deployment: what goes where, and its status."""
    kind = "rollback deployment" if deployment["kind"] == "rollback" else "deployment"
    origin = deployment["from_release_candidate_version"]
    came_from = f" (from {origin})" if origin else ""
    return (
        f"{kind} {deployment['id']}: {deployment['release_candidate_version']} to "
        f"{deployment['environment_name']}{came_from}: {_status(deployment)}"
    )


def status_line(deployment: JsonObject) -> str:
    """A later line: only the status changed."""
    return f"deployment {deployment['id']}: {_status(deployment)}"


def _status(deployment: JsonObject) -> str:
    waiting = deployment.get("waiting_for")
    return str(deployment["status"]) + (f" (waiting for {waiting})" if waiting else "")


def failure_message(deployment: JsonObject) -> str:
    """Why a deployment failed: its `error_message`, or only its status when it has none (a
    run that concluded `failure` says no more than that)."""
    reason = deployment.get("error_message")
    ended = f"deployment {deployment['id']} ended {deployment['status']}"
    return f"{ended}: {reason}" if reason else ended


def approval_line(deployment: JsonObject) -> str:
    """After an approval: who approved so far, and whether it still waits."""
    approvers = ", ".join(a["approver"] for a in deployment["approvals"]) or NOTHING
    waiting = deployment.get("waiting_for")
    still = f"waiting for {waiting}" if waiting else "no longer waiting for approval"
    return f"deployment {deployment['id']}: approved by {approvers}; {still}"


def ended_line(deployment: JsonObject) -> str:
    """A deployment that ended, with why (a rejected one: who rejected it and why)."""
    return failure_message(deployment)


def candidate_mark_line(candidate: JsonObject) -> str:
    rejected = candidate.get("rejected")
    if rejected is None:
        return f"{candidate['version']} is not marked bad"
    by = f" by {rejected['by']}" if rejected["by"] else ""
    return f"{candidate['version']} marked bad{by}: {rejected['reason']}"


def audit_lines(listed: JsonObject) -> list[str]:
    events = listed["events"]
    if not events:
        return ["no decisions"]
    rows = [
        [
            moment(e["at"]),
            e["door"],
            e["actor"] or NOTHING,
            e["action"] + (f" #{e['deployment_id']}" if e["deployment_id"] else ""),
            e["decision"],
            e["environment_name"] or NOTHING,
            e["release_candidate_version"] or NOTHING,
            e["reason"] or NOTHING,
        ]
        for e in events
    ]
    lines = table(AUDIT_COLUMNS, rows)
    if listed["next_page"] is not None:
        lines.append(f"(more: --page {listed['next_page']})")
    return lines


def freeze_line(environment: JsonObject) -> str:
    if not environment["frozen"]:
        return f"{environment['name']} is not frozen"
    return f"{environment['name']} frozen" + _frozen(environment).removeprefix("yes")


def changes_lines(report: JsonObject) -> list[str]:
    base, head = report["base"], report["head"]
    title = (
        f"{head['release_candidate_version']} ({head['commit'][:7]}) since "
        f"{base['release_candidate_version']} ({base['commit'][:7]}): "
        f"{report['ahead_by']} commits ahead"
    )
    if report["diverged"]:
        return [
            title,
            "diverged: the base is not an ancestor of the head, so nothing is listed",
        ]
    lines = [title, "", f"pull requests ({len(report['pull_requests'])}):"]
    lines += [
        f"  #{pr['number']}  {pr['title']}  ({pr['author'] or NOTHING})  {pr['url']}"
        for pr in report["pull_requests"]
    ] or ["  none"]
    lines += ["", f"commits ({len(report['commits'])}):"]
    lines += [
        f"  {c['sha'][:7]}  {c['message']}  ({c['author'] or NOTHING})" for c in report["commits"]
    ] or ["  none"]
    return lines
