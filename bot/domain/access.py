"""Who is signed in to the dashboard and what they may do, project by project.

An `Identity` is the same whatever signed the person in: an API token (its project scope, and
within it every action), or a GitHub user (read to view; write to deploy, roll back, freeze,
cancel, approve and mark candidates bad; maintain or admin to force:
bot/github/commands/permissions.dashboard_grants), whose permissions fill `grants` and whose
scope is the projects they may view.

Approving is deploying's grant, narrowed by the environment's `approvals.from`
(bot/domain/approvals.py): `offers_approval` and `rejection_refusal` say what the dashboard
offers and allows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from bot.core import errors
from bot.domain.approvals import ApprovalRule, Approver, approval_refusal, may_approve


class Act(StrEnum):
    VIEW = "view"
    DEPLOY = "deploy"
    ROLL_BACK = "roll_back"
    FREEZE = "freeze"
    CANCEL = "cancel"
    FORCE = "force"  # past a freeze or the promotion order, with a reason
    DECIDE = "decide"  # mark a candidate bad, clear the mark: write access, like deploy


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


def approver_from_grants(identity: Identity, project: str) -> Approver:
    """Who `identity` is as an approver in `project`, from what the identity knows: an API
    token is its actor and nothing more (it may approve only where `from` names no one); a
    GitHub user has the role their grants imply (force: maintain; deploy: write) and no teams.
    The dashboard asks GitHub for a GitHub user instead (`api/dashboard/approvers.py`): an
    admin reads as maintain here, and team membership is not known."""
    if not identity.via_github:
        return Approver(actor=identity.actor)
    role = None
    if identity.may(project, Act.FORCE):
        role = "maintain"
    elif identity.may(project, Act.DEPLOY):
        role = "write"
    return Approver(actor=identity.actor, role=role, via_github=True)


def offers_approval(
    identity: Identity,
    project: str,
    approver: Approver,
    rule: ApprovalRule,
    requester: str | None,
    counted: frozenset[str],
) -> bool:
    """Whether the dashboard shows `identity` an Approve button for a deployment `requester`
    asked for: they may deploy in the project, the rule counts them, it is not their own
    deploy, and their approval does not count already."""
    return (
        identity.may(project, Act.DEPLOY)
        and approver.actor not in counted
        and approval_refusal(rule, approver, requester) is None
    )


def rejection_refusal(
    identity: Identity, project: str, approver: Approver, rule: ApprovalRule
) -> errors.DomainError | None:
    """Why `identity` may not reject a deployment waiting for approval, or None: those the
    rule counts as approvers may (the one who asked too: it is their deploy to withdraw)."""
    if not identity.may(project, Act.DEPLOY):
        return errors.invalid(errors.NOT_AN_APPROVER)
    if may_approve(rule, approver):
        return None
    return approval_refusal(rule, approver, requester=None)
