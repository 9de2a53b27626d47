"""The overview's cached live region: never shared between views that differ, gone when the
mark moves or the entry is too old."""

from __future__ import annotations

from api.dashboard.overview_cache import LIFETIME_SECONDS, OverviewCache
from bot.domain.access import Act, github_identity, token_identity


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_region_is_kept_for_its_mark_and_view() -> None:
    cache = OverviewCache()
    every = token_identity("ci", 1, frozenset())
    cache.put("m1", every, "every project")
    assert cache.get("m1", every) == "every project"
    # Another token with the same view shares it; the actor is not part of the region.
    assert cache.get("m1", token_identity("other", 2, frozenset())) == "every project"


def test_views_that_differ_never_share_a_region() -> None:
    cache = OverviewCache()
    every = token_identity("ci", 1, frozenset())
    cache.put("m1", every, "every project")
    assert cache.get("m1", token_identity("ci", 3, frozenset({"p00"}))) is None
    assert cache.get("m1", token_identity("ci", 1, frozenset(), everything=False)) is None
    viewer = github_identity("ann", 7, {"p00": frozenset({Act.VIEW})})
    deployer = github_identity("bob", 8, {"p00": frozenset({Act.VIEW, Act.DEPLOY})})
    cache.put("m1", viewer, "p00 for a viewer")
    assert cache.get("m1", deployer) is None
    assert cache.get("m1", github_identity("cy", 9, {"p01": frozenset({Act.VIEW})})) is None
    assert cache.get("m1", every) == "every project"


def test_a_new_mark_drops_every_region() -> None:
    cache = OverviewCache()
    every = token_identity("ci", 1, frozenset())
    cache.put("m1", every, "old")
    assert cache.get("m2", every) is None
    cache.put("m2", every, "new")
    assert cache.get("m1", every) is None
    assert cache.get("m2", every) == "new"


def test_a_region_expires_after_its_lifetime() -> None:
    ticks = Ticks()
    cache = OverviewCache(ticks)
    every = token_identity("ci", 1, frozenset())
    cache.put("m1", every, "region")
    ticks.now = LIFETIME_SECONDS
    assert cache.get("m1", every) == "region"
    ticks.now = LIFETIME_SECONDS + 0.1
    assert cache.get("m1", every) is None
