"""Who is signed in to the dashboard and what they may do, project by project.

An `Identity` is the same whatever signed the person in: an API token (its project scope, and
within it every action) now; a GitHub user later (read to view; write to deploy, roll back,
freeze, cancel; maintain or admin to force), whose permissions fill the same `grants`.
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
    # Whose idempotency keys a dashboard action's key is stored under (the API token's id).
    key_owner: int
    scope: frozenset[str] | None
    default_grant: frozenset[Act] = EVERY_ACT
    grants: Mapping[str, frozenset[Act]] = field(default_factory=dict)

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
