"""Change reports: what a candidate ships since another, or since what runs in an environment,
read from the fake GitHub (which validates every call) and stored once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from api.keys import SERVICE
from bot.domain.changes import PathFilter
from bot.github.outbound.change_reports import OutOfTime, ReportFetch
from bot.github.outbound.worker import OutboxWorker
from bot.settings import Settings
from bot.storage.db import Database
from tests.conftest import MONOREPO_INSTALLATION, PROJECTS_YAML, Api
from tests.fake_github import FakeGitHub
from tests.fake_history import History

CHANGES = "/api/releases/{project}/releases/{version}/changes"
MONOREPO_PATHS = '    tag_prefix: frontend/\n    paths: ["frontend/**", "shared/*.css"]\n'


@pytest.fixture
def projects_file(tmp_path: Path) -> Path:
    path = tmp_path / "tarmac.yml"
    path.write_text(PROJECTS_YAML.replace("    tag_prefix: frontend/\n", MONOREPO_PATHS))
    return path


@pytest.fixture
def settings(database_url: str, projects_file: Path) -> Settings:
    # No waiting inside the request: the tests deliver the outbox themselves.
    return Settings(database_url=database_url, config=projects_file, change_report_wait_seconds=0)


def history_calls(fake: FakeGitHub) -> int:
    return len(
        [
            c
            for c in fake.calls
            if "/compare/" in c.path or "/commits/" in c.path or c.path.endswith("/pulls")
        ]
    )


async def changes(api: Api, version: str, project: str = "Backend", **query: str) -> Any:
    return await api.get(CHANGES.format(project=project, version=version), params=query)


async def fetched(api: Api, outbox: OutboxWorker, version: str, **query: Any) -> Any:
    """Ask, let the worker fetch, ask again: the report."""
    first = await changes(api, version, **query)
    assert first.status == 202, first.body
    assert first.headers["Retry-After"] == "2"
    await outbox.drain()
    answered = await changes(api, version, **query)
    assert answered.status == 200, answered.body
    return answered.body


async def candidate(api: Api, version: str, commit: str, project: str = "Backend") -> None:
    created = await api.create_rc(version, commit, project=project)
    assert created.status == 201, created.body


async def test_the_report_lists_the_pull_requests_that_touch_the_projects_paths(
    github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    history = fake_github.history("acme/monorepo")
    await candidate(github_api, "v1-rc1", history.tip or "", project="Frontend")
    squashed = history.merge_pull_request("Button colours", [["frontend/button.css"]])
    history.merge_pull_request("Backend only", [["backend/api.py"], ["backend/db.py"]])
    merged = history.merge_pull_request(
        "Shared styles", [["shared/site.css"], ["docs/readme.md"]], style="merge"
    )
    history.close_without_merging("Abandoned idea")
    await candidate(github_api, "v1-rc2", history.tip or "", project="Frontend")

    report = await fetched(github_api, outbox, "v1-rc2", project="Frontend", since="v1-rc1")

    assert [pr["number"] for pr in report["pull_requests"]] == [squashed, merged]
    assert report["pull_requests"][0]["url"].endswith(f"/pull/{squashed}")
    messages = [c["message"] for c in report["commits"]]
    assert messages == [
        f"Button colours (#{squashed})",
        "Shared styles (1)",
        f"Merge pull request #{merged} from octocat/branch-{merged}",
    ]
    assert report["ahead_by"] == 5
    assert report["diverged"] is False
    assert report["base"]["release_candidate_version"] == "v1-rc1"
    before = history_calls(fake_github)
    again = await changes(github_api, "v1-rc2", project="Frontend", since="v1-rc1")
    assert again.status == 200
    assert again.body == report
    assert history_calls(fake_github) == before  # stored: GitHub is not asked again


async def test_a_600_commit_range_is_complete(
    github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    history = fake_github.history("acme/backend")
    await candidate(github_api, "v1-rc1", history.tip or "")
    numbers = [history.merge_pull_request(f"Change {i}", [[f"src/{i}.py"]]) for i in range(560)]
    rebased = history.merge_pull_request("Rebased", [["a.py"], ["b.py"]], style="rebase")
    direct = [history.commit(f"Hotfix {i}") for i in range(38)]
    await candidate(github_api, "v1-rc2", history.tip or "")

    report = await fetched(github_api, outbox, "v1-rc2", since="v1-rc1")

    assert len(report["commits"]) == 600 == report["ahead_by"]
    assert report["commits"][-1]["sha"] == direct[-1]
    assert [pr["number"] for pr in report["pull_requests"]] == [*numbers, rebased]
    compares = fake_github.calls_to("GET", "/compare/")
    assert len(compares) == 6  # 100 commits a page
    # Only the commits no merged PR's merge commit places are asked one by one: the hotfixes
    # and the rebased PR's first commit.
    assert len(fake_github.calls_to("GET", r"/commits/[0-9a-f]{40}/pulls$")) == 38 + 1


async def test_changes_since_what_runs_in_an_environment(
    github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    history = fake_github.history("acme/backend")
    first = history.tip or ""
    await github_api.ship("production", "v1-rc1", first)
    number = history.merge_pull_request("Faster search", [["search.py"]])
    await candidate(github_api, "v1-rc2", history.tip or "")

    report = await fetched(github_api, outbox, "v1-rc2", environment="production")

    assert report["base"] == {"release_candidate_version": "v1-rc1", "commit": first}
    assert [pr["title"] for pr in report["pull_requests"]] == ["Faster search"]
    assert report["pull_requests"][0]["number"] == number


async def test_an_older_candidate_is_reported_diverged_not_guessed(
    github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    history = fake_github.history("acme/backend")
    await candidate(github_api, "v1-rc1", history.tip or "")
    history.merge_pull_request("Something", [["x.py"]])
    await candidate(github_api, "v1-rc2", history.tip or "")

    report = await fetched(github_api, outbox, "v1-rc1", since="v1-rc2")

    assert report["diverged"] is True
    assert report["commits"] == []
    assert report["pull_requests"] == []


async def test_the_same_commit_needs_no_github(github_api: Api, fake_github: FakeGitHub) -> None:
    tip = fake_github.history("acme/backend").tip or ""
    await candidate(github_api, "v1-rc1", tip)
    await candidate(github_api, "v1-rc2", tip)
    same = await changes(github_api, "v1-rc2", since="v1-rc1")
    assert same.status == 200
    assert same.body["ahead_by"] == 0
    assert same.body["commits"] == []
    assert history_calls(fake_github) == 0


@pytest.mark.parametrize(
    ("query", "status", "error"),
    [
        ({}, 400, "Give exactly one of 'since' (a release candidate version) or 'environment'"),
        (
            {"since": "v1-rc1", "environment": "production"},
            400,
            "Give exactly one of 'since' (a release candidate version) or 'environment'",
        ),
        ({"since": "v9-rc1"}, 404, "Release not found"),
        ({"since": "nonsense"}, 400, "Invalid release candidate version"),
        ({"environment": "nowhere"}, 404, "Release environment not found"),
        ({"environment": "production"}, 404, "Nothing is running in the environment"),
    ],
)
async def test_bad_requests_are_refused(
    github_api: Api, fake_github: FakeGitHub, query: dict[str, str], status: int, error: str
) -> None:
    await candidate(github_api, "v1-rc1", fake_github.history("acme/backend").tip or "")
    refused = await changes(github_api, "v1-rc1", **query)
    assert (refused.status, refused.body) == (status, {"error": error})


async def test_an_unknown_head_is_not_found(github_api: Api) -> None:
    refused = await changes(github_api, "v7-rc1", since="v1-rc1")
    assert (refused.status, refused.body) == (404, {"error": "Release not found"})


async def test_without_the_github_app_reports_are_refused(api: Api) -> None:
    assert (await api.create_rc("v1-rc1", "a" * 40)).status == 201
    assert (await api.create_rc("v1-rc2", "b" * 40)).status == 201
    refused = await changes(api, "v1-rc2", since="v1-rc1")
    assert refused.status == 409
    assert refused.body["error"].startswith("Change reports need the GitHub App")


async def test_a_refused_comparison_is_said_once_then_asked_again(
    github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    history = fake_github.history("acme/backend")
    await candidate(github_api, "v1-rc1", history.tip or "")
    await candidate(github_api, "v1-rc2", "e" * 40)  # a commit GitHub does not have
    assert (await changes(github_api, "v1-rc2", since="v1-rc1")).status == 202
    await outbox.drain()
    refused = await changes(github_api, "v1-rc2", since="v1-rc1")
    assert refused.status == 409
    assert refused.body["error"].startswith("GitHub could not compare")
    assert (await changes(github_api, "v1-rc2", since="v1-rc1")).status == 202


async def test_a_fetch_out_of_time_resumes_where_it_stopped(
    github_api: Api, fake_github: FakeGitHub, db: Database
) -> None:
    history: History = fake_github.history("acme/monorepo")
    base = history.tip or ""
    for i in range(30):
        history.merge_pull_request(f"Page {i}", [[f"frontend/{i}.js" if i % 2 else "x.py"]])
    client = github_api.client.app[SERVICE].github
    assert client is not None

    async def call(endpoint: Any, **kwargs: Any) -> Any:
        return await endpoint(client, MONOREPO_INSTALLATION, "acme/monorepo", **kwargs)

    loop = asyncio.get_running_loop()
    paths = PathFilter(("frontend/**",))
    fake_github.latency = 0.02  # 30 commits, 8 at a time: past the deadline below
    stopped = ReportFetch(call, "acme/monorepo", base, history.tip or "", paths, loop.time() + 0.05)
    with pytest.raises(OutOfTime) as out:
        await stopped.report()
    fake_github.latency = 0
    resumed = ReportFetch(
        call, "acme/monorepo", base, history.tip or "", paths, loop.time() + 60, out.value.progress
    )
    report = await resumed.report()
    assert len(report.commits) == 15 == len(report.pull_requests)
    commit_reads = fake_github.calls_to("GET", r"/commits/[0-9a-f]{40}$")
    assert len(commit_reads) == 30  # each commit's files read once across the two attempts
