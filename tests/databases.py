"""Which database each test runs on: a pytest plugin (registered from conftest.py).

A test that takes a database (through the `backend` fixture) runs on SQLite, and on PostgreSQL
too where SQL is what it checks: the domain rules, concurrency, migrations, query plans, webhook
intake, the outbox, catch-up, faults, and each branch the code takes by dialect. Those tests say
so with `@pytest.mark.both_databases` (or `pytestmark` for a whole module). The rest check HTTP,
adapters and formats, which do not change with the database.

`--databases` picks the matrix:

- `default` (`make test`): both databases for the marked tests, SQLite for the rest;
- `rest` (part of `make soak`): only what `default` leaves out, the unmarked tests on
  PostgreSQL; `make test` and `make soak` together run every test on both databases;
- `full`: every test on both databases in one run.

A test that parametrizes `backend` itself is left as it is (it runs in `default`).
"""

from __future__ import annotations

import pytest

BOTH = "both_databases"
REST_MARK = "databases_rest"
MATRICES = ("default", "rest", "full")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--databases",
        choices=MATRICES,
        default="default",
        help="default: both databases where SQL is the subject, SQLite for the rest; "
        "rest: the PostgreSQL half default leaves out; full: every test on both",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{BOTH}: run on SQLite and on PostgreSQL in make test")
    config.addinivalue_line("markers", f"{REST_MARK}: the PostgreSQL half make test leaves out")


def _parametrizes_backend(metafunc: pytest.Metafunc) -> bool:
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0] if marker.args else marker.kwargs.get("argnames", "")
        listed = names.split(",") if isinstance(names, str) else list(names)
        if "backend" in (name.strip() for name in listed):
            return True
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames or _parametrizes_backend(metafunc):
        return
    matrix = metafunc.config.getoption("databases")
    marked = metafunc.definition.get_closest_marker(BOTH) is not None
    if matrix == "full" or (matrix == "default" and marked):
        metafunc.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
    elif matrix == "default":
        metafunc.parametrize("backend", ["sqlite"], indirect=True)
    elif not marked:  # rest
        rest = pytest.param("postgresql", marks=pytest.mark.databases_rest)
        metafunc.parametrize("backend", [rest], indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("databases") != "rest":
        return
    kept = [item for item in items if item.get_closest_marker(REST_MARK) is not None]
    dropped = [item for item in items if item.get_closest_marker(REST_MARK) is None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = kept
