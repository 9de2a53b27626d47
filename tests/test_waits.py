"""A loop stopped by cancelling its task stops, whenever the cancel comes: also in the moment
its wait has just finished (bot/core/waits.py; Python 3.11's `asyncio.wait_for` loses that
cancel, and the task runs on). The inbox's reader, the outbox worker and the outbox listener
wait this way between rounds."""

from __future__ import annotations

import asyncio

import pytest

from bot.core.waits import finished_within

# Enough loop turns after the event is set to pass through every moment of the wait's ending.
TICKS = 8


async def loop_waiting_on(event: asyncio.Event) -> None:
    """Like the reader's loop: wait for a wake-up (or the poll), take the round, again."""
    while True:
        await finished_within(60, event.wait())
        event.clear()


@pytest.mark.parametrize("ticks", range(TICKS))
async def test_a_loop_cancelled_as_its_wait_ends_stops(ticks: int) -> None:
    event = asyncio.Event()
    task = asyncio.create_task(loop_waiting_on(event))
    await asyncio.sleep(0)  # the loop is waiting
    event.set()
    for _ in range(ticks):
        await asyncio.sleep(0)
    task.cancel()

    await asyncio.wait([task], timeout=2)

    assert task.done(), "the cancel was lost: the loop runs on"
    assert task.cancelled()


async def test_a_wait_says_whether_it_finished_in_time() -> None:
    event = asyncio.Event()
    assert not await finished_within(0.01, event.wait())
    event.set()
    assert await finished_within(0.01, event.wait())
