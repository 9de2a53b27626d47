"""What a webhook handler gets besides the event and the session: one `WebhookContext` per
delivery, which also collects what the handlers did (stored on the delivery row)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from bot.app.operations import Mirror
from bot.config.projects_file import ProjectsConfig
from bot.core.log_context import add_log_context
from bot.storage.batch_reads import BatchReads
from bot.storage.projects import ProjectRepositories

if TYPE_CHECKING:
    from bot.storage.models import Deployment

IGNORED = "ignored"
DONE = "done"
# webhook_deliveries.outcome is VARCHAR(200).
MAX_OUTCOME_LENGTH = 200


def forget_nobody(login: str) -> None:
    """No cache of people's access in this process (no dashboard sign-in with GitHub)."""


@dataclass(frozen=True)
class WebhookContext:
    """What a handler needs besides the event and the session; one per delivery."""

    # The delivery's write transaction: whatever the handler changes commits with the delivery.
    session: AsyncSession
    now: datetime
    projects: ProjectsConfig
    delivery_id: str
    # Which repositories have projects and which workflows Tarmac runs there, read in the
    # delivery's transaction: an event of any other repository is ignored without a query.
    repositories: ProjectRepositories
    # Whether changes are mirrored to GitHub (the Service's `mirror`).
    mirror: Mirror
    # False when the raw body shows there is no NUL in the payload (see `dispatch`).
    payload_may_hold_nul: bool = True
    # Drops what this process has cached of a person's repository permissions (the
    # dashboard's, bot/github/access.RepositoryAccess.forget). Harmless if the delivery's
    # transaction then rolls back: the next page asks GitHub again.
    forget_access: Callable[[str], object] = forget_nobody
    # What the batch's deliveries read once, shared by the batch's contexts (one transaction).
    reads: BatchReads = field(default_factory=BatchReads)
    outcomes: list[str] = field(default_factory=list)

    def record(self, outcome: str) -> None:
        """What the handler did, in a few words (stored on the delivery row)."""
        self.outcomes.append(outcome)

    def about(
        self,
        *,
        project: str | None = None,
        environment: str | None = None,
        deployment_id: int | None = None,
        release_candidate: str | None = None,
    ) -> None:
        """What the delivery turned out to concern: every log line from here on names it."""
        add_log_context(
            project=project,
            environment=environment,
            deployment_id=deployment_id,
            release_candidate=release_candidate,
        )

    def about_deployment(self, deployment: Deployment) -> None:
        """The delivery concerns this deployment (its project, environment and candidate)."""
        environment = deployment.environment
        self.about(
            project=environment.project.name,
            environment=environment.name,
            deployment_id=deployment.id,
            release_candidate=deployment.release_candidate.version,
        )

    def ignore(self, reason: str) -> None:
        """The event is not for Tarmac, and why: `ignored: <reason>`."""
        self.outcomes.append(ignored_because(reason))

    @property
    def ignored(self) -> bool:
        """No handler did anything: every outcome (if any) is an `ignore`."""
        return all(o == IGNORED or o.startswith(IGNORED + ":") for o in self.outcomes)

    def outcome(self) -> str:
        return outcome_of(self.outcomes)


def ignored_because(reason: str) -> str:
    return f"{IGNORED}: {reason}"


def outcome_of(outcomes: list[str]) -> str:
    """What is stored of a delivery's outcomes (webhook_deliveries.outcome)."""
    text = "; ".join(outcomes) or IGNORED
    if len(text) > MAX_OUTCOME_LENGTH:
        text = text[: MAX_OUTCOME_LENGTH - 1] + "…"
    return text
