"""daxd.tasks.cancel_and_wait: every task is cancelled before any is awaited; None is skipped."""

from __future__ import annotations

import asyncio

from daxd.tasks import cancel_and_wait


async def test_cancels_every_task_and_waits_for_each() -> None:
    ended: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            ended.append(name)

    tasks = [asyncio.create_task(forever(name)) for name in ("a", "b")]
    await asyncio.sleep(0)
    await cancel_and_wait([tasks[0], None, tasks[1]])
    assert sorted(ended) == ["a", "b"]
    assert all(task.cancelled() for task in tasks)


async def test_nothing_to_stop() -> None:
    await cancel_and_wait([])
    await cancel_and_wait([None])
