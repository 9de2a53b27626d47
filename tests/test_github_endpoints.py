"""bot/github/endpoints.py against the fake GitHub (which checks each request against GitHub's
REST description): the pull-request conversation endpoints, team memberships (who may approve),
and the "owner/name" split."""

from __future__ import annotations

from typing import Any

import pytest

from bot.domain.approvals import Approver
from bot.github import endpoints
from bot.github.access import CACHE_SECONDS, TeamMemberships, approver_for
from bot.github.client import GitHubClient, GitHubRefused
from bot.github.commands.permissions import NO_ACCESS, Access
from bot.storage.outbox import Action, known_action
from tests.fake_github import FakeGitHub
from tests.test_github_client import INSTALLATION, REPO, client, fake, key_pair

__all__ = ["client", "fake", "key_pair"]  # the fixtures, shared with the client's tests


def test_a_repository_name_splits_into_the_templates_owner_and_repo() -> None:
    assert endpoints.owner_and_name("acme/back-end") == {"owner": "acme", "repo": "back-end"}


def test_a_stored_action_name_is_known_or_not() -> None:
    assert known_action("post_comment") is Action.POST_COMMENT
    assert known_action("written_by_a_newer_version") is None


async def test_a_reply_and_a_reaction_reach_the_comment(
    client: tuple[GitHubClient, Any], fake: FakeGitHub
) -> None:
    github, _ = client

    await endpoints.create_issue_comment(github, INSTALLATION, REPO, issue_number=7, body="Hi")
    await endpoints.create_comment_reaction(
        github, INSTALLATION, REPO, comment_id=99, content="eyes"
    )

    assert [(c["issue_number"], c["body"]) for c in fake.comments] == [(7, "Hi")]
    assert fake.reactions == [{"comment_id": 99, "repo": REPO, "content": "eyes"}]


async def test_a_collaborators_permission_is_read(
    client: tuple[GitHubClient, Any], fake: FakeGitHub
) -> None:
    github, _ = client
    fake.grant(REPO, "octocat", "write", "maintain")

    found = await endpoints.get_collaborator_permission(
        github, INSTALLATION, REPO, username="octocat"
    )

    assert (found["permission"], found["role_name"]) == ("write", "maintain")


async def test_an_answer_to_the_protection_rule_reaches_the_held_job_once(
    client: tuple[GitHubClient, Any], fake: FakeGitHub
) -> None:
    github, _ = client
    run = fake.run_by_hand(REPO, "deploy.yml", "refs/tags/v1-rc1", "a" * 40)
    fake.hold_at_protection_rule(run, "production")
    body = {"environment_name": "production", "state": "approved", "comment": "Approved"}

    await endpoints.review_protection_rule(github, INSTALLATION, REPO, run_id=run.id, body=body)
    with pytest.raises(GitHubRefused) as again:  # no job waits any more
        await endpoints.review_protection_rule(github, INSTALLATION, REPO, run_id=run.id, body=body)

    assert again.value.status == 422
    assert fake.protection_reviews == [{"repo": REPO, "run_id": run.id, **body}]


def test_every_outbox_action_has_its_handler() -> None:
    """An action some use case enqueues but no effect module handles would fail on every
    item (the worker's unknown-action path): each `Action` is registered once loaded."""
    from bot.github.outbound.handlers import load_all
    from bot.storage.outbox import Action

    # NOTIFY calls no GitHub: bot/service.py hands the worker bot/notify/'s handler for it
    # (tests/test_notifications.py delivers through it).
    assert set(load_all()) == set(Action) - {Action.NOTIFY}


def test_an_id_from_a_payload_is_a_positive_integer_that_fits_a_bigint() -> None:
    from bot.github.payloads import MAX_ID, github_id

    assert [github_id(v) for v in (1, MAX_ID)] == [1, MAX_ID]
    assert [github_id(v) for v in (0, -3, MAX_ID + 1, True, 1.0, "7", None)] == [None] * 7


class Timer:
    """The cache's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_team_membership_counts_when_active_and_is_kept_a_minute(
    client: tuple[GitHubClient, Any], fake: FakeGitHub
) -> None:
    github, _ = client
    fake.add_team_member("acme/release-managers", "dave")
    fake.add_team_member("acme/release-managers", "carol", state="pending")
    timer = Timer()
    memberships = TeamMemberships(github, timer=timer)

    found = [
        await memberships.is_member(INSTALLATION, login, "acme/release-managers")
        for login in ("dave", "carol", "erin", "Dave")
    ]

    assert found == [True, False, False, True]  # active; pending; 404; logins ignore case
    asked = fake.calls_to("GET", r"^/orgs/acme/teams/release-managers/memberships/")
    assert [c.path.rsplit("/", 1)[1] for c in asked] == ["dave", "carol", "erin"]
    fake.team_memberships.clear()
    timer.now += CACHE_SECONDS + 1
    assert await memberships.is_member(INSTALLATION, "dave", "acme/release-managers") is False


async def test_an_approver_is_their_role_and_the_named_teams_they_are_in(
    client: tuple[GitHubClient, Any], fake: FakeGitHub
) -> None:
    github, _ = client
    fake.add_team_member("acme/release-managers", "dave")
    memberships = TeamMemberships(github)
    teams = ["acme/release-managers", "acme/sre"]

    dave = await approver_for(
        "dave",
        REPO,
        access=Access("write", "maintain"),
        teams=teams,
        memberships=memberships,
        installation_id=INSTALLATION,
        actor="github:dave",
    )
    nobody = await approver_for(
        "erin",
        REPO,
        access=NO_ACCESS,
        teams=[],
        memberships=memberships,
        installation_id=INSTALLATION,
    )

    assert dave == Approver(
        actor="github:dave",
        role="maintain",
        teams=frozenset({"acme/release-managers"}),
        via_github=True,
    )
    assert nobody == Approver(actor="erin", role=None, teams=frozenset(), via_github=True)
    # Only the teams named are asked about; none when none are.
    assert len(fake.calls_to("GET", r"^/orgs/")) == 2


async def test_another_organisations_team_is_not_readable_and_counts_as_not_a_member(
    client: tuple[GitHubClient, Any], fake: FakeGitHub
) -> None:
    github, _ = client
    fake.add_team_member("elsewhere/release-managers", "dave")

    member = await TeamMemberships(github).is_member(
        INSTALLATION, "dave", "elsewhere/release-managers"
    )

    assert member is False
