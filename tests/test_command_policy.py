"""Who may run a PR command, and how each refusal of the rules is answered: pure functions,
no database, no GitHub."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.core import errors
from bot.core.errors import DomainError, Refusal, RefusalCode
from bot.domain.freeze import Freeze
from bot.github.commands.parse import CommandVerb
from bot.github.commands.permissions import NO_ACCESS, Access, Verdict, may_run_command
from bot.github.commands.replies import (
    AS_STATED,
    REFUSAL_TEXTS,
    RefusalFacts,
    not_permitted,
    refusal_text,
)
from bot.github.commands.request import CommandRequest

REPO = "acme/backend"


def request(verb: CommandVerb = CommandVerb.DEPLOY, **changes: Any) -> CommandRequest:
    asked = CommandRequest(
        verb=verb.value,
        environment="production",
        project="backend",
        release_candidate_version="1.2.0-rc.1" if verb == CommandVerb.DEPLOY else None,
        force=False,
        reason=None,
        line=f"/{verb.value} production",
        comment_id=7,
        issue_number=42,
        commenter="octocat",
        repo_url="https://github.com/acme/backend",
    )
    return replace(asked, **changes)


# --- the permission policy ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("permission", "role_name", "plain", "forced"),
    [
        ("none", "none", Verdict.NEEDS_WRITE, Verdict.NEEDS_WRITE),
        ("read", "read", Verdict.NEEDS_WRITE, Verdict.NEEDS_WRITE),
        ("read", "triage", Verdict.NEEDS_WRITE, Verdict.NEEDS_WRITE),
        ("write", "write", Verdict.ALLOWED, Verdict.NEEDS_FORCE_ROLE),
        ("write", "maintain", Verdict.ALLOWED, Verdict.ALLOWED),
        # A custom role based on maintain is named for itself: it cannot force.
        ("write", "release-manager", Verdict.ALLOWED, Verdict.NEEDS_FORCE_ROLE),
        ("admin", "admin", Verdict.ALLOWED, Verdict.ALLOWED),
        # A custom role based on admin still reports the admin permission.
        ("admin", "owner-ish", Verdict.ALLOWED, Verdict.ALLOWED),
    ],
)
def test_write_runs_commands_and_only_maintain_or_admin_may_force(
    permission: str, role_name: str, plain: Verdict, forced: Verdict
) -> None:
    access = Access(permission, role_name)
    assert may_run_command(access, force=False) == plain
    assert may_run_command(access, force=True) == forced


def test_someone_github_does_not_know_here_may_run_nothing() -> None:
    assert may_run_command(NO_ACCESS, force=False) == Verdict.NEEDS_WRITE


@pytest.mark.parametrize(
    ("answer", "access"),
    [
        ({"permission": "write", "role_name": "maintain"}, Access("write", "maintain")),
        ({"permission": "write"}, Access("write", "write")),
        ({"permission": None, "role_name": None}, Access("none", "none")),
        ({}, Access("none", "none")),
    ],
)
def test_access_is_read_from_githubs_answer_a_missing_role_being_the_permission(
    answer: dict[str, object], access: Access
) -> None:
    assert Access.from_github(answer) == access


def test_a_refused_commenter_is_told_what_they_lack_without_being_able_to_mention_anyone() -> None:
    lacks_write = not_permitted(Verdict.NEEDS_WRITE, request(), REPO, Access("read", "read"))
    assert lacks_write.endswith(
        "🚫 @octocat needs **write** access to acme/backend to run this command "
        "(GitHub reports **read**)."
    )
    lacks_role = not_permitted(
        Verdict.NEEDS_FORCE_ROLE,
        request(CommandVerb.ROLLBACK, force=True),
        REPO,
        Access("write", "@team"),
    )
    assert lacks_role.endswith(
        "🚫 `--force` needs the **maintain** or **admin** role on acme/backend; "
        "@octocat has **@\u200bteam**."
    )


# --- refusal codes -----------------------------------------------------------------------


def test_every_refusal_code_has_its_own_reply_or_is_deliberately_answered_as_stated() -> None:
    assert set(REFUSAL_TEXTS) | AS_STATED == set(RefusalCode)
    assert not set(REFUSAL_TEXTS) & AS_STATED


@pytest.mark.parametrize("code", sorted(AS_STATED))
def test_a_refusal_without_words_of_its_own_is_answered_with_the_rules_message(
    code: RefusalCode,
) -> None:
    assert refusal_text(code, request(), RefusalFacts(REPO)) == f"{code.value}."


@pytest.mark.parametrize("code", sorted(REFUSAL_TEXTS))
def test_a_refusal_with_words_of_its_own_names_the_environment_or_what_was_asked(
    code: RefusalCode,
) -> None:
    text = refusal_text(code, request(), RefusalFacts(REPO))
    assert text != f"{code.value}."
    assert "production" in text or "backend" in text or "1.2.0-rc.1" in text


def test_an_unknown_environment_is_answered_with_the_environments_there_are() -> None:
    asked = request(environment="prod")
    code = RefusalCode.ENVIRONMENT_NOT_FOUND
    assert refusal_text(code, asked, RefusalFacts(REPO, environment_names=["staging", "live"])) == (
        "unknown environment `prod` in backend; its environments: `staging`, `live`."
    )
    assert refusal_text(code, asked, RefusalFacts(REPO)) == (
        "unknown environment `prod` in backend; its environments: none."
    )


def test_a_frozen_environment_is_answered_with_its_freeze_and_what_to_do_per_verb() -> None:
    freeze = Freeze(
        reason="release @week",
        by="github:hubot",
        since=datetime(2024, 5, 1, 9, 30, tzinfo=UTC),
        until=datetime(2024, 5, 3, 18, 0, tzinfo=UTC),
    )
    facts = RefusalFacts(REPO, freeze=freeze)
    frozen = RefusalCode.ENVIRONMENT_FROZEN
    assert refusal_text(frozen, request(), facts) == (
        "**production** (backend) is frozen by github:hubot since 2024-05-01 09:30 UTC "
        "until 2024-05-03 18:00 UTC: release @\u200bweek. "
        "Deploys resume after `/unfreeze production`; `--force <reason>` deploys anyway "
        "(maintain or admin role)."
    )
    assert refusal_text(frozen, request(CommandVerb.ROLLBACK), RefusalFacts(REPO)) == (
        "**production** (backend) is frozen. Add `--force` to roll back anyway (maintain or "
        "admin role), or `/unfreeze production` first."
    )


def test_nothing_to_roll_back_to_quotes_the_rules_message() -> None:
    text = refusal_text(
        RefusalCode.NOTHING_TO_ROLL_BACK_TO, request(CommandVerb.ROLLBACK), RefusalFacts(REPO)
    )
    assert text == (
        "nothing to roll back to in **production** (backend): "
        "No previous deployment to roll back from."
    )


@pytest.mark.parametrize("code", list(RefusalCode))
def test_a_refusal_carries_its_code_and_the_code_is_the_message_users_see(
    code: RefusalCode,
) -> None:
    refused = errors.conflict(code)
    assert (refused.refusal, refused.code, refused.message, str(refused)) == (
        Refusal.CONFLICT,
        code,
        code.value,
        code.value,
    )
    assert isinstance(refused, DomainError)
    # The module-level names the rules raise are the codes themselves.
    assert getattr(errors, code.name) is code


# --- the release policy's commands ---------------------------------------------------------

POLICY_VERBS = [
    CommandVerb.APPROVE,
    CommandVerb.REJECT,
    CommandVerb.MARK_BAD,
    CommandVerb.CLEAR_BAD,
]


def policy_request(verb: CommandVerb) -> CommandRequest:
    """A command of the release policy as the parser makes it: the candidate's verbs name a
    version and no environment."""
    names_candidate = verb in (CommandVerb.MARK_BAD, CommandVerb.CLEAR_BAD)
    return request(
        verb,
        environment="" if names_candidate else "production",
        release_candidate_version="1.2.0-rc.1" if names_candidate else None,
        reason="broken" if verb in (CommandVerb.REJECT, CommandVerb.MARK_BAD) else None,
        line=f"/{verb.value} {'1.2.0-rc.1' if names_candidate else 'production'}",
    )


@pytest.mark.parametrize("verb", POLICY_VERBS)
@pytest.mark.parametrize("code", sorted(AS_STATED))
def test_the_policy_commands_say_a_refusal_without_words_of_its_own_as_the_rule_does(
    verb: CommandVerb, code: RefusalCode
) -> None:
    message = f"{code.value} by github:alice: see @ops"
    facts = RefusalFacts(REPO, message=message)
    assert refusal_text(code, policy_request(verb), facts) == (
        f"{code.value} by github:alice: see @\u200bops."
    )


@pytest.mark.parametrize("verb", POLICY_VERBS)
def test_the_policy_commands_answer_an_unknown_project_or_candidate_with_what_was_asked(
    verb: CommandVerb,
) -> None:
    asked = policy_request(verb)
    unknown = refusal_text(RefusalCode.PROJECT_NOT_FOUND, asked, RefusalFacts(REPO))
    assert unknown == "unknown project `backend` in acme/backend."
    if asked.release_candidate_version is not None:
        missing = refusal_text(RefusalCode.RELEASE_NOT_FOUND, asked, RefusalFacts(REPO))
        assert missing == "release candidate `1.2.0-rc.1` not found in backend."


def test_approving_or_rejecting_where_nothing_waits_says_so() -> None:
    for verb in (CommandVerb.APPROVE, CommandVerb.REJECT):
        text = refusal_text(
            RefusalCode.NOT_WAITING_FOR_APPROVAL, policy_request(verb), RefusalFacts(REPO)
        )
        assert text == "no deployment of **production** (backend) is waiting for approval."


def test_a_forced_rollback_without_a_reason_is_told_where_the_reason_goes() -> None:
    asked = request(CommandVerb.ROLLBACK, force=True, line="/rollback production --force")
    text = refusal_text(RefusalCode.FORCE_NEEDS_REASON, asked, RefusalFacts(REPO))
    assert text == (
        "a forced /rollback needs a reason, which the audit keeps: write it after `--force`, "
        "as in `/rollback production --force <reason>`."
    )


def test_the_policy_refusals_are_said_in_the_rules_own_words() -> None:
    """What the release policy raises reaches the reply whole: the missing environment, the
    time left."""
    order = errors.invalid(
        errors.NOT_PROMOTED,
        "v1.4.0-rc2 must succeed in staging before it goes to production (it runs none); "
        "deploy it to staging first",
    )
    facts = RefusalFacts(REPO, message=order.message)
    assert refusal_text(order.code, request(), facts) == f"{order.message}."


@pytest.mark.parametrize("verb", POLICY_VERBS)
def test_the_policy_commands_need_write_like_every_command(verb: CommandVerb) -> None:
    asked = policy_request(verb)
    assert may_run_command(Access("read", "triage"), force=asked.force) == Verdict.NEEDS_WRITE
    assert may_run_command(Access("write", "write"), force=asked.force) == Verdict.ALLOWED


def test_a_forced_deploy_needs_maintain_or_admin_as_a_forced_rollback_does() -> None:
    asked = request(force=True, reason="hotfix for INC-42")
    assert may_run_command(Access("write", "write"), force=asked.force) == (
        Verdict.NEEDS_FORCE_ROLE
    )
    assert may_run_command(Access("write", "maintain"), force=asked.force) == Verdict.ALLOWED
