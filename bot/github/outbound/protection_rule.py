"""The answer to a GitHub deployment protection rule's review request: `POST
/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule` with
`{environment_name, state, comment}`, made with the installation's token on Tarmac's
configured API (the run id comes from the payload's `deployment_callback_url`; the URL
itself is never called).

GitHub gives no way to read a custom rule's answer back, so an attempt whose answer was lost
cannot be checked first: it is sent again. GitHub refuses an answer when no job of the run
waits at that environment (422): after an uncertain attempt, that attempt landed; else an
earlier answer covered the job (an answer names an environment of the run, not a job) or the
run ended. Nothing is left to do either way.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.app.operations import Mirror, record_run_status
from bot.app.protection_answers import APPROVED
from bot.domain.statuses import DeploymentStatus, is_final
from bot.github import endpoints
from bot.github.client import GitHubRefused
from bot.github.outbound.effects import EffectContext, Recorder, effect, on_refusal
from bot.storage.models import Deployment
from bot.storage.outbox import Action, ClaimedItem

log = logging.getLogger(__name__)

NOT_WAITING = 422


@effect(Action.ANSWER_PROTECTION_RULE)
async def answer_protection_rule(ctx: EffectContext, item: ClaimedItem) -> Recorder | None:
    payload = item.payload
    body = {
        "environment_name": payload["environment_name"],
        "state": payload["state"],
        "comment": payload["comment"],
    }
    try:
        await endpoints.review_protection_rule(
            ctx.client, ctx.installation_id, item.repo, run_id=int(payload["run_id"]), body=body
        )
    except GitHubRefused as exc:
        if exc.status != NOT_WAITING:
            raise
        log.info("run %s: no job waits at %s any more", payload["run_id"], body["environment_name"])
    return None


@on_refusal(Action.ANSWER_PROTECTION_RULE)
async def answer_refused(
    session: AsyncSession, mirror: Mirror, item: ClaimedItem, reason: str, now: datetime
) -> None:
    """An approval GitHub would not take (not a 422: the App may not answer here, the run is
    gone): the job will not run, so its deployment ends in `error` with GitHub's reason (a
    rejected one is canceled already)."""
    if item.payload.get("state") != APPROVED or item.deployment_id is None:
        return
    deployment = await session.get(Deployment, item.deployment_id)
    if deployment is None or is_final(deployment.status):
        return
    await record_run_status(
        session, mirror, deployment, DeploymentStatus.ERROR, run_url=None, now=now
    )
