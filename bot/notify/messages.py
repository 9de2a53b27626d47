"""What a notification says: the generic webhook's JSON body and Slack's Block Kit message,
both from the message an outbox item holds (bot/app/notifications.py)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.domain.calendar import describe_local

HEADLINES = {
    "deployment.started": "Deployment started",
    "deployment.succeeded": "Deployment succeeded",
    "deployment.failed": "Deployment failed",
    "deployment.canceled": "Deployment canceled",
    "deployment.refused": "Deployment refused",
    "rollback.started": "Rollback started",
    "environment.frozen": "Environment frozen",
    "environment.unfrozen": "Environment unfrozen",
    "freeze_window.opened": "Freeze window opened",
    "freeze_window.closed": "Freeze window closed",
    "candidate.built": "Release candidate built",
    "candidate.build_failed": "Release candidate build failed",
}


def webhook_body(delivery_id: str, message: dict[str, Any]) -> bytes:
    """The generic webhook's body (the OpenAPI document's `webhooks`): the same bytes on every
    attempt, so its signature covers exactly what was planned."""
    body = {"id": delivery_id, **message}
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def slack_body(message: dict[str, Any]) -> dict[str, Any]:
    """A Block Kit message: what happened, then candidate, environment, actor and status,
    the pull requests it brings, the freeze reason, and a button to the run."""
    blocks: list[dict[str, Any]] = [_section(f"*{_escape(_headline(message))}*")]
    fields = _fields(message)
    if fields:
        blocks.append({"type": "section", "fields": fields})
    context = _context(message)
    if context:
        blocks.append({"type": "context", "elements": context})
    run_url = _run_url(message)
    if run_url is not None:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "View run"},
                        "url": run_url,
                    }
                ],
            }
        )
    return {"text": _summary(message), "blocks": blocks}


def pull_request_count(message: dict[str, Any]) -> str | None:
    """ "7 pull requests", when the change report told which (None when it is not known)."""
    pulls = message.get("pull_requests")
    if not isinstance(pulls, list):
        return None
    return f"{len(pulls)} pull request" + ("" if len(pulls) == 1 else "s")


def _headline(message: dict[str, Any]) -> str:
    """What happened; a refusal says why, a window which one."""
    event = str(message["event"])
    headline = HEADLINES.get(event, event)
    window = message.get("window") or {}
    if message.get("reason"):
        return f"{headline}: {message['reason']}"
    if window.get("name"):
        return f"{headline}: {window['name']}"
    return headline


def _summary(message: dict[str, Any]) -> str:
    """Slack's plain-text fallback (notifications, screen readers): what happened, to what,
    and why (a refusal's reason last, as it may be long)."""
    event = str(message["event"])
    parts = [HEADLINES.get(event, event), str(message["project"])]
    candidate = message.get("release_candidate") or {}
    if candidate.get("version"):
        parts.append(str(candidate["version"]))
    window = message.get("window") or {}
    if message.get("environment"):
        preposition = "in" if window else "to"
        parts.append(f"{preposition} {message['environment']}")
    if window.get("name"):
        parts.append(f"({window['name']})")
    summary = " ".join(parts)
    if message.get("reason"):
        summary += f": {message['reason']}"
    return _escape(summary)


def _fields(message: dict[str, Any]) -> list[dict[str, str]]:
    candidate = message.get("release_candidate") or {}
    deployment = message.get("deployment") or {}
    shown = [
        ("Project", message.get("project")),
        ("Candidate", candidate.get("version")),
        ("Environment", message.get("environment")),
        ("Actor", message.get("actor")),
        ("Status", deployment.get("status") or candidate.get("build_status")),
    ]
    if deployment.get("kind") == "rollback":
        shown.append(("Kind", "rollback"))
    return [
        {"type": "mrkdwn", "text": f"*{label}*\n{_escape(str(value))}"}
        for label, value in shown
        if value
    ]


def _context(message: dict[str, Any]) -> list[dict[str, str]]:
    lines = []
    count = pull_request_count(message)
    if count is not None:
        lines.append(count)
    freeze = message.get("freeze") or {}
    if message["event"] == "environment.frozen" or message.get("freeze"):
        lines.append(f"Freeze reason: {freeze.get('reason') or 'none given'}")
    lines += _window_lines(message.get("window"))
    deployment = message.get("deployment") or {}
    candidate = message.get("release_candidate") or {}
    error = deployment.get("error_message") or candidate.get("build_error")
    if error:
        lines.append(f"Error: {error}")
    return [{"type": "mrkdwn", "text": _escape(line)} for line in lines]


def _window_lines(window: dict[str, Any] | None) -> list[str]:
    """A calendar window's reason and its span on its own wall clock."""
    if not window:
        return []
    zone = ZoneInfo(str(window["timezone"]))
    start = describe_local(datetime.fromisoformat(str(window["start"])), zone)
    end = describe_local(datetime.fromisoformat(str(window["end"])), zone)
    return [f"Reason: {window['reason']}", f"From {start} until {end}"]


def _run_url(message: dict[str, Any]) -> str | None:
    deployment = message.get("deployment") or {}
    candidate = message.get("release_candidate") or {}
    url = deployment.get("workflow_run_url") or candidate.get("build_run_url")
    return str(url) if url else None


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _escape(text: str) -> str:
    """Slack's three control characters in text it should show as they are."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
