"""Refusals of the domain rules. Each carries the exact message users see and what kind of
refusal it is; the REST face maps the kind to a status code, a PR comment quotes the message."""

from __future__ import annotations

from enum import Enum


class Refusal(Enum):
    INVALID = "invalid"  # 400
    NOT_FOUND = "not_found"  # 404
    CONFLICT = "conflict"  # 409


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
    "trigger_build_workflow needs the GitHub App, which runs the build workflow and hears how "
    "it ends; without one, create the candidate without it (it is ready at once)"
)
FREEZE_UNTIL_IN_PAST = "Freeze 'until' must be in the future"
DEPLOYMENT_NOT_FOUND = "Deployment not found"
DEPLOYMENT_ALREADY_ENDED = (
    "Deployment has already ended; only a pending, in_progress, canceling or unknown "
    "deployment can be canceled"
)
NOTHING_TO_CANCEL = "No deployment of the environment is under way"


class DomainError(Exception):
    def __init__(self, refusal: Refusal, message: str) -> None:
        super().__init__(message)
        self.refusal = refusal
        self.message = message


def not_found(message: str) -> DomainError:
    return DomainError(Refusal.NOT_FOUND, message)


def invalid(message: str) -> DomainError:
    return DomainError(Refusal.INVALID, message)


def conflict(message: str) -> DomainError:
    return DomainError(Refusal.CONFLICT, message)
