"""Tarmac as a GitHub deployment protection rule: which candidate a gated run deploys, what
becomes of a run Tarmac knows already, and what the answer says.

GitHub asks the App for every job that targets an environment whose protection rules name it,
with the run's commit (`sha`) and what it ran from (`ref`, a tag or a branch). The candidate:

1. the ref is a tag of the project (`<tag_prefix><version>`, `refs/tags/` or not): that
   candidate, whose commit must be the run's;
2. else the newest candidate of the project at the run's commit;
3. else none: Tarmac does not know what the run deploys, and rejects it.

A run Tarmac knows (its deploy, or a run it answered before) is `recheck`ed while its
deployment is under way; one whose deployment was canceled is rejected with why; one whose
deployment ended otherwise is being re-run, and is decided anew as a run started by hand.

A recheck asks what may have changed since Tarmac decided (`refusal_since_decided`): the
candidate marked bad, or a freeze (manual or calendar) that began after the decision. The
order and soak were met (or forced) when Tarmac decided, and a freeze in effect then was
overridden by force: neither is held against the deployment again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol, TypeVar

from bot.core import errors
from bot.domain.freeze import FreezeFacts, current_freeze
from bot.domain.policy import Candidate as PolicyCandidate
from bot.domain.policy import (
    EnvironmentPolicy,
    calendar_freeze,
    calendar_refusal,
    candidate_rejection,
)
from bot.domain.statuses import DeploymentStatus, is_final
from bot.domain.versions import parse_rc_version

TAG_REF_PREFIX = "refs/tags/"
REFUSED_PREFIX = "Refused by Tarmac: "
# GitHub: a protection rule's comment "can be up to 1024 characters long".
MAX_COMMENT = 1024
APPROVED_COMMENT = "Approved by Tarmac: {version} may be deployed to {environment} now"
APPROVED_DECIDED_COMMENT = "Approved by Tarmac: deployment {id} ({version}) may proceed"

NO_PROJECT = "no Tarmac project is on {repo}"
NO_ENVIRONMENT = (
    "no environment '{environment}' in Tarmac's projects on {repo} ({projects}); add it to "
    "the projects file, or remove Tarmac from this GitHub environment's protection rules"
)
NO_CANDIDATE = (
    "the run deploys {what}, which is no release candidate Tarmac knows of {project}; run "
    "the deploy from a candidate's tag"
)
OTHER_COMMIT = "the run's commit {sha} is not {version}'s ({commit})"
SEVERAL_PROJECTS = (
    "commit {sha} is a candidate of several projects with environment '{environment}' "
    "({projects}); run the deploy from the candidate's tag"
)
CANCELED_RUN = "deployment {id} of this run was canceled: {why}"


class CandidateRow(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def version(self) -> str: ...

    @property
    def commit_sha(self) -> str: ...


def tag_of_ref(ref: str | None) -> str | None:
    """The tag a run's ref names (`refs/tags/v1-rc1` or `v1-rc1`), or None for a branch."""
    if not ref or (ref.startswith("refs/") and not ref.startswith(TAG_REF_PREFIX)):
        return None
    return ref.removeprefix(TAG_REF_PREFIX)


def version_of_tag(tag: str | None, tag_prefix: str) -> str | None:
    """The candidate version a project's tag stands for (its prefix taken off)."""
    if tag is None or not tag.startswith(tag_prefix):
        return None
    version = tag[len(tag_prefix) :]
    return version if parse_rc_version(version) is not None else None


@dataclass(frozen=True)
class Placed:
    """The candidate a gated run deploys, or why there is none (`refusal`)."""

    candidate: CandidateRow | None
    refusal: str | None = None
    project: str = ""
    by_tag: bool = False


def gated_candidate(
    *,
    by_tag: CandidateRow | None,
    tag_version: str | None,
    at_commit: Sequence[CandidateRow],
    sha: str | None,
    ref: str | None,
    project: str,
) -> Placed:
    """Which candidate the run deploys: its tag's, else the newest at its commit
    (`at_commit` newest first)."""
    if by_tag is not None:
        if sha is not None and by_tag.commit_sha != sha:
            other = OTHER_COMMIT.format(sha=sha, version=by_tag.version, commit=by_tag.commit_sha)
            return Placed(None, other, project)
        return Placed(by_tag, None, project, by_tag=True)
    if at_commit:
        return Placed(at_commit[0], None, project)
    what = tag_version or (f"commit {sha}" if sha else f"ref {ref or '(none)'}")
    return Placed(None, NO_CANDIDATE.format(what=what, project=project), project)


T = TypeVar("T")


def one_placement(
    placements: Sequence[tuple[T, Placed]], *, sha: str | None, environment: str
) -> tuple[T | None, Placed]:
    """Of the environments of that name (one per project on the repository), the one whose
    project has the run's candidate: the only one, or the only one found by its tag."""
    found = [(where, placed) for where, placed in placements if placed.candidate is not None]
    if len(found) > 1:
        found = [(w, p) for w, p in found if p.by_tag] or found
    if len(found) == 1:
        return found[0]
    if not found:
        where, placed = placements[0]
        return where, placed
    projects = ", ".join(sorted(p.project for _, p in found))
    refusal = SEVERAL_PROJECTS.format(sha=sha, environment=environment, projects=projects)
    return None, Placed(None, refusal)


class KnownRun(StrEnum):
    """What becomes of a gated run that is on a deployment already."""

    RECHECK = "recheck"  # under way: approved if the rules still allow it
    CANCELED = "canceled"  # rejected, saying why it was canceled
    RERUN = "rerun"  # it ended and is run again: decided anew


def known_run(status: str) -> KnownRun:
    if not is_final(status):
        return KnownRun.RECHECK
    if status == DeploymentStatus.CANCELED:
        return KnownRun.CANCELED
    return KnownRun.RERUN


def refused_message(reason: str) -> str:
    """A refused run's deployment's `error_message` and the answer's comment."""
    return clipped(REFUSED_PREFIX + reason)


def clipped(comment: str) -> str:
    if len(comment) <= MAX_COMMENT:
        return comment
    return comment[: MAX_COMMENT - 1] + "…"


def refusal_since_decided(
    candidate: PolicyCandidate,
    environment: FreezeFacts,
    policy: EnvironmentPolicy,
    decided_at: datetime,
    now: datetime,
) -> errors.DomainError | None:
    """Why a deployment Tarmac let through at `decided_at` may not go on at `now`: its
    candidate marked bad, or a freeze that began since."""
    rejected = candidate_rejection(candidate)
    if rejected is not None:
        return rejected
    manual = current_freeze(environment, now)
    if manual is not None and manual.since > decided_at:
        return errors.invalid(errors.ENVIRONMENT_FROZEN, frozen_message(environment, now))
    window = calendar_freeze(policy, now)
    if window is not None and window.start > decided_at:
        return calendar_refusal(window)
    return None


def frozen_message(environment: FreezeFacts, now: datetime) -> str:
    """The manual freeze's refusal, with who froze it, why and until when: what a run's
    reviewer reads on GitHub."""
    freeze = current_freeze(environment, now)
    text = errors.ENVIRONMENT_FROZEN.value
    if freeze is None:
        return text
    by = f" by {freeze.by}" if freeze.by else ""
    why = f": {freeze.reason}" if freeze.reason else ""
    until = f" until {freeze.until.strftime('%Y-%m-%d %H:%M')} UTC" if freeze.until else ""
    return f"{text}{by}{until}{why}"


def described(refusal: errors.DomainError, environment: FreezeFacts, now: datetime) -> str:
    """A refusal as the answer's comment says it: the manual freeze's with its reason."""
    if refusal.code is errors.ENVIRONMENT_FROZEN:
        return frozen_message(environment, now)
    return refusal.message
