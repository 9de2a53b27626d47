"""The overview's SQL does not grow with the projects shown: the same statements for a token
that sees 5 projects as for one that sees all 50 (counted with `before_cursor_execute`); the
candidate page reads all its environments and reports at once."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from markupsafe import escape
from sqlalchemy import select, update

from api.app import create_app
from api.dashboard.keys import KEPT_NEWEST, OVERVIEW_CACHE, SHOWN_REPORTS
from api.keys import SERVICE
from bot.app import dashboard
from bot.app.dashboard import KEPT_SECONDS, KeptNewest, ShownReports
from bot.core import errors
from bot.domain.access import token_identity
from bot.domain.freeze import current_freeze
from bot.service import open_service
from bot.settings import Settings
from bot.storage import dashboard as reads
from bot.storage.models import (
    ChangeReport,
    Deployment,
    Environment,
    Project,
    Release,
    ReleaseCandidate,
)
from tests.conftest import TestClock, make_token
from tests.test_dashboard_safety import sign_in
from tests.test_graphql import ENVIRONMENTS, counted_statements, many_projects_yaml, seed_history


def admin_identity() -> Any:
    """A token's identity with every project in scope."""
    return token_identity("admin@example.com", 1, frozenset())


async def overview_statements(
    client: TestClient[Any, Any], token: str, *, cached: bool = False
) -> tuple[list[str], str]:
    """The statements one overview sends (after a first one), and the page: with its live
    region read (every environment's newest deployments too) and rendered afresh, or
    (`cached`) from the cache."""
    database = client.app[SERVICE].db
    async with await sign_in(client, token) as browser:
        async with browser.get("/") as answer:
            assert answer.status == 200
        if not cached:
            client.app[OVERVIEW_CACHE].clear()
            client.app[KEPT_NEWEST].clear()
        with counted_statements(database) as statements:
            async with browser.get("/") as answer:
                page = await answer.text()
                assert answer.status == 200
    return [" ".join(s.split())[:100] for s in statements], page


async def test_the_overview_of_50_projects_costs_the_statements_of_5(
    aiohttp_client: Any, tmp_path: Path, database_url: str, clock: TestClock
) -> None:
    projects_file = tmp_path / "many.yml"
    projects_file.write_text(many_projects_yaml(50))
    settings = Settings(database_url=database_url, config=projects_file)
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(settings, clock=clock, background_work=False)
    )
    database = client.app[SERVICE].db
    await seed_history(database, 50, clock)
    five = [f"p{n:02d}" for n in range(5)]
    every = await make_token(database, "every-project")
    some = await make_token(database, "five-projects", five)

    fifty_statements, fifty_page = await overview_statements(client, every)
    five_statements, five_page = await overview_statements(client, some)

    assert all(f'data-environment="p{n:02d}/production"' in fifty_page for n in range(50))
    assert 'data-environment="p04/production"' in five_page
    assert 'data-environment="p05/production"' not in five_page
    assert "v2.0.0-rc1" in five_page  # the rows were read, not only the projects
    assert len(fifty_statements) == len(five_statements), (fifty_statements, five_statements)
    # The session; the projects the identity may see (names and repositories); the change
    # mark; the projects with their environments; the deployments' newest id and change; the
    # newest success, deployment under way and failure of each (their ids, then their rows);
    # the newest candidates.
    assert len(fifty_statements) == 8, fifty_statements

    # Unchanged since: the region comes from the cache, with the session, the identity's
    # projects and the change mark; the same page.
    cached_statements, cached_page = await overview_statements(client, every, cached=True)
    assert len(cached_statements) == 3, cached_statements
    assert live_region(cached_page) == live_region(fifty_page)
    # The five-project token at the same mark gets its own region, never the cached fifty.
    _, five_cached = await overview_statements(client, some, cached=True)
    assert live_region(five_cached) == live_region(five_page)
    assert 'data-environment="p05/production"' not in five_cached


def without_form_keys(page: str) -> str:
    """The page's live region without the values its forms get fresh each time (the CSRF
    token, the idempotency keys)."""
    return re.sub(
        r'type="hidden" name="(csrf|idempotency_key)" value="[^"]*"', "", live_region(page)
    )


def live_region(page: str) -> str:
    return page.split('<div id="live" data-live>', 1)[1].split("</main>", 1)[0]


@pytest.mark.both_databases
async def test_the_overviews_plain_reads_agree_with_the_environment_pages(
    tmp_path: Path, database_url: str, clock: TestClock
) -> None:
    """The overview reads plain rows (no ORM objects); the environment page still reads
    deployments through the ORM. On the same history, including an error newer than a
    failure, a success that ended after it was last touched, a deployment under way beneath
    a newer one and a freeze whose end has passed, every cell shows the same deployments,
    times and freeze."""
    projects_file = tmp_path / "many.yml"
    projects_file.write_text(many_projects_yaml(3))
    settings = Settings(database_url=database_url, config=projects_file)
    service = await open_service(settings, clock=clock)
    db = service.db
    try:
        await seed_history(db, 3, clock)
        await _awkward_history(db, clock)
        async with db.read() as session:
            shown = await dashboard.overview(session, admin_identity(), clock(), KeptNewest())
            environments = list(await session.scalars(select(Environment)))
            ids = [e.id for e in environments]
            running = await reads.running_deployments(session, ids)
            active = await reads.active_deployments(session, ids)
            failed = await reads.last_failures(session, ids)
        by_id = {e.id: e for e in environments}
        cells = [cell for row in shown.rows for cell in row.cells]
        assert len(cells) == 3 * len(ENVIRONMENTS)
        for cell in cells:
            environment = by_id[cell.environment.id]
            expected_running = running.get(environment.id)
            assert _id(cell.running) == _id(expected_running)
            assert _id(cell.active) == _id(active.get(environment.id))
            assert _id(cell.last_failure) == _id(failed.get(environment.id))
            if cell.running is not None and expected_running is not None:
                since = expected_running.deploy_end_at or expected_running.updated_at
                assert cell.running.at == since
                assert cell.running.version == expected_running.release_candidate.version
            if cell.last_failure is not None:
                assert cell.last_failure.at == failed[environment.id].updated_at
            assert cell.freeze == current_freeze(environment, clock())
        statuses = {
            (c.environment.name, kind): getattr(c, kind).status
            for c in cells[: len(ENVIRONMENTS)]
            for kind in ("running", "active", "last_failure")
            if getattr(c, kind) is not None
        }
        assert statuses[("staging", "last_failure")] == "error"
        assert statuses[("dev", "active")] == "pending"
        assert cells[0].environment.frozen_at is not None
        assert cells[0].freeze is None
        frozen = [c for c in cells if c.freeze is not None]
        assert [(c.environment.name, c.freeze.reason) for c in frozen if c.freeze] == [
            ("production", "<b>Quarter</b> close")
        ]
        assert shown.candidates[0].candidate.version == "v9.0.0-rc1"
        assert shown.candidates[0].running_in == []
        runs_in = {(c.project.name, c.candidate.version): c.running_in for c in shown.candidates}
        assert runs_in[("p01", "v2.0.0-rc1")] == ["staging"]
        assert runs_in[("p01", "v1.0.0-rc1")] == [e for e in ENVIRONMENTS if e != "staging"]
    finally:
        await service.close()


def _id(deployment: Any) -> int | None:
    return None if deployment is None else int(deployment.id)


async def _awkward_history(db: Any, clock: TestClock) -> None:
    """On p00: an error after staging's failure; dev's success ended an hour after it was
    last touched; an older deployment still pending under dev's newest; a freeze of the first
    environment that ended a minute ago, one of production in effect; a new candidate that runs
    nowhere."""
    now = clock.now
    async with db.write() as session:
        envs = {
            e.name: e
            for e in await session.scalars(
                select(Environment).join(Project).where(Project.name == "p00")
            )
        }
        v1 = await session.scalar(
            select(ReleaseCandidate).where(
                ReleaseCandidate.version == "v1.0.0-rc1",
                ReleaseCandidate.project_id == envs["dev"].project_id,
            )
        )
        assert v1 is not None

        def deployment(env: str, status: str, end: timedelta | None) -> Deployment:
            return Deployment(
                environment_id=envs[env].id,
                release_candidate_id=v1.id,
                kind="deploy",
                status=status,
                actor="seed",
                deploy_start_at=now,
                deploy_end_at=None if end is None else now + end,
                updated_at=now,
            )

        session.add(deployment("staging", "error", timedelta(0)))
        session.add(deployment("dev", "pending", None))
        session.add(deployment("dev", "success", timedelta(hours=1)))
        first = min(envs.values(), key=lambda e: e.id)
        first.frozen_at = now - timedelta(days=1)
        first.frozen_by = "ops@example.com"
        first.frozen_reason = "over"
        first.frozen_until = now - timedelta(minutes=1)
        envs["production"].frozen_at = now
        envs["production"].frozen_by = "rm@example.com"
        envs["production"].frozen_reason = "<b>Quarter</b> close"
        release = Release(project_id=v1.project_id, version="v9.0.0", created_at=now)
        session.add(release)
        session.add(
            ReleaseCandidate(
                project_id=v1.project_id,
                release=release,
                version="v9.0.0-rc1",
                number=1,
                commit_sha="9" * 40,
                repo=v1.repo,
                build_status="ready",
                created_at=now,
            )
        )


CANDIDATE_PAGE = "/projects/p00/candidates/v2.0.0-rc1"


async def candidate_statements(
    client: TestClient[Any, Any], token: str, *, reports_kept: bool
) -> tuple[list[str], str]:
    """The statements one candidate page sends, and the page: with the pull requests of its
    reports kept from an earlier view, or (not `reports_kept`) read afresh."""
    database = client.app[SERVICE].db
    async with await sign_in(client, token) as browser:
        async with browser.get(CANDIDATE_PAGE) as answer:
            assert answer.status == 200
        if not reports_kept:
            client.app[SHOWN_REPORTS] = ShownReports()
        with counted_statements(database) as statements:
            async with browser.get(CANDIDATE_PAGE) as answer:
                page = await answer.text()
                assert answer.status == 200
    return [" ".join(s.split())[:100] for s in statements], page


@pytest.mark.both_databases
async def test_the_candidate_page_reads_its_six_environments_and_reports_at_once(
    aiohttp_client: Any, tmp_path: Path, database_url: str, clock: TestClock
) -> None:
    """Six environments, five of them showing the same stored report (v1 runs there, v2
    runs in staging): the same few statements as for one, and the report's pull requests
    read once, then kept (a complete report is never filled again)."""
    projects_file = tmp_path / "many.yml"
    projects_file.write_text(many_projects_yaml(2))
    settings = Settings(database_url=database_url, config=projects_file)
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(settings, clock=clock, background_work=False)
    )
    await seed_history(client.app[SERVICE].db, 2, clock)
    token = await make_token(client.app[SERVICE].db, "every-project")

    read, page = await candidate_statements(client, token, reports_kept=False)
    kept, kept_page = await candidate_statements(client, token, reports_kept=True)

    assert page.count("Deploying this here ships 3 pull requests (3 commits) since v1.0.0-rc1") == 5
    assert page.count("Runs here.") == 1
    assert all(f'href="https://x/p/{n}">#{n}</a> PR {n} by dev' in page for n in range(3))
    assert without_form_keys(kept_page) == without_form_keys(page)
    # The session, the identity's projects; the project, the candidate, the environments with
    # what runs there (the newest success's id, then its row), the reports' summaries; the
    # change mark.
    assert len(kept) == 8, "\n".join(kept)
    # Not kept yet: and the pull requests of the one report, once for five environments.
    assert len(read) == 9, read
    assert [s for s in read if s not in kept] == [
        next(
            s
            for s in read
            if s.startswith("SELECT change_reports.id, change_reports.pull_requests")
        )
    ]


async def test_a_refused_report_is_said_in_every_environment_it_was_for_then_forgotten(
    aiohttp_client: Any, tmp_path: Path, database_url: str, clock: TestClock
) -> None:
    """One stored refusal behind five environments: each says GitHub refused, and the row is
    gone after the view (the next one asks again; without the GitHub App it says so)."""
    projects_file = tmp_path / "many.yml"
    projects_file.write_text(many_projects_yaml(1))
    settings = Settings(database_url=database_url, config=projects_file)
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(settings, clock=clock, background_work=False)
    )
    database = client.app[SERVICE].db
    await seed_history(database, 1, clock)
    async with database.write() as session:
        await session.execute(update(ChangeReport).values(error="404 Not Found"))
    token = await make_token(database, "every-project")
    async with await sign_in(client, token) as browser:
        async with browser.get(CANDIDATE_PAGE) as answer:
            refused = await answer.text()
        async with browser.get(CANDIDATE_PAGE) as answer:
            after = await answer.text()
    assert refused.count(escape(str(errors.CHANGES_REFUSED))) == 5
    async with database.read() as session:
        assert list(await session.scalars(select(ChangeReport))) == []
    assert escape(str(errors.CHANGES_REFUSED)) not in after
    assert after.count(str(errors.CHANGES_NEED_GITHUB_APP)) == 5


@pytest.mark.both_databases
async def test_the_overview_reads_again_the_environments_whose_deployments_changed(
    tmp_path: Path, database_url: str, clock: TestClock
) -> None:
    """What is kept of each environment's newest deployments is read again where a
    deployment was added or changed since (also one stamped a little before the last change
    seen but committed after it, within CHANGE_SLACK), and everywhere after KEPT_SECONDS; a
    change the mark cannot see (no new `updated_at`) shows only then."""
    projects_file = tmp_path / "many.yml"
    projects_file.write_text(many_projects_yaml(3))
    service = await open_service(Settings(database_url=database_url, config=projects_file))
    db = service.db
    try:
        await seed_history(db, 3, clock)
        async with db.read() as session:
            named = {
                (p.name, e.name): e.id
                for e, p in (await session.execute(select(Environment, Project).join(Project)))
            }
        ids = sorted(named.values())
        ticks = [0.0]
        kept = KeptNewest(monotonic=lambda: ticks[0])

        async def newest(of: KeptNewest) -> dict[int, reads.NewestDeployments]:
            async with db.read() as session:
                return await of.newest(session, ids)

        async def fresh() -> dict[int, reads.NewestDeployments]:
            return await newest(KeptNewest())

        assert await newest(kept) == await fresh()
        canary, dev = named[("p00", "canary")], named[("p01", "dev")]
        production = named[("p02", "production")]
        clock.advance(hours=1)
        async with db.write() as session:
            under_way = await session.scalar(
                select(Deployment).where(
                    Deployment.environment_id == canary, Deployment.status == "in_progress"
                )
            )
            assert under_way is not None
            under_way.status = "success"
            under_way.deploy_end_at = under_way.updated_at = clock.now
        # Every seeded deployment was stamped within CHANGE_SLACK of the last change seen.
        assert await newest(kept) == await fresh()
        clock.advance(hours=1)
        async with db.write() as session:
            session.add(_deployment(dev, under_way.release_candidate_id, "failure", clock.now))
            # Unseen by the mark: the row changes, its `updated_at` does not.
            running = await session.scalar(
                select(Deployment)
                .where(Deployment.environment_id == production, Deployment.status == "success")
                .order_by(Deployment.id.desc())
            )
            assert running is not None
            running.workflow_run_url = "https://example.com/run/7"

        with counted_statements(db) as statements:
            found = await newest(kept)
        expected = await fresh()
        # The deployments' ends; the environments changed since; their newest (ids, rows).
        assert len(statements) == 4, statements
        assert found[canary] == expected[canary]
        assert found[canary].running is not None
        assert found[canary].running.id == under_way.id
        assert found[canary].active is None
        assert found[dev] == expected[dev]
        assert found[dev].last_failure is not None
        assert found[dev].last_failure.at == clock.now
        unseen = expected[production].running
        assert unseen is not None
        assert unseen.workflow_run_url == "https://example.com/run/7"
        assert found[production] != expected[production]  # kept: not read again
        assert {i: found[i] for i in ids if i != production} == {
            i: expected[i] for i in ids if i != production
        }

        # Stamped ten seconds before the last change seen, committed after it: read again.
        async with db.write() as session:
            late = _deployment(
                named[("p01", "qa")], under_way.release_candidate_id, "error", clock.now
            )
            late.updated_at = clock.now - timedelta(seconds=10)
            session.add(late)
        found = await newest(kept)
        assert found[named[("p01", "qa")]].last_failure is not None
        assert found[named[("p01", "qa")]].last_failure.status == "error"
        assert found[production] != expected[production]

        ticks[0] += KEPT_SECONDS + 1  # then everything is read again
        assert await newest(kept) == await fresh()
        assert (await newest(kept))[production] == expected[production]
    finally:
        await service.close()


def _deployment(environment_id: int, candidate_id: int, status: str, at: Any) -> Deployment:
    return Deployment(
        environment_id=environment_id,
        release_candidate_id=candidate_id,
        kind="deploy",
        status=status,
        actor="seed",
        deploy_start_at=at,
        deploy_end_at=at,
        updated_at=at,
    )
