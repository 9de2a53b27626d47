"""Who may run a pull-request command: the policy, over GitHub's collaborator permission.

GitHub reports `permission` as admin/write/read/none (maintain shows as write, triage as read)
and `role_name` as the real role (FACTS §8). Every command needs write; `--force` needs the
maintain or admin role. The dashboard's grants for a GitHub user follow the same rule
(`dashboard_grants`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from bot.domain.access import Act

WRITE_PERMISSIONS = frozenset({"admin", "write"})
FORCE_ROLES = frozenset({"maintain", "admin"})
NONE = "none"


@dataclass(frozen=True)
class Access:
    """A commenter's access to the repository, as GitHub reports it."""

    permission: str
    role_name: str

    @classmethod
    def from_github(cls, found: Mapping[str, Any]) -> Access:
        """From GitHub's collaborator-permission answer (a role missing: the permission)."""
        permission = str(found.get("permission") or NONE)
        return cls(permission, str(found.get("role_name") or permission))


NO_ACCESS = Access(NONE, NONE)


class Verdict(Enum):
    ALLOWED = "allowed"
    NEEDS_WRITE = "needs_write"
    NEEDS_FORCE_ROLE = "needs_force_role"


def may_run_command(access: Access, *, force: bool) -> Verdict:
    """Whether `access` may run a command (with `--force` or not), else what it lacks."""
    if access.permission not in WRITE_PERMISSIONS:
        return Verdict.NEEDS_WRITE
    # A custom role based on maintain shows its own name: only maintain and admin count.
    if force and access.permission != "admin" and access.role_name not in FORCE_ROLES:
        return Verdict.NEEDS_FORCE_ROLE
    return Verdict.ALLOWED


VIEW_PERMISSIONS = frozenset({"read", "write", "admin"})
ACTS_NEEDING_WRITE = frozenset({Act.DEPLOY, Act.ROLL_BACK, Act.FREEZE, Act.CANCEL, Act.DECIDE})


def dashboard_grants(access: Access) -> frozenset[Act]:
    """What a person may do in a project on the dashboard, by their access to its repository,
    under the PR commands' rule: read (or triage) to view; what `may_run_command` allows
    without `--force` to deploy, roll back, freeze, cancel and mark candidates bad (approving
    is deploying's grant); what it allows with `--force` to force (maintain or admin)."""
    if access.permission not in VIEW_PERMISSIONS:
        return frozenset()
    grants = {Act.VIEW}
    if may_run_command(access, force=False) is Verdict.ALLOWED:
        grants |= ACTS_NEEDING_WRITE
    if may_run_command(access, force=True) is Verdict.ALLOWED:
        grants.add(Act.FORCE)
    return frozenset(grants)
