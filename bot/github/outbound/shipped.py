"""What a successful deployment tells people: every pull request it brought into an
environment (or a rollback took out of it) has its Tarmac note updated, and a candidate's first
success in production publishes its GitHub Release (bot/app/shipped.py plans both).

Which pull requests moved comes from the change report between what ran there before and the
deployed candidate, read from the database when it was made before and otherwise fetched here,
within the attempt's time, resumed by the next attempt where it stopped (as
bot/github/outbound/change_reports.py does), and stored for every later request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.app.shipped import plan_release, record_shipped
from bot.domain.changes import ChangeReport, Direction, PathFilter, PullRequest, shipped_direction
from bot.github.outbound.change_reports import OutOfTime, report_fetch
from bot.github.outbound.effects import CheckAgain, EffectContext, Recorder, effect
from bot.storage.change_reports import ask_for_report, find_report, report_of, store_report
from bot.storage.deployments import succeeded_in_production_before
from bot.storage.models import Deployment, ReleaseCandidate
from bot.storage.outbox import Action, ClaimedItem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Facts:
    repo: str
    paths: PathFilter
    candidate: str  # commits
    before: str | None  # what ran in the environment before; None: the first deployment
    notes: bool
    release_since: str | None  # the previous production candidate's commit
    release: bool


@dataclass
class _Reports:
    """The reports this attempt needs: stored ones read, missing ones fetched and kept for
    the recorder to store."""

    ctx: EffectContext
    facts: _Facts
    progress: dict[str, Any]
    fetched: dict[tuple[str, str], tuple[ChangeReport, int]] = field(default_factory=dict)

    async def between(self, base: str, head: str) -> ChangeReport:
        async with self.ctx.db.read() as session:
            row = await find_report(session, self.facts.repo, base, head, self.facts.paths)
        if row is not None and row.completed_at is not None and row.error is None:
            return report_of(row)
        key = f"{base}...{head}"
        fetch = report_fetch(
            self.ctx, self.facts.repo, base, head, self.facts.paths, self.progress.get(key)
        )
        try:
            report = await fetch.report()
        except OutOfTime as exc:
            self.progress[key] = exc.progress
            raise
        self.fetched[(base, head)] = (report, fetch.calls)
        return report


async def _facts(session: AsyncSession, deployment_id: int) -> _Facts | None:
    deployment = await session.get(Deployment, deployment_id)
    if deployment is None:
        return None
    environment = deployment.environment
    project = environment.project
    before = deployment.from_release_candidate
    release = (
        project.github_releases
        and environment.production
        and deployment.release_candidate.tag is not None
        and not await succeeded_in_production_before(session, deployment)
    )
    return _Facts(
        repo=project.repo,
        paths=PathFilter(tuple(project.paths or ())),
        candidate=deployment.release_candidate.commit_sha.lower(),
        before=before.commit_sha.lower() if before is not None else None,
        notes=project.pull_request_comments and before is not None,
        release_since=before.commit_sha.lower() if before is not None and release else None,
        release=release,
    )


@effect(Action.ANNOUNCE_SHIPPED)
async def announce_shipped(ctx: EffectContext, item: ClaimedItem) -> Recorder | None:
    assert item.deployment_id is not None
    async with ctx.db.read() as session:
        facts = await _facts(session, item.deployment_id)
    if facts is None or not (facts.notes or facts.release):
        return None
    reports = _Reports(ctx, facts, dict(item.payload.get("progress") or {}))
    came_in: tuple[PullRequest, ...] = ()
    went_out: tuple[PullRequest, ...] = ()
    release_report: ChangeReport | None = None
    try:
        if facts.notes and facts.before is not None and facts.before != facts.candidate:
            forward = await reports.between(facts.before, facts.candidate)
            direction = shipped_direction(forward)
            if direction is Direction.CAME_IN:
                came_in = forward.pull_requests
            elif direction is Direction.WENT_OUT:
                went_out = (await reports.between(facts.candidate, facts.before)).pull_requests
        since = facts.release_since
        if facts.release and since is not None and since != facts.candidate:
            release_report = await reports.between(since, facts.candidate)
    except OutOfTime as exc:
        payload = {**item.payload, "progress": reports.progress}
        raise CheckAgain(f"change report: {exc}", after=0, payload=payload) from None

    async def record(session: AsyncSession) -> None:
        now = ctx.clock()
        for (base, head), (report, calls) in reports.fetched.items():
            await ask_for_report(session, facts.repo, base, head, facts.paths, now)
            await store_report(
                session, facts.repo, facts.paths, report, github_calls=calls, now=now
            )
        deployment = await session.get(Deployment, item.deployment_id)
        assert deployment is not None
        environment = deployment.environment
        candidate = deployment.release_candidate
        if facts.notes and (came_in or went_out):
            await record_shipped(
                session,
                project=environment.project,
                environment=environment,
                candidate=candidate,
                came_in=came_in,
                went_out=went_out,
                now=now,
            )
        if facts.release:
            previous: ReleaseCandidate | None = deployment.from_release_candidate
            await plan_release(
                session,
                project=environment.project,
                candidate=candidate,
                previous=previous,
                pull_requests=release_report.pull_requests if release_report else (),
                commits=release_report.commits if release_report else (),
                now=now,
            )

    return record
