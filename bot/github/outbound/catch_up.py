"""Nothing missed while Tarmac was down: failed webhook deliveries and silent workflow runs.

GitHub does not redeliver a failed delivery by itself. At start and every few minutes Tarmac
lists the App's recent deliveries (`GET /app/hook/deliveries`, newest first, page by page back
to a start time) and asks GitHub to send again (`POST /app/hook/deliveries/{delivery_id}/
attempts`) every delivery that failed (a status code other than 2xx), whose `guid`
(= `X-GitHub-Delivery`) Tarmac never recorded and of which no other attempt succeeded. Each guid
is asked for at most once per process run, so a delivery that keeps failing does not loop.

The first round reaches back to the newest delivery the database recorded (so a downtime of any
length is covered, up to MAX_LOOKBACK), or an hour on a database that never had one; each later
round back to the start of the round before. Rounds overlap by OVERLAP, for deliveries that were
being listed while the previous round ran and for a clock a little off GitHub's.

A deploy run's `workflow_run` events may be lost the same way: an active deployment with a run
that has said nothing for `quiet_for` is looked up (`GET /repos/{owner}/{repo}/actions/runs/
{run_id}`) and moved as the run's event would have moved it. A run GitHub does not know (404)
is left to the deployment timeout.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from bot.app.operations import Mirror, record_run_status
from bot.core.clock import Clock
from bot.domain.statuses import ACTIVE_STATUSES
from bot.github import endpoints
from bot.github.client import GitHubClient, GitHubRefused
from bot.github.payloads import github_time
from bot.github.runs import deployment_status, read_run
from bot.storage.db import Database
from bot.storage.environments import locked_environment
from bot.storage.installations import installation_for_repo
from bot.storage.models import Deployment, Environment, Project, WebhookDelivery

log = logging.getLogger(__name__)

CATCH_UP_INTERVAL_SECONDS = 180.0
# How far the first round looks back when the database has never recorded a delivery.
FIRST_WINDOW = timedelta(hours=1)
# GitHub lets an App redeliver 30 days back; older events would only replay stale news.
MAX_LOOKBACK = timedelta(days=3)
OVERLAP = timedelta(minutes=5)
QUIET_FOR = timedelta(minutes=5)
PER_PAGE = 100
# 10 000 deliveries a round; what is older waits for the next round.
MAX_PAGES = 100


@dataclass
class DeliveryCatchUp:
    """What the redelivery catch-up remembers between rounds of one process run."""

    asked: set[str] = field(default_factory=set)
    previous_round_at: datetime | None = None


async def catch_up_since(db: Database, now: datetime, state: DeliveryCatchUp) -> datetime:
    """How far back this round lists deliveries (see the module docstring)."""
    if state.previous_round_at is not None:
        since = state.previous_round_at - OVERLAP
    else:
        async with db.read() as session:
            newest = await session.scalar(select(func.max(WebhookDelivery.received_at)))
        since = (newest - OVERLAP) if newest is not None else (now - FIRST_WINDOW)
    return max(since, now - MAX_LOOKBACK)


def _succeeded(status_code: Any) -> bool:
    return isinstance(status_code, int) and 200 <= status_code < 300


def _delivered_at(delivery: dict[str, Any]) -> datetime | None:
    return github_time(delivery.get("delivered_at"))


async def _recent_deliveries(client: GitHubClient, since: datetime) -> list[dict[str, Any]]:
    """The App's deliveries newest first, back to `since` (at most MAX_PAGES pages)."""
    found: list[dict[str, Any]] = []
    next_url: str | None = None
    for _ in range(MAX_PAGES):
        page = await endpoints.list_deliveries(client, PER_PAGE, url=next_url)
        if not isinstance(page.data, list):
            break
        reached_end = False
        for delivery in page.data:
            if not isinstance(delivery, dict):
                continue
            at = _delivered_at(delivery)
            if at is not None and at < since:
                reached_end = True
                continue
            found.append(delivery)
        if reached_end or page.next_url is None:
            break
        next_url = page.next_url
    else:
        log.warning(
            "catch-up listed %d deliveries (%d pages) without reaching %s; the rest waits for "
            "the next round",
            len(found),
            MAX_PAGES,
            since.isoformat(),
        )
    return found


async def redeliver_missed(
    db: Database,
    client: GitHubClient,
    clock: Clock,
    *,
    since: datetime,
    asked: set[str],
) -> int:
    """Ask GitHub to redeliver the failed deliveries since `since` that Tarmac never recorded;
    returns how many were asked. `asked` remembers guids across calls."""
    deliveries = await _recent_deliveries(client, since)
    succeeded = {d.get("guid") for d in deliveries if _succeeded(d.get("status_code"))}
    failed: dict[str, int] = {}  # guid -> the newest failed attempt's id
    for delivery in deliveries:
        guid, delivery_id = delivery.get("guid"), delivery.get("id")
        if not isinstance(guid, str) or not guid or guid in succeeded or guid in asked:
            continue
        if not isinstance(delivery_id, int) or isinstance(delivery_id, bool):
            continue
        if _succeeded(delivery.get("status_code")):
            continue
        failed[guid] = max(delivery_id, failed.get(guid, delivery_id))
    if not failed:
        return 0
    async with db.read() as session:
        recorded = set(
            await session.scalars(
                select(WebhookDelivery.delivery_id).where(
                    WebhookDelivery.delivery_id.in_(list(failed))
                )
            )
        )
    count = 0
    for guid, delivery_id in failed.items():
        if guid in recorded:
            continue
        asked.add(guid)
        try:
            await endpoints.redeliver(client, delivery_id)
        except GitHubRefused as exc:
            log.warning("GitHub refused to redeliver delivery %s: %s", guid, exc.message)
            continue
        log.info("asked GitHub to redeliver missed delivery %s (attempt %d)", guid, delivery_id)
        count += 1
    return count


async def reconcile_silent_runs(
    db: Database,
    client: GitHubClient,
    clock: Clock,
    mirror: Mirror,
    *,
    quiet_for: timedelta,
) -> int:
    """Look up the runs of active deployments quiet for `quiet_for` and apply what GitHub
    says as their `workflow_run` event would; returns how many deployments changed."""
    async with db.read() as session:
        rows = (
            await session.execute(
                select(Deployment.id, Deployment.environment_id, Deployment.workflow_run_id)
                .add_columns(Project.repo)
                .join(Environment, Environment.id == Deployment.environment_id)
                .join(Project, Project.id == Environment.project_id)
                .where(
                    Deployment.status.in_(ACTIVE_STATUSES),
                    Deployment.workflow_run_id.is_not(None),
                    Deployment.updated_at < clock() - quiet_for,
                )
                .order_by(Deployment.id)
            )
        ).all()
        installations = {repo: await installation_for_repo(session, repo) for *_, repo in rows}
    changed = 0
    for deployment_id, environment_id, run_id, repo in rows:
        installation_id = installations[repo]
        if installation_id is None:
            log.info("no installation known for %s; run %d not looked up", repo, run_id)
            continue
        try:
            data = await endpoints.get_workflow_run(client, installation_id, repo, run_id=run_id)
        except GitHubRefused as exc:
            # 404: GitHub does not know the run; the deployment timeout will end it.
            log.info("run %d of deployment %d not looked up: %s", run_id, deployment_id, exc)
            continue
        run = read_run(
            {
                "action": data.get("status") if isinstance(data, dict) else None,
                "workflow_run": data,
                "repository": {"full_name": repo},
            }
        )
        if run is None or run.id != run_id:
            log.warning("run %d of deployment %d: unreadable answer", run_id, deployment_id)
            continue
        status = deployment_status(run)
        async with db.write() as session:
            environment = await locked_environment(session, environment_id)
            deployment = await session.scalar(
                select(Deployment)
                .where(Deployment.id == deployment_id, Deployment.workflow_run_id == run_id)
                .with_for_update(of=Deployment)
            )
            if environment is None or deployment is None:
                continue
            if await record_run_status(
                session, mirror, deployment, status, run_url=run.html_url, now=clock()
            ):
                log.info(
                    "deployment %d %s: run %d was silent and is %s",
                    deployment_id,
                    status,
                    run_id,
                    run.action,
                )
                changed += 1
    return changed


async def run_catch_up(
    db: Database,
    client: GitHubClient,
    clock: Clock,
    mirror: Mirror,
    *,
    interval: float = CATCH_UP_INTERVAL_SECONDS,
    quiet_for: timedelta = QUIET_FOR,
) -> None:
    """Both catch-ups at start and then every `interval` seconds; a failure is logged and
    the next round tries again. What it enqueues wakes the outbox worker as any commit's does
    (bot/storage/db.py)."""
    deliveries = DeliveryCatchUp()
    while True:
        try:
            started = clock()
            since = await catch_up_since(db, started, deliveries)
            await redeliver_missed(db, client, clock, since=since, asked=deliveries.asked)
            deliveries.previous_round_at = started
        except Exception:
            log.exception("listing missed webhook deliveries failed; retrying in %.0f s", interval)
        try:
            await reconcile_silent_runs(db, client, clock, mirror, quiet_for=quiet_for)
        except Exception:
            log.exception("reconciling silent runs failed; retrying in %.0f s", interval)
        await asyncio.sleep(interval)
