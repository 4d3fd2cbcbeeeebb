"""Graceful shutdown of listeners, shared by the HTTP and DAX front ends."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any, Protocol


class Connection(Protocol):
    def close_if_idle(self) -> None: ...

    def close(self) -> None: ...


async def shutdown(servers: Sequence[asyncio.Server], connections: Iterable[Connection],
                   tasks: set[asyncio.Task[Any]], grace: float) -> tuple[int, int]:
    """Stop accepting, close idle connections, let in-flight requests finish (bounded), close the rest.

    Returns:
        (requests that finished during the drain, requests cut off when the grace ran out).
    """
    for server in servers:
        server.close()
    for connection in list(connections):
        connection.close_if_idle()
    finished = cut = 0
    if tasks:
        done, pending = await asyncio.wait(list(tasks), timeout=grace)
        finished, cut = len(done), len(pending)
        for task in pending:
            task.cancel()
    for connection in list(connections):
        connection.close()
    for server in servers:
        await server.wait_closed()
    return finished, cut
