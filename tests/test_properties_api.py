"""Release candidates as the API lists them: whatever versions are created, in whatever order,
a release lists its candidates by number, highest first (rc10 after rc9, not before rc2), and
every version reads back as it was written."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.domain.versions import MAX_RC_NUMBER
from tests.conftest import SHA_A, Api
from tests.figures import record_figure

EXAMPLES = 25
_releases = itertools.count()

# Candidate numbers; each has one spelling (rc01 is refused: it would be a second rc1).
candidates = st.lists(
    st.integers(0, MAX_RC_NUMBER) | st.integers(0, 20), min_size=1, max_size=6, unique=True
)


@pytest.fixture
def tried() -> Iterator[list[int]]:
    """Counts the examples of the test that uses it (a figure)."""
    examples: list[int] = []
    yield examples
    record_figure("properties", "listing examples tried", len(examples))


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(created=candidates)
async def test_candidates_are_listed_by_number_highest_first(
    api: Api, tried: list[int], created: list[int]
) -> None:
    tried.append(1)
    release = f"v{next(_releases)}.0"
    versions = [f"{release}-rc{number}" for number in created]
    for version in versions:
        reply = await api.create_rc(version, SHA_A, project="Frontend")
        assert reply.status == 201, reply.body
    zeroed = await api.create_rc(f"{release}-rc0{created[0]}", SHA_A, project="Frontend")
    assert zeroed.status == 400, zeroed.body

    listed = await api.get("/api/releases/Frontend/releases", params={"per_page": "1"})

    [newest] = listed.body
    assert newest["version"] == release
    # Highest number first.
    order = sorted(range(len(created)), key=lambda i: created[i], reverse=True)
    assert [c["version"] for c in newest["release_candidates"]] == [versions[i] for i in order]
    assert all(c["release_version"] == release for c in newest["release_candidates"])
