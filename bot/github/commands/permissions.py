"""Who may run a pull-request command: the policy, over GitHub's collaborator permission.

GitHub reports `permission` as admin/write/read/none (maintain shows as write, triage as read)
and `role_name` as the real role (FACTS §8). Every command needs write; `--force` needs the
maintain or admin role.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

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
