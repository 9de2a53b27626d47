"""Who an approver is: one GitHub user is one person through every door (pure functions)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.core import errors
from bot.domain.approvals import ApprovalRule, Approver, approval_refusal, counted_approvers

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Given:
    approver: str
    expires_at: datetime


def test_the_requester_cannot_approve_through_another_door_either() -> None:
    rule = ApprovalRule(required=2)
    for requester in ("github:Octocat", "octocat"):
        for actor in ("github:octocat", "OctoCat"):
            refused = approval_refusal(rule, Approver(actor, via_github=True), requester)
            assert refused is not None
            assert refused.code is errors.SELF_APPROVAL
    assert approval_refusal(rule, Approver("github:alice"), "github:octocat") is None


def test_one_person_approving_through_two_doors_counts_once_and_expired_ones_not_at_all() -> None:
    later = NOW + timedelta(hours=1)
    given = [
        Given("github:alice", later),
        Given("Alice", later),
        Given("github:bob", NOW),  # expired at NOW
        Given("ci-token", later),
    ]
    assert counted_approvers(given, NOW) == {"alice", "ci-token"}
