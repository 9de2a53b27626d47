"""Dispatching a GitHub Actions workflow, for builds and deploys alike, and finding the run of a
dispatch whose answer was lost.

A dispatch is sent with `return_run_details`, so its answer names the run. When the answer is
lost (a 5xx, a dropped connection, a process killed mid-call) the dispatch may have started a
run all the same. Tarmac then lists the workflow's recent `workflow_dispatch` runs and
recognises its own by the mark the workflow's `run-name` carries (`Tarmac deployment <id>`,
`Tarmac build <version>`, as in docs/workflows/): a run carrying the item's mark is bound to it;
no such run, looked for a few times until LOOKUP_WINDOW after the lost dispatch was sent,
means GitHub never started one, and the dispatch goes out again. When the runs cannot tell
(a run without a mark: the workflow's run-name predates them; the App may not read runs; more
runs than a look reads), Tarmac waits the grace instead, for the run's `workflow_run` event.
docs/decisions.md says why this is safe and what risk remains.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn

from bot.github import endpoints
from bot.github.client import GitHubRefused, GitHubUnavailable
from bot.github.outbound.effects import CheckAgain, EffectContext
from bot.github.run_marks import RunMark, run_mark
from bot.storage.models import ReleaseCandidate
from bot.storage.outbox import ClaimedItem

log = logging.getLogger(__name__)

# GitHub refuses a dispatch with more inputs than this.
MAX_WORKFLOW_INPUTS = 25
WAITING_FOR_LOST_RUN = "dispatch answer lost; waiting for its run to show up"
LOOKING_FOR_LOST_RUN = "dispatch answer lost; looking for its run"
# After a lost answer the first look comes this soon (a run that exists ends it), the next ones
# this far apart.
FIRST_LOOK_SECONDS = 1.0
LOOK_INTERVAL_SECONDS = 3.0
# "No run" is concluded only from a look this long after the lost dispatch was sent at the
# latest, and after MIN_LOOKS looks: GitHub gives up on a request after 10 s, and a run it
# created is listed a few seconds later (the list is eventually consistent).
LOOKUP_WINDOW = timedelta(seconds=15)
MIN_LOOKS = 2
# Runs are listed from this long before the item was made: GitHub's clock is not Tarmac's.
CLOCK_SKEW = timedelta(minutes=5)
RUNS_PER_PAGE = 100
# GitHub lists at most 1,000 runs for a filtered query.
MAX_RUN_PAGES = 10


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


async def dispatch_workflow(
    ctx: EffectContext,
    item: ClaimedItem,
    workflow: str,
    ref: str,
    inputs: dict[str, str],
    what: str,
) -> DispatchedRun:
    try:
        run = await endpoints.dispatch_workflow(
            ctx.client, ctx.installation_id, item.repo, workflow=workflow, ref=ref, inputs=inputs
        )
    except GitHubUnavailable as exc:
        if not exc.ambiguous:
            raise
        log.warning("%s: dispatch answer lost (%s); looking for its run", what, exc.reason)
        raise CheckAgain(
            LOOKING_FOR_LOST_RUN,
            after=FIRST_LOOK_SECONDS,
            payload=_remember(item, sent_by=ctx.clock(), looks=0),
        ) from None
    if not isinstance(run, dict):
        return DispatchedRun(None, None)
    return DispatchedRun(int(run["workflow_run_id"]), str(run["html_url"]))


async def lost_run(
    ctx: EffectContext,
    item: ClaimedItem,
    workflow: str,
    mark: RunMark | None,
    what: str,
    *,
    others: Collection[int] = (),
) -> DispatchedRun | None:
    """The run an earlier, possibly landed dispatch of `item` started, once found; None when
    no earlier dispatch may have landed, or when none did: the caller dispatches.

    `mark` is what the item's run would carry in its title (None: nothing tells its runs
    apart); `others` are runs known to be someone else's. Raises CheckAgain while the runs
    cannot tell yet, and GitHubUnavailable(WAITING_FOR_LOST_RUN) to wait the grace for the
    run's `workflow_run` event when they cannot tell at all.
    """
    if item.previous_error == WAITING_FOR_LOST_RUN:
        log.warning("%s: no run showed up for the lost dispatch; dispatching again", what)
        return None
    if not item.uncertain:
        return None
    if mark is None:
        _wait_for_lost_run(ctx, what, "its runs carry nothing that tells them apart")
    sent_by, looks = _looked(item)
    try:
        runs = await _recent_runs(ctx, item, workflow)
    except _CannotLook as exc:
        _wait_for_lost_run(ctx, what, str(exc))
    except GitHubUnavailable as exc:
        # A look that could not be made sent nothing: the looking goes on where it was.
        after = max(LOOK_INTERVAL_SECONDS, exc.retry_after or 0.0)
        log.warning("%s: could not look for the lost dispatch's run (%s)", what, exc.reason)
        payload = _remember(item, sent_by=sent_by, looks=looks)
        raise CheckAgain(LOOKING_FOR_LOST_RUN, after=after, payload=payload) from None
    runs = [run for run in runs if run.get("id") not in others]
    mine = [run for run in runs if _mark_of(run) == mark]
    if mine:
        found = min(mine, key=lambda run: int(run["id"]))
        if len(mine) > 1:
            log.error("%s: %d runs carry its mark; following the first", what, len(mine))
        log.info("%s: found run %s of the lost dispatch", what, found["id"])
        url = found.get("html_url")
        return DispatchedRun(int(found["id"]), url if isinstance(url, str) else None)
    if any(_mark_of(run) is None for run in runs):
        # One of them may be ours: its workflow's run-name carries no Tarmac mark.
        _wait_for_lost_run(ctx, what, f"runs of {workflow} carry no Tarmac id")
    looks += 1
    now = ctx.clock()
    window_ends = sent_by + LOOKUP_WINDOW
    if looks >= MIN_LOOKS and now >= window_ends:
        log.warning(
            "%s: no run of the lost dispatch after %d looks; dispatching again", what, looks
        )
        return None
    until_end = (window_ends - now).total_seconds()
    after = until_end if 0 < until_end < LOOK_INTERVAL_SECONDS else LOOK_INTERVAL_SECONDS
    raise CheckAgain(
        LOOKING_FOR_LOST_RUN, after=after, payload=_remember(item, sent_by=sent_by, looks=looks)
    )


def _wait_for_lost_run(ctx: EffectContext, what: str, why: str) -> NoReturn:
    """A second run is worse than a late one: give the lost run's workflow_run event the grace
    to attach it (by workflow path and commit) before dispatching again."""
    log.warning("%s: dispatch answer lost and %s; waiting for its run", what, why)
    raise GitHubUnavailable(WAITING_FOR_LOST_RUN, retry_after=ctx.lost_dispatch_grace)


def _mark_of(run: dict[str, Any]) -> RunMark | None:
    title = run.get("display_title")
    return run_mark(title) if isinstance(title, str) else None


def _remember(item: ClaimedItem, *, sent_by: datetime, looks: int) -> dict[str, Any]:
    return {**item.payload, "lost_dispatch": {"sent_by": sent_by.isoformat(), "looks": looks}}


def _looked(item: ClaimedItem) -> tuple[datetime, int]:
    """When the lost dispatch was sent at the latest, and how many looks found nothing since.

    Carried over only from a look recorded by the attempt before; after anything else (the
    process died, the attempt timed out, GitHub rate limited it) the count starts again from
    when this attempt was due, which is after anything an earlier attempt sent."""
    remembered = item.payload.get("lost_dispatch")
    if item.previous_error == LOOKING_FOR_LOST_RUN and isinstance(remembered, dict):
        try:
            return datetime.fromisoformat(remembered["sent_by"]), int(remembered["looks"])
        except (KeyError, TypeError, ValueError):
            pass
    return item.due_at, 0


class _CannotLook(Exception):
    """The runs cannot say whether the lost dispatch started one (the why is the message)."""


async def _recent_runs(
    ctx: EffectContext, item: ClaimedItem, workflow: str
) -> list[dict[str, Any]]:
    """The workflow's `workflow_dispatch` runs created since the item was made, newest first.
    Raises _CannotLook when the App may not list them, or there are more than a look reads."""
    since = (item.created_at - CLOCK_SKEW).strftime("%Y-%m-%dT%H:%M:%SZ")
    runs: list[dict[str, Any]] = []
    next_url: str | None = None
    for _ in range(MAX_RUN_PAGES):
        try:
            page = await endpoints.list_workflow_runs(
                ctx.client,
                ctx.installation_id,
                item.repo,
                workflow=workflow,
                created=f">={since}",
                per_page=RUNS_PER_PAGE,
                url=next_url,
            )
        except GitHubRefused as exc:
            if exc.status not in (403, 404):
                raise
            _cannot_list(ctx, item.repo, exc)
            raise _CannotLook(f"the App may not list the runs of {workflow}") from None
        listed = page.data.get("workflow_runs") if isinstance(page.data, dict) else None
        runs += [run for run in listed or [] if isinstance(run, dict) and _is_id(run.get("id"))]
        if page.next_url is None:
            return runs
        next_url = page.next_url
    raise _CannotLook(f"{workflow} has more runs since than {MAX_RUN_PAGES} pages")


def _cannot_list(ctx: EffectContext, repo: str, exc: GitHubRefused) -> None:
    said = f"cannot list runs of {repo.lower()}"
    if said in ctx.warned:
        return
    ctx.warned.add(said)
    log.warning(
        "cannot list the workflow runs of %s (%s): a lost dispatch there waits for its run's "
        "event instead; give the App `actions: read`",
        repo,
        exc,
    )


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
