"""Refusals of the domain rules. Each carries a stable code (whose text is the exact message
users see) and what kind of refusal it is; the REST face maps the kind to a status code, a PR
comment picks its reply by the code."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import Enum, StrEnum
from typing import Any


class Refusal(Enum):
    INVALID = "invalid"  # 400
    NOT_FOUND = "not_found"  # 404
    CONFLICT = "conflict"  # 409


class RefusalCode(StrEnum):
    """Why the rules said no: one member per refusal, its value the message users see."""

    PROJECT_NOT_FOUND = "Release project not found"
    ENVIRONMENT_NOT_FOUND = "Release environment not found"
    RELEASE_NOT_FOUND = "Release not found"
    REPOSITORY_NOT_FOUND = "GitHub repository not found"
    INVALID_RC_VERSION = "Invalid release candidate version"
    INVALID_COMMIT = "Invalid commit hash"
    NOTHING_TO_ROLL_BACK_TO = "No previous deployment to roll back from"
    ENVIRONMENT_FROZEN = "Environment is frozen"
    ENVIRONMENT_REMOVED = "Release environment was removed from the projects file"
    PROJECT_REMOVED = "Release project was removed from the projects file"
    RC_STILL_BUILDING = "Release candidate is still building"
    RC_BUILD_FAILED = "Release candidate build failed"
    RC_COMMIT_CONFLICT = "Release candidate already exists with a different commit"
    NO_BUILD_WORKFLOW = "Release project has no build workflow configured"
    BUILD_NEEDS_GITHUB_APP = (
        "trigger_build_workflow needs the GitHub App, which runs the build workflow and hears "
        "how it ends; without one, create the candidate without it (it is ready at once)"
    )
    FREEZE_UNTIL_IN_PAST = "Freeze 'until' must be in the future"
    DEPLOYMENT_NOT_FOUND = "Deployment not found"
    DEPLOYMENT_ALREADY_ENDED = (
        "Deployment has already ended; only a pending, in_progress, canceling or unknown "
        "deployment can be canceled"
    )
    NOTHING_TO_CANCEL = "No deployment of the environment is under way"
    CHANGES_NEED_ONE_BASE = (
        "Give exactly one of 'since' (a release candidate version) or 'environment'"
    )
    NOTHING_RUNNING = "Nothing is running in the environment"
    CHANGES_REFUSED = (
        "GitHub could not compare the two candidates' commits (are both pushed to the "
        "repository, and may the GitHub App read its contents and pull requests?)"
    )
    CHANGES_NEED_GITHUB_APP = (
        "Change reports need the GitHub App, which reads the commits and pull requests "
        "between the candidates from GitHub"
    )
    # The release policy (bot/domain/policy.py): the message users see says more (which
    # environment, until when); the code's text is how it begins.
    CANDIDATE_REJECTED = "Release candidate is marked bad"
    FROZEN_BY_CALENDAR = "Environment is frozen until"
    NOT_PROMOTED = "Release candidate must succeed in the environments this one requires"
    STILL_SOAKING = (
        "Release candidate has not soaked long enough in the environments this one requires"
    )
    FORCE_NEEDS_REASON = "A forced deploy needs a reason: say why in 'reason'"
    SELF_APPROVAL = "You cannot approve a deployment you asked for"
    NOT_AN_APPROVER = "You may not approve deployments to this environment"
    NOT_WAITING_FOR_APPROVAL = "Deployment is not waiting for approval"
    CANDIDATE_NOT_REJECTED = "Release candidate is not marked bad"


# The codes by their module-level names, as the rules raise them (`errors.not_found(errors.X)`).
PROJECT_NOT_FOUND = RefusalCode.PROJECT_NOT_FOUND
ENVIRONMENT_NOT_FOUND = RefusalCode.ENVIRONMENT_NOT_FOUND
RELEASE_NOT_FOUND = RefusalCode.RELEASE_NOT_FOUND
REPOSITORY_NOT_FOUND = RefusalCode.REPOSITORY_NOT_FOUND
INVALID_RC_VERSION = RefusalCode.INVALID_RC_VERSION
INVALID_COMMIT = RefusalCode.INVALID_COMMIT
NOTHING_TO_ROLL_BACK_TO = RefusalCode.NOTHING_TO_ROLL_BACK_TO
ENVIRONMENT_FROZEN = RefusalCode.ENVIRONMENT_FROZEN
ENVIRONMENT_REMOVED = RefusalCode.ENVIRONMENT_REMOVED
PROJECT_REMOVED = RefusalCode.PROJECT_REMOVED
RC_STILL_BUILDING = RefusalCode.RC_STILL_BUILDING
RC_BUILD_FAILED = RefusalCode.RC_BUILD_FAILED
RC_COMMIT_CONFLICT = RefusalCode.RC_COMMIT_CONFLICT
NO_BUILD_WORKFLOW = RefusalCode.NO_BUILD_WORKFLOW
BUILD_NEEDS_GITHUB_APP = RefusalCode.BUILD_NEEDS_GITHUB_APP
FREEZE_UNTIL_IN_PAST = RefusalCode.FREEZE_UNTIL_IN_PAST
DEPLOYMENT_NOT_FOUND = RefusalCode.DEPLOYMENT_NOT_FOUND
DEPLOYMENT_ALREADY_ENDED = RefusalCode.DEPLOYMENT_ALREADY_ENDED
NOTHING_TO_CANCEL = RefusalCode.NOTHING_TO_CANCEL
CHANGES_NEED_ONE_BASE = RefusalCode.CHANGES_NEED_ONE_BASE
NOTHING_RUNNING = RefusalCode.NOTHING_RUNNING
CHANGES_REFUSED = RefusalCode.CHANGES_REFUSED
CHANGES_NEED_GITHUB_APP = RefusalCode.CHANGES_NEED_GITHUB_APP
CANDIDATE_REJECTED = RefusalCode.CANDIDATE_REJECTED
FROZEN_BY_CALENDAR = RefusalCode.FROZEN_BY_CALENDAR
NOT_PROMOTED = RefusalCode.NOT_PROMOTED
STILL_SOAKING = RefusalCode.STILL_SOAKING
FORCE_NEEDS_REASON = RefusalCode.FORCE_NEEDS_REASON
SELF_APPROVAL = RefusalCode.SELF_APPROVAL
NOT_AN_APPROVER = RefusalCode.NOT_AN_APPROVER
NOT_WAITING_FOR_APPROVAL = RefusalCode.NOT_WAITING_FOR_APPROVAL
CANDIDATE_NOT_REJECTED = RefusalCode.CANDIDATE_NOT_REJECTED


# Kept when a write transaction rolls back: what a refusal must still record (the audit of a
# refused deploy), each run in a transaction of its own after the rollback (bot/storage/db.py).
AfterRollback = Callable[[Any], Awaitable[None]]


class DomainError(Exception):
    def __init__(self, refusal: Refusal, code: RefusalCode, message: str | None = None) -> None:
        super().__init__(message or code.value)
        self.refusal = refusal
        self.code = code
        self.message: str = message or code.value
        self.after_rollback: list[AfterRollback] = []


def not_found(code: RefusalCode, message: str | None = None) -> DomainError:
    return DomainError(Refusal.NOT_FOUND, code, message)


def invalid(code: RefusalCode, message: str | None = None) -> DomainError:
    return DomainError(Refusal.INVALID, code, message)


def conflict(code: RefusalCode, message: str | None = None) -> DomainError:
    return DomainError(Refusal.CONFLICT, code, message)
