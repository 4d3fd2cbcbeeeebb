"""Stopping background tasks: one way, used by every component that runs one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object] | None]) -> None:
    """Cancel every task given (None: none), then wait until each has ended.

    All are cancelled before any is awaited, so they wind down together; their
    ``CancelledError`` is expected and swallowed.
    """
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    for task in running:
        with contextlib.suppress(asyncio.CancelledError):
            await task
