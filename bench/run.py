"""`python -m bench.run` (`make bench`): every bench section in order, one table, one JSON file.

The sections are modules exposing `async def run() -> list[Row]`; a section whose module is not
there (yet) is skipped.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
import traceback
from collections.abc import Awaitable, Callable

from bench.common import RESULTS_PATH, Row, print_table, write_results

SECTIONS = (
    "bench.intake",
    "bench.latency",
    "bench.history",
    "bench.drain",
    "bench.hostile",
    "bench.changes",
    "bench.graphql",
    "bench.dashboard",
    "bench.policy",
)


def _section(module_name: str) -> Callable[[], Awaitable[list[Row]]] | None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    run: Callable[[], Awaitable[list[Row]]] = module.run
    return run


async def run_all() -> tuple[list[Row], list[str]]:
    """Every section's rows, and the names of the sections that failed (the others still run)."""
    rows: list[Row] = []
    failed: list[str] = []
    for name in SECTIONS:
        started = time.monotonic()
        print(f"{name}: running...", flush=True)
        try:
            section = _section(name)
            if section is None:
                print(f"{name}: not present, skipped", flush=True)
                continue
            rows.extend(await section())
        except Exception:
            traceback.print_exc()
            failed.append(name)
            print(f"{name}: FAILED", flush=True)
            continue
        print(f"{name}: done in {time.monotonic() - started:.0f} s", flush=True)
    return rows, failed


def main() -> None:
    rows, failed = asyncio.run(run_all())
    print()
    print_table(rows)
    write_results(rows)
    print(f"\nwritten to {RESULTS_PATH}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
