"""Running a node's loops side by side: they end together, the first failure first."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Sequence
from typing import Any


async def run_together(loops: Sequence[Coroutine[Any, Any, None]]) -> None:
    """Run ``loops`` until one of them fails (its error is raised) or all end; the others are
    cancelled and awaited before this returns, also when this task is cancelled."""
    tasks = [asyncio.create_task(loop) for loop in loops]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
