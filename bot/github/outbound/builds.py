"""Release candidates on GitHub: the commit of a tag a `create` event named, and the build run.

`resolve_tag` reads `GET …/git/ref/tags/{tag}`; an annotated tag's ref points at a tag object,
which `GET …/git/tags/{sha}` follows to the commit. The RC is then made in the item's own
transaction, exactly as a tag `push` makes it (bot/github/tag_candidates.py).

`dispatch_build_workflow` starts the project's build workflow for a `building` RC, on the tag
(or the default branch for RCs made through the API), with `return_run_details` so the run is
known at once; its `workflow_run` events then finish the build
(bot/github/inbound/workflow_runs.py).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.app.operations import Mirror, finish_build
from bot.domain.statuses import BuildStatus
from bot.domain.versions import normalize_commit_sha
from bot.github import endpoints
from bot.github.client import GitHubRefused
from bot.github.outbound.effects import EffectContext, Recorder, effect, on_refusal, recording
from bot.github.outbound.workflows import (
    candidate_inputs,
    dispatch_workflow,
    lost_run,
    workflow_inputs,
)
from bot.github.run_marks import RunMark, build_mark
from bot.github.tag_candidates import TagTarget, candidate_exists, make_candidate
from bot.storage.models import Project, ReleaseCandidate
from bot.storage.outbox import Action, ClaimedItem

log = logging.getLogger(__name__)

# A tag object may point at another tag object; git allows chains, nobody makes long ones.
MAX_TAG_CHAIN = 5


@effect(Action.RESOLVE_TAG)
async def resolve_tag(ctx: EffectContext, item: ClaimedItem) -> Recorder | None:
    tag = str(item.payload["tag"])
    target = TagTarget(str(item.payload["project"]), str(item.payload["version"]))
    async with ctx.db.read() as session:
        if await candidate_exists(session, target):
            return None  # the tag's `push` made it already
    commit = await _tag_commit(ctx, item.repo, tag)
    if commit is None:
        log.info("tag %s of %s no longer names a commit: no release candidate", tag, item.repo)
        return None

    async def record(session: AsyncSession) -> None:
        outcome = await make_candidate(session, ctx.mirror, target, tag, commit, ctx.clock())
        log.info("tag %s of %s at %s: %s", tag, item.repo, commit, outcome)

    return record


async def _tag_commit(ctx: EffectContext, repo: str, tag: str) -> str | None:
    """The commit `tag` points at; None when the tag is gone (deleted meanwhile) or names
    something else than a commit."""
    try:
        found = await endpoints.get_tag_ref(ctx.client, ctx.installation_id, repo, tag=tag)
        target = found["object"]
        for _ in range(MAX_TAG_CHAIN):
            if target.get("type") != "tag":
                break
            tag_object = await endpoints.get_tag(
                ctx.client, ctx.installation_id, repo, tag_sha=target["sha"]
            )
            target = tag_object["object"]
    except GitHubRefused as exc:
        if exc.status == 404:
            return None
        raise
    if target.get("type") != "commit" or not isinstance(target.get("sha"), str):
        return None
    return normalize_commit_sha(target["sha"])


@effect(Action.DISPATCH_BUILD_WORKFLOW)
async def dispatch_build_workflow(ctx: EffectContext, item: ClaimedItem) -> Recorder | None:
    assert item.release_candidate_id is not None
    async with ctx.db.read() as session:
        candidate = await session.get(ReleaseCandidate, item.release_candidate_id)
        project = await session.get(Project, candidate.project_id) if candidate else None
    if candidate is None or project is None:
        return None
    if candidate.build_run_id is not None or candidate.build_status != BuildStatus.BUILDING:
        return None
    if project.build_workflow is None:
        log.warning("release candidate %d: the project has no build workflow now", candidate.id)
        return _build_failed(ctx, candidate.id, "The project has no build workflow any more")
    what = f"release candidate {candidate.id}"
    workflow = project.build_workflow
    mark, others = await _told_apart(ctx, candidate) if item.uncertain else (None, set[int]())
    run = await lost_run(ctx, item, workflow, mark, what, others=others)
    if run is None:
        ref = item.payload.get("ref") or await ctx.client.default_branch(
            item.repo, ctx.installation_id
        )
        inputs = workflow_inputs(candidate_inputs(candidate), project.build_inputs, what)
        run = await dispatch_workflow(ctx, item, workflow, ref, inputs, what)
    return recording(
        update(ReleaseCandidate)
        .where(ReleaseCandidate.id == candidate.id)
        .values(build_run_id=run.run_id, build_run_url=run.run_url)
    )


async def _told_apart(
    ctx: EffectContext, candidate: ReleaseCandidate
) -> tuple[RunMark | None, set[int]]:
    """How the candidate's build run is told from others: its version in the run's title
    (None when another project of the repository has a build of that version without a run:
    both runs would carry it), and the runs other projects' builds of that version have."""
    async with ctx.db.read() as session:
        rows = await session.execute(
            select(ReleaseCandidate.build_run_id, ReleaseCandidate.build_status)
            .join(Project, Project.id == ReleaseCandidate.project_id)
            .where(
                func.lower(ReleaseCandidate.repo) == candidate.repo.lower(),
                ReleaseCandidate.version == candidate.version,
                ReleaseCandidate.id != candidate.id,
                Project.build_workflow.is_not(None),
            )
        )
    others = rows.all()
    if any(run_id is None and status == BuildStatus.BUILDING for run_id, status in others):
        return None, set()
    return build_mark(candidate.version), {run_id for run_id, _ in others if run_id is not None}


def _build_failed(ctx: EffectContext, candidate_id: int, error: str) -> Recorder:
    async def record(session: AsyncSession) -> None:
        candidate = await session.get(ReleaseCandidate, candidate_id)
        if candidate is not None:
            await finish_build(
                session,
                ctx.mirror,
                candidate,
                succeeded=False,
                run_url=None,
                now=ctx.clock(),
                error=error,
            )

    return record


@on_refusal(Action.DISPATCH_BUILD_WORKFLOW)
async def build_workflow_refused(
    session: AsyncSession, mirror: Mirror, item: ClaimedItem, reason: str, now: datetime
) -> None:
    """No build will run (e.g. no such workflow, or it takes no workflow_dispatch): failed."""
    candidate = await session.get(ReleaseCandidate, item.release_candidate_id)
    if candidate is None:
        return
    log.error("release candidate %d: build workflow not started: %s", candidate.id, reason)
    await finish_build(
        session,
        mirror,
        candidate,
        succeeded=False,
        run_url=None,
        now=now,
        error=f"Build workflow could not be started: {reason}",
    )
