"""Suite-wide fixtures: every test must leave no asyncio task running behind it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest


@pytest.fixture(autouse=True)
async def _no_leftover_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks running (a leaked watcher or worker)."""
    before = asyncio.all_tasks()
    yield
    # Give cancelled tasks one turn of the loop to finish unwinding.
    await asyncio.sleep(0)
    leftover = {
        t for t in asyncio.all_tasks() - before if not t.done() and t is not asyncio.current_task()
    }
    if leftover:
        for task in leftover:
            task.cancel()
        await asyncio.gather(*leftover, return_exceptions=True)
        names = sorted(t.get_name() for t in leftover)
        pytest.fail(f"test left {len(leftover)} task(s) running: {names}")
