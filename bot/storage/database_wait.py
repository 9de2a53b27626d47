"""At start, wait for a database that is not reachable yet (it starts alongside Tarmac, or is
being restarted), logging every attempt, and give up after the configured time.

`tarmac serve` exits with EXIT_DATABASE_UNREACHABLE when the wait ends without a connection,
so a supervisor can tell it apart from a configuration error (2).
"""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from bot.storage.db import Database

log = logging.getLogger(__name__)

EXIT_DATABASE_UNREACHABLE = 3
FIRST_PAUSE_SECONDS = 0.5
MAX_PAUSE_SECONDS = 5.0
# One attempt never takes longer than this (a host that drops packets answers nothing).
ATTEMPT_TIMEOUT_SECONDS = 10.0


async def wait_for_database(database_url: str, give_up_after: float) -> bool:
    """True once the database answers `SELECT 1`; False once `give_up_after` seconds passed."""
    started = time.monotonic()
    pause = FIRST_PAUSE_SECONDS
    attempt = 0
    while True:
        attempt += 1
        left = give_up_after - (time.monotonic() - started)
        problem = await _attempt(database_url, max(0.1, min(left, ATTEMPT_TIMEOUT_SECONDS)))
        if problem is None:
            if attempt > 1:
                log.info("database reachable after %d attempts", attempt)
            return True
        waited = time.monotonic() - started
        reason = _without_password(problem, database_url)
        if waited + pause > give_up_after:
            log.error(
                "database unreachable (attempt %d, %.1f s): %s; giving up after %.0f s "
                "(TARMAC_DATABASE_START_TIMEOUT)",
                attempt,
                waited,
                reason,
                give_up_after,
            )
            return False
        log.warning(
            "database unreachable (attempt %d, %.1f s of %.0f s): %s; retrying in %.1f s",
            attempt,
            waited,
            give_up_after,
            reason,
            pause,
        )
        await asyncio.sleep(pause)
        pause = min(pause * 2, MAX_PAUSE_SECONDS)


async def _attempt(database_url: str, seconds: float) -> str | None:
    """None when the database answered; otherwise what failed, in one line."""
    db = Database.from_url(database_url)
    try:
        await asyncio.wait_for(db.ping(), seconds)
    except TimeoutError:
        return f"no answer within {seconds:.1f} s"
    except (OSError, SQLAlchemyError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else ""
        return f"{type(exc).__name__}: {text}".rstrip(": ")
    finally:
        await db.dispose()
    return None


def _without_password(message: str, database_url: str) -> str:
    password = make_url(database_url).password
    if password:
        return message.replace(str(password), "***")
    return message
