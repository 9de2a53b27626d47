"""`create` and `push` of a tag: a tag `<tag_prefix><release>-rc<N>` makes release candidate
`<release>-rc<N>` of the project on that repository.

GitHub sends both events for one tag, in either order (and may redeliver either), and they must
make one RC. The `push` names the commit (`head_commit.id`; `after` is the tag object's SHA for
an annotated tag), so the RC is made at once. The `create` names no commit: it leaves an outbox
item (`resolve_tag`) whose effect reads the tag through the Git refs API and then makes the RC
the same way, unless the `push` made it first. Both paths end in
`operations.create_candidate_from_tag`, which finds an RC already made and does nothing more.

Which project a tag belongs to: among the (not removed) projects of the repository whose
`tag_prefix` the tag starts with, the one with the longest prefix (the projects file allows one
project per repository and prefix). So a project with prefix "" takes only tags that start with
no other project's prefix: in a monorepo with `api-` and "", `api-v1-rc1` is the API's `v1-rc1`,
never the other project's `api-v1-rc1`. A tag of that project that is not `<release>-rc<N>` is
ignored. A tag deletion changes nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gidgethub import routing, sansio
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config.projects_file import REPO_PATTERN, ProjectsConfig
from bot.domain.versions import normalize_commit_sha
from bot.github.tag_candidates import (
    TagTarget,
    candidate_exists,
    make_candidate,
    read_tags_ahead,
    tag_target,
    valid_tag,
)
from bot.storage.batch_reads import BatchReads
from bot.storage.outbox import Action, enqueue, tag_key
from bot.storage.projects import ProjectRepositories

if TYPE_CHECKING:
    from bot.github.inbound.context import WebhookContext

log = logging.getLogger(__name__)

router = routing.Router()

TAG_REF_PREFIX = "refs/tags/"


@router.register("push")
async def on_tag_pushed(event: sansio.Event, context: WebhookContext) -> None:
    data = event.data
    pushed = _pushed_tag(data, context.repositories)
    if isinstance(pushed, str):
        context.ignore(pushed)
        return
    repo, tag = pushed
    target = await _target(context, repo, tag)
    if target is None:
        return
    head_commit = data.get("head_commit")
    commit_id = head_commit.get("id") if isinstance(head_commit, dict) else None
    commit = normalize_commit_sha(commit_id) if isinstance(commit_id, str) else None
    if commit is None:
        # No commit named: find it through the Git refs API, as for a `create`.
        await _resolve_later(context.session, context, repo, tag, target)
        return
    outcome = await make_candidate(
        context.session, context.mirror, target, tag, commit, context.now, context.reads
    )
    context.record(outcome)


@router.register("create")
async def on_tag_created(event: sansio.Event, context: WebhookContext) -> None:
    created = _created_tag(event.data, context.repositories)
    if isinstance(created, str):
        context.ignore(created)
        return
    repo, tag = created
    target = await _target(context, repo, tag)
    if target is None:
        return
    if await candidate_exists(context.session, target, context.reads):
        context.record(f"release candidate {target.project} {target.version} exists")
        return
    await _resolve_later(context.session, context, repo, tag, target)


async def read_ahead(
    session: AsyncSession,
    events: Sequence[sansio.Event],
    repositories: ProjectRepositories,
    reads: BatchReads,
) -> None:
    """Before a batch's deliveries are handled: read at once what its tags' handlers look up
    (`read_tags_ahead`), so that each tag costs no query of its own."""
    tags = []
    for event in events:
        if event.event == "push":
            found = _pushed_tag(event.data, repositories)
        elif event.event == "create":
            found = _created_tag(event.data, repositories)
        else:
            continue
        if not isinstance(found, str):
            tags.append(found)
    if tags:
        await read_tags_ahead(session, tags, reads)


def push_ignored_unread(
    data: dict[str, Any], repositories: ProjectRepositories, _projects: ProjectsConfig
) -> str | None:
    """Why the push is ignored before anything is read (a branch, a deleted or moved tag, a
    repository without projects); None when the tag must be looked up."""
    pushed = _pushed_tag(data, repositories)
    return pushed if isinstance(pushed, str) else None


def create_ignored_unread(
    data: dict[str, Any], repositories: ProjectRepositories, _projects: ProjectsConfig
) -> str | None:
    """As `push_ignored_unread`, for a `create`."""
    created = _created_tag(data, repositories)
    return created if isinstance(created, str) else None


def _pushed_tag(data: dict[str, Any], repositories: ProjectRepositories) -> tuple[str, str] | str:
    """(repository, tag) of a new tag pushed to a repository with projects; else why not."""
    ref = data.get("ref")
    if not isinstance(ref, str) or not ref.startswith(TAG_REF_PREFIX):
        return "not a tag"
    tag = ref[len(TAG_REF_PREFIX) :]
    if not valid_tag(tag):
        return "not a valid tag name"
    if data.get("deleted") is True:
        return f"tag {tag} deleted"
    if data.get("created") is not True:
        return f"tag {tag} moved, not created"
    return _tag_of_repository(data, tag, repositories)


def _created_tag(data: dict[str, Any], repositories: ProjectRepositories) -> tuple[str, str] | str:
    """(repository, tag) of a tag created on a repository with projects; else why not."""
    if data.get("ref_type") != "tag":
        return "not a tag"
    tag = data.get("ref")
    if not isinstance(tag, str):
        return "no tag name in the payload"
    return _tag_of_repository(data, tag, repositories)


def _tag_of_repository(
    data: dict[str, Any], tag: str, repositories: ProjectRepositories
) -> tuple[str, str] | str:
    repository = data.get("repository")
    repo = repository.get("full_name") if isinstance(repository, dict) else None
    if not isinstance(repo, str) or re.fullmatch(REPO_PATTERN, repo) is None:
        return "no repository in the payload"
    if not valid_tag(tag):
        return "not a valid tag name"  # not echoed: it may hold anything
    if not repositories.has_projects(repo):
        return _no_candidate(tag)
    return repo, tag


async def _target(context: WebhookContext, repo: str, tag: str) -> TagTarget | None:
    """The RC the tag makes; None (and the event ignored) when it makes none."""
    target = await tag_target(context.session, repo, tag, context.reads)
    if target is None:
        context.ignore(_no_candidate(tag))
        return None
    context.about(project=target.project, release_candidate=target.version)
    return target


def _no_candidate(tag: str) -> str:
    return f"tag {tag} is no release candidate of a project"


async def _resolve_later(
    session: AsyncSession, context: WebhookContext, repo: str, tag: str, target: TagTarget
) -> None:
    await enqueue(
        session,
        action=Action.RESOLVE_TAG,
        ordering_key=tag_key(repo, tag),
        repo=repo,
        payload={"tag": tag, "project": target.project, "version": target.version},
        now=context.now,
    )
    context.record(f"tag {tag}: resolving its commit for {target.project} {target.version}")
