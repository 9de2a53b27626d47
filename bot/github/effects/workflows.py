"""Dispatching a GitHub Actions workflow, for builds and deploys alike."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.github.client import GitHubUnavailable
from bot.github.effects import EffectContext, owner_and_name
from bot.models import ReleaseCandidate
from bot.outbox import ClaimedItem

log = logging.getLogger(__name__)

# GitHub refuses a dispatch with more inputs than this.
MAX_WORKFLOW_INPUTS = 25
WAITING_FOR_LOST_RUN = "dispatch answer lost; waiting for its run to show up"


@dataclass(frozen=True)
class DispatchedRun:
    run_id: int | None
    run_url: str | None


def workflow_input(value: Any) -> str:
    """Workflow inputs are strings on the wire; booleans as GitHub writes them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def workflow_inputs(
    own: Mapping[str, str], configured: Mapping[str, Any], what: str
) -> dict[str, str]:
    """Tarmac's own inputs, and as many of the configured ones as GitHub takes (the first
    ones, in the projects file's order); a configured input never overrides Tarmac's."""
    extra = [(key, workflow_input(value)) for key, value in configured.items() if key not in own]
    room = MAX_WORKFLOW_INPUTS - len(own)
    if len(extra) > room:
        log.warning("%s: %d configured workflow inputs left out", what, len(extra) - room)
    return {**dict(extra[:room]), **own}


def candidate_inputs(candidate: ReleaseCandidate) -> dict[str, str]:
    """The inputs every Tarmac workflow gets: which RC, at which commit."""
    return {
        "tarmac_release_candidate_version": candidate.version,
        "tarmac_commit_sha": candidate.commit_sha,
    }


async def wait_for_lost_run(ctx: EffectContext, item: ClaimedItem, what: str) -> None:
    """A dispatch whose answer was lost may have started a run. A second run is worse than a
    late one, so first give the run's workflow_run event time to attach it (by workflow path
    and commit); the caller only gets past this when no answer was lost, or once that time
    has passed with no run."""
    if not (item.uncertain or item.previous_error == WAITING_FOR_LOST_RUN):
        return
    if item.previous_error == WAITING_FOR_LOST_RUN:
        log.warning("%s: no run showed up for the lost dispatch; dispatching again", what)
        return
    log.warning("%s: dispatch answer lost; waiting for its run before dispatching again", what)
    raise GitHubUnavailable(WAITING_FOR_LOST_RUN, retry_after=ctx.lost_dispatch_grace)


async def dispatch_workflow(
    ctx: EffectContext, repo: str, workflow: str, ref: str, inputs: dict[str, str]
) -> DispatchedRun:
    run = await ctx.client.call(
        "POST",
        "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches",
        installation_id=ctx.installation_id,
        url_vars={**owner_and_name(repo), "workflow_id": workflow},
        data={"ref": ref, "inputs": inputs, "return_run_details": True},
    )
    if not isinstance(run, dict):
        return DispatchedRun(None, None)
    return DispatchedRun(int(run["workflow_run_id"]), str(run["html_url"]))
