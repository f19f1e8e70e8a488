"""Timing checks that hold on a loaded machine: compare with how late the loop itself ran, in this run.

A claim like "the server pings every 0.3 s" is checked against the lateness the event loop showed while
it was measured (``LoopLag``): a sleeper woken 120 ms late on a busy 2-core machine makes a ping 120 ms
late too, and that is the machine, not the library.
"""
from __future__ import annotations

import asyncio
import contextlib


class LoopLag:
    """``async with LoopLag() as lag:`` ... ``lag.worst``: the most a 5 ms sleep overslept meanwhile (s)."""

    def __init__(self, step: float = 0.005) -> None:
        self.step = step
        self.worst = 0.0
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.step)
            self.worst = max(self.worst, loop.time() - before - self.step)

    async def __aenter__(self) -> "LoopLag":
        self._task = asyncio.ensure_future(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def eventually(predicate, timeout: float = 5.0, step: float = 0.01) -> None:
    """Wait until ``predicate()`` is true (an AssertionError after ``timeout`` seconds)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(step)
