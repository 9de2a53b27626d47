"""Who may do what on the dashboard (bot/domain/access.py): a token's scope and grants."""

from __future__ import annotations

from bot.domain.access import Act, Identity, token_identity


def test_a_token_for_every_project_may_do_everything_everywhere() -> None:
    identity = token_identity("ci@example.com", 1, frozenset())
    assert identity.scope is None
    assert all(identity.may("Anything", act) for act in Act)


def test_a_scoped_token_may_do_everything_in_its_projects_and_nothing_elsewhere() -> None:
    identity = token_identity("fe", 2, frozenset({"Frontend"}))
    assert all(identity.may("Frontend", act) for act in Act)
    assert not any(identity.may("Backend", act) for act in Act)
    assert not identity.may_view("Backend")


def test_grants_per_project_narrow_what_the_scope_allows() -> None:
    # The shape a GitHub sign-in fills: read on one repository, write on another.
    identity = Identity(
        actor="octocat",
        key_owner=3,
        scope=frozenset({"Backend", "Frontend"}),
        default_grant=frozenset(),
        grants={
            "Backend": frozenset({Act.VIEW}),
            "Frontend": frozenset({Act.VIEW, Act.DEPLOY, Act.ROLL_BACK}),
        },
    )
    assert identity.may_view("Backend")
    assert not identity.may("Backend", Act.DEPLOY)
    assert identity.may("Frontend", Act.DEPLOY)
    assert not identity.may("Frontend", Act.FORCE)
    assert not identity.may_view("Other")
