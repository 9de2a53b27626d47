"""The overview's SQL does not grow with the projects shown: the same statements for a token
that sees 5 projects as for one that sees all 50 (counted with `before_cursor_execute`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from api.app import create_app
from api.dashboard.keys import OVERVIEW_CACHE
from api.keys import SERVICE
from bot.settings import Settings
from tests.conftest import TestClock, make_token
from tests.test_dashboard_safety import sign_in
from tests.test_graphql import counted_statements, many_projects_yaml, seed_history


async def overview_statements(
    client: TestClient[Any, Any], token: str, *, cached: bool = False
) -> tuple[list[str], str]:
    """The statements one overview sends (after a first one), and the page: with its live
    region rendered afresh, or (`cached`) from the cache."""
    database = client.app[SERVICE].db
    async with await sign_in(client, token) as browser:
        async with browser.get("/") as answer:
            assert answer.status == 200
        if not cached:
            client.app[OVERVIEW_CACHE].clear()
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
    # The session; the projects the identity may see (names and repositories); projects,
    # environments; running, active and failed (ids, then rows); the newest candidates; the
    # change mark's four.
    assert len(fifty_statements) == 15, fifty_statements

    # Unchanged since: the region comes from the cache, with the session, the identity's
    # projects and the change mark's four; the same page.
    cached_statements, cached_page = await overview_statements(client, every, cached=True)
    assert len(cached_statements) == 6, cached_statements
    assert live_region(cached_page) == live_region(fifty_page)
    # The five-project token at the same mark gets its own region, never the cached fifty.
    _, five_cached = await overview_statements(client, some, cached=True)
    assert live_region(five_cached) == live_region(five_page)
    assert 'data-environment="p05/production"' not in five_cached


def live_region(page: str) -> str:
    return page.split('<div id="live" data-live>', 1)[1].split("</main>", 1)[0]
