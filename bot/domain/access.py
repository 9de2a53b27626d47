"""Who is signed in to the dashboard and what they may do, project by project.

An `Identity` is the same whatever signed the person in: an API token (its project scope, and
within it every action), or a GitHub user (read to view; write to deploy, roll back, freeze,
cancel; maintain or admin to force: bot/github/commands/permissions.dashboard_grants), whose
permissions fill `grants` and whose scope is the projects they may view.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Act(StrEnum):
    VIEW = "view"
    DEPLOY = "deploy"
    ROLL_BACK = "roll_back"
    FREEZE = "freeze"
    CANCEL = "cancel"
    FORCE = "force"  # roll back a frozen environment


EVERY_ACT = frozenset(Act)


@dataclass(frozen=True)
class Identity:
    """The actor recorded on what they do, and what they may do per project.

    `scope` None means every project; `grants` names what is allowed in a project of the
    scope, and `default_grant` applies to the projects it does not name.
    """

    actor: str
    # Whose idempotency keys a dashboard action's key is stored under: the API token's id, or
    # minus the GitHub user's id (token ids are positive), so keys stay per person.
    key_owner: int
    scope: frozenset[str] | None
    default_grant: frozenset[Act] = EVERY_ACT
    grants: Mapping[str, frozenset[Act]] = field(default_factory=dict)
    # Signed in with GitHub (grants from repository permissions), not with an API token.
    via_github: bool = False

    def may_view(self, project: str) -> bool:
        return self.may(project, Act.VIEW)

    def may(self, project: str, act: Act) -> bool:
        if self.scope is not None and project not in self.scope:
            return False
        return act in self.grants.get(project, self.default_grant)


def token_identity(
    actor: str, token_id: int, projects: frozenset[str], *, everything: bool = True
) -> Identity:
    """An API token's identity: its projects (none listed: every project), every act in them."""
    return Identity(
        actor=actor,
        key_owner=token_id,
        scope=projects or None,
        default_grant=EVERY_ACT if everything else frozenset({Act.VIEW}),
    )


def github_identity(login: str, user_id: int, grants: Mapping[str, frozenset[Act]]) -> Identity:
    """A GitHub user's identity: the projects they may view, each with its own grants; the
    actor recorded is their login."""
    visible = {project: acts for project, acts in grants.items() if Act.VIEW in acts}
    return Identity(
        actor=login,
        key_owner=github_key_owner(user_id),
        scope=frozenset(visible),
        default_grant=frozenset(),
        grants=visible,
        via_github=True,
    )


def github_key_owner(user_id: int) -> int:
    return -user_id
