"""Waiting with a time limit inside a loop that is stopped by cancelling its task.

Not `asyncio.wait_for`: on Python 3.11 it swallows a cancellation that arrives after what it
waits for has finished but before it has returned (python/cpython#86296, fixed by 3.12's
rewrite). A loop cancelled in that moment (the inbox's reader woken by an append as the server
stops) would run on, and whoever awaits its task would wait forever. `asyncio.timeout` lets
the cancellation through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable


async def finished_within(seconds: float, awaitable: Awaitable[object]) -> bool:
    """Whether `awaitable` finished within `seconds` (if not, it is cancelled)."""
    try:
        async with asyncio.timeout(seconds):
            await awaitable
    except TimeoutError:
        return False
    return True
