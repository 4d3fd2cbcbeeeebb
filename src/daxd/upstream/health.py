"""Whether the upstream answers, and the one log line per change of that.

An outage that nobody logs is found late: the upstream client reports every
call's outcome here (a response of any status means the endpoint is up; a
call that could not reach it after its retries means it is down), and this
object logs only the transitions: down with the reason, up again with how
long the outage lasted. The dashboard and the ``daxd_upstream_up`` gauge read
the same state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("daxd.upstream")


class UpstreamHealth:
    """Up/down state of one upstream endpoint. ``up`` is None until the first outcome.

    Args:
        label: how the endpoint is named in log lines ("embedded (in memory)" for the embedded backend).
    """

    def __init__(self, label: str, *, monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.label = label
        self.up: bool | None = None
        self.last_error: str | None = None
        #: ``wall()`` of the last error, for the dashboard.
        self.last_error_at: float | None = None
        #: ``wall()`` of the last change of state.
        self.since: float | None = None
        self.outages = 0
        self._monotonic = monotonic
        self._wall = wall
        self._down_at: float | None = None

    def succeeded(self) -> None:
        if self.up is True:
            return
        if self.up is False and self._down_at is not None:
            log.warning("upstream %s is answering again after %.1f s down", self.label,
                        self._monotonic() - self._down_at)
        self.up = True
        self.since = self._wall()
        self._down_at = None

    def failed(self, reason: str) -> None:
        self.last_error = reason
        self.last_error_at = self._wall()
        if self.up is False:
            return
        first = self.up is None
        self.up = False
        self.outages += 1
        self.since = self.last_error_at
        self._down_at = self._monotonic()
        if first:
            log.error("upstream %s is not answering at start-up: %s (serving anyway; calls fail until it answers)",
                      self.label, reason)
        else:
            log.error("upstream %s is down: %s", self.label, reason)


async def probe_at_start(health: UpstreamHealth, probe: Callable[[], Awaitable[object]], cap: float) -> None:
    """One call before the node says it is up, so a wrong ``--upstream`` is logged at once.

    Bounded by ``cap`` seconds: an upstream that swallows packets must not hold the start-up for
    the client's full timeout and retries; the node starts anyway and keeps probing (:func:`watch`).
    """
    try:
        await asyncio.wait_for(probe(), cap)
    except TimeoutError:
        health.failed(f"no answer within {cap:g} s")
    except Exception:  # the client reported the failure to ``health`` already
        return


async def watch(health: UpstreamHealth, probe: Callable[[], Awaitable[object]], interval: float,
                idle: Callable[[], float]) -> None:
    """Probe the upstream whenever it has been quiet for ``interval`` seconds (or is down).

    ``probe`` is a cheap call whose outcome reaches ``health`` through the
    client; ``idle()`` is how long ago the upstream last answered. Without it
    an outage on an idle node, and its end, would go unseen.
    """
    while True:
        await asyncio.sleep(interval)
        if health.up is not True or idle() >= interval:
            with contextlib.suppress(Exception):
                await probe()
