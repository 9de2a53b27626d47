"""An environment's release policy in words (bot/domain/policy_words.py), and who may approve
on the dashboard (bot/domain/access.py): plain values, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.access import (
    Act,
    approver_from_grants,
    github_identity,
    offers_approval,
    rejection_refusal,
    token_identity,
)
from bot.domain.approvals import ApprovalRule, Approver
from bot.domain.policy import EnvironmentPolicy
from bot.domain.policy_words import (
    approvals_words,
    policy_in_words,
    requires_words,
    rule_words,
    span_words,
    window_words,
)

WEEKEND = {
    "name": "weekend",
    "reason": "No deploys over the weekend",
    "timezone": "America/New_York",
    "rrule": "FREQ=WEEKLY;BYDAY=FR;BYHOUR=17;BYMINUTE=0",
    "duration": "64h",
}
HOLIDAYS = {
    "name": "holidays",
    "reason": "End-of-year freeze",
    "timezone": "Europe/Berlin",
    "from": "2026-12-23 18:00",
    "until": "2027-01-04 08:00",
}
POLICY = EnvironmentPolicy.from_stored(
    {
        "requires": ["staging"],
        "soak_minutes": 60,
        "freezes": [WEEKEND, HOLIDAYS],
        "approvals": {"required": 2, "from": ["@acme/release-managers", "maintain"]},
    }
)


@pytest.mark.parametrize(
    ("rule", "said"),
    [
        ("FREQ=WEEKLY;BYDAY=FR;BYHOUR=17;BYMINUTE=0", "every Friday at 17:00"),
        ("FREQ=WEEKLY;BYDAY=SA,SU", "every Saturday and Sunday at 00:00"),
        ("FREQ=DAILY;BYDAY=MO,TU,WE;BYHOUR=9", "every Monday, Tuesday and Wednesday at 09:00"),
        ("FREQ=DAILY;BYHOUR=18;BYMINUTE=30", "every day at 18:30"),
        # What the words would get wrong is shown as written.
        ("FREQ=WEEKLY", "by the rule FREQ=WEEKLY"),
        ("FREQ=WEEKLY;BYDAY=FR;INTERVAL=2", "by the rule FREQ=WEEKLY;BYDAY=FR;INTERVAL=2"),
        ("FREQ=MONTHLY;BYMONTHDAY=1", "by the rule FREQ=MONTHLY;BYMONTHDAY=1"),
        ("FREQ=DAILY;BYHOUR=9,17", "by the rule FREQ=DAILY;BYHOUR=9,17"),
        ("FREQ=WEEKLY;BYDAY=1FR", "by the rule FREQ=WEEKLY;BYDAY=1FR"),
    ],
)
def test_a_window_rule_is_said_in_words_or_as_written(rule: str, said: str) -> None:
    assert rule_words(rule) == said


@pytest.mark.parametrize(
    ("span", "said"),
    [
        (timedelta(minutes=1), "1 minute"),
        (timedelta(minutes=90), "90 minutes"),
        (timedelta(hours=64), "64 hours"),
        (timedelta(hours=2, minutes=30), "2 hours 30 minutes"),
        (timedelta(hours=25, minutes=1), "25 hours 1 minute"),
    ],
)
def test_a_span_is_said_in_minutes_or_hours(span: timedelta, said: str) -> None:
    assert span_words(span) == said


def test_the_policy_is_said_as_its_rules_decide() -> None:
    assert requires_words(POLICY) == "after staging, soaked there 60 minutes"
    assert approvals_words(POLICY.approvals) == (
        "2 from @acme/release-managers, maintain, never the one who asked; each counts 24 hours"
    )
    assert [window_words(w) for w in POLICY.windows] == [
        "weekend: every Friday at 17:00 for 64 hours (America/New_York): "
        "No deploys over the weekend",
        "holidays: from 2026-12-23 18:00 until 2027-01-04 08:00 (Europe/Berlin): "
        "End-of-year freeze",
    ]
    several = EnvironmentPolicy.from_stored({"requires": ["staging", "qa"]})
    assert requires_words(several) == "after staging and qa"
    anyone = EnvironmentPolicy.from_stored({"approvals": {"required": 1}})
    assert approvals_words(anyone.approvals) == (
        "1 from anyone who may deploy here, never the one who asked; each counts 24 hours"
    )
    nothing = policy_in_words(EnvironmentPolicy.from_stored({}), datetime.now(UTC))
    assert not nothing.anything
    assert nothing.frozen is None
    assert nothing.next_window is None


def test_the_weekend_freeze_is_said_until_monday_across_the_change_to_summer_time() -> None:
    friday_evening = datetime(2026, 3, 6, 23, 0, tzinfo=UTC)  # 18:00 EST
    words = policy_in_words(POLICY, friday_evening)
    assert words.frozen == (
        "frozen until Monday 2026-03-09 09:00 EDT (America/New_York) "
        "(window weekend: No deploys over the weekend)"
    )
    assert words.next_window == (
        "weekend, Friday 2026-03-13 17:00 EDT (America/New_York) until "
        "Monday 2026-03-16 09:00 EDT (America/New_York)"
    )
    monday = datetime(2026, 3, 9, 13, 1, tzinfo=UTC)  # 09:01 EDT
    assert policy_in_words(POLICY, monday).frozen is None


# --- who the dashboard offers approval to ------------------------------------------------

ANYONE = ApprovalRule(required=2)
MAINTAINERS = ApprovalRule(required=2, approvers=("maintain",))
TEAM = ApprovalRule(required=2, approvers=("@acme/release-managers",))


def test_anyone_who_may_deploy_may_approve_but_not_their_own_nor_twice() -> None:
    token = token_identity("ann@example.com", 1, frozenset())
    ann = approver_from_grants(token, "Backend")
    assert offers_approval(token, "Backend", ann, ANYONE, "ci@example.com", frozenset())
    assert not offers_approval(token, "Backend", ann, ANYONE, "ANN@example.com", frozenset())
    assert not offers_approval(
        token, "Backend", ann, ANYONE, "ci@example.com", frozenset({"ann@example.com"})
    )
    # The one who asked may still withdraw their deploy.
    assert rejection_refusal(token, "Backend", ann, ANYONE) is None


def test_who_the_rule_names_may_approve_as_their_grants_say() -> None:
    writer = github_identity("writer", 1, {"Backend": frozenset({Act.VIEW, Act.DEPLOY})})
    maintainer = github_identity(
        "maint", 2, {"Backend": frozenset({Act.VIEW, Act.DEPLOY, Act.FORCE})}
    )
    reader = github_identity("reader", 3, {"Backend": frozenset({Act.VIEW})})
    token = token_identity("ci@example.com", 4, frozenset())
    none: frozenset[str] = frozenset()
    for identity, allowed in ((writer, False), (maintainer, True), (reader, False)):
        approver = approver_from_grants(identity, "Backend")
        assert offers_approval(identity, "Backend", approver, MAINTAINERS, "x", none) is allowed
        refused = rejection_refusal(identity, "Backend", approver, MAINTAINERS)
        assert (refused is None) is allowed
    # An API token has no GitHub person behind it: not where `from` names someone.
    ci = approver_from_grants(token, "Backend")
    assert not offers_approval(token, "Backend", ci, MAINTAINERS, "x", none)
    refused = rejection_refusal(token, "Backend", ci, MAINTAINERS)
    assert refused is not None
    assert refused.message.startswith("You may not approve deployments to this environment")
    # Teams are GitHub's to say (bot/github/access.approver_for): not known from grants.
    assert not offers_approval(
        maintainer, "Backend", approver_from_grants(maintainer, "Backend"), TEAM, "x", none
    )
    member = Approver(
        "maint", role="maintain", teams=frozenset({"acme/release-managers"}), via_github=True
    )
    assert offers_approval(maintainer, "Backend", member, TEAM, "x", none)
