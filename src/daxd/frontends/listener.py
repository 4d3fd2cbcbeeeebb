"""The listener base shared by the HTTP and DAX front ends: limits, deadlines, flow control, drain.

Every rule about a *connection* (as opposed to a protocol's bytes) lives here
once, in the shape uvicorn uses: a :class:`ListenerState` shared by all the
connections of one listener (the registry, its limits, its refusal counts,
whether it is draining) and a :class:`ListenerProtocol` base that each
protocol's connection extends.

What the base guarantees, whatever the protocol:

* **A connection limit.** Past ``max_connections`` a new connection gets the
  protocol's refusal (a DynamoDB-shaped error where one fits) and is closed.
* **Deadlines.** One timer per connection, re-armed only when a deadline moves
  earlier: ``idle_timeout`` while waiting for a request, the protocol's header
  and body deadlines while a request is being received, and ``idle_timeout``
  again as a *send* deadline while the peer does not read its replies.
* **Write flow control.** The transport's write buffer limits are set to
  ``write_high_water``/``write_low_water``; while the buffer is over the high
  mark the connection is *write-paused*: the protocol answers nothing more and
  reading stops, so a client that pipelines without reading holds at most the
  mark plus one batch of replies and one read of requests.
* **Lingering close.** A refusal is written, the write side shut, and input
  discarded until the peer closes (or a short deadline): closing a socket
  with unread input makes the kernel send RST, and the peer would see a reset
  instead of the error.
* **Graceful drain** (:func:`shutdown`): stop accepting, let each connection
  finish what it has started (HTTP answers with ``Connection: close``), close
  idle ones at once and the rest after the grace period.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("daxd.listener")

#: Seconds a refused connection may keep sending (discarded) before it is closed.
LINGER = 2.0
#: Refusals of one reason are logged at most once in this many seconds (all are counted).
LOG_EVERY = 60.0
#: Closes that are a connection's normal end, logged at debug level only.
_ROUTINE = frozenset({"idle_timeout"})


@dataclass(frozen=True, slots=True)
class Limits:
    """What one listener allows each connection (flags of the same names, see docs/limits.md)."""

    max_connections: int = 10_000
    #: Seconds without a request (or without the peer reading a reply) before a connection is closed; 0: never.
    idle_timeout: float = 600.0
    #: Seconds from a request's first byte to the end of its headers (HTTP); 0: no limit.
    header_timeout: float = 10.0
    #: Seconds to receive a request's body once its headers are in (a DAX frame once begun); 0: no limit.
    body_timeout: float = 60.0
    max_header_count: int = 100
    #: Bytes of request line and headers.
    max_header_bytes: int = 16 * 1024
    #: Bytes of one request: an HTTP body (after decompression) or a DAX frame.
    max_request_size: int = 16 * 1024 * 1024
    #: Unsent reply bytes over which a connection stops being answered and read.
    write_high_water: int = 256 * 1024

    @property
    def write_low_water(self) -> int:
        return self.write_high_water // 4


class RequestBudget:
    """Bytes of large request bodies the node holds at once, across all its listeners, and their turns.

    A body of known length over :data:`BUDGETED` reserves its size when its
    headers arrive and gives it back when it is answered. A reservation that
    does not fit waits (its connection stops reading) in arrival order; one is
    always granted when nothing else is held, so a body larger than the whole
    budget still goes through, alone. Smaller requests never wait.

    **Turns.** Decoding a body of megabytes holds the event loop for tens of
    milliseconds. Large requests are therefore answered one per event-loop
    iteration (:meth:`take_turn`): between two of them the loop polls its
    sockets and serves whatever small requests arrived meanwhile, so a burst
    of large requests delays a small one by one decode, not by all of them.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiting: deque[tuple[int, Callable[[], None]]] = deque()
        self._turns: deque[Callable[[], None]] = deque()

    def take_turn(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` in a later event-loop iteration, after the large requests queued before it."""
        self._turns.append(callback)
        if len(self._turns) == 1:
            asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        callback = self._turns.popleft()
        try:
            callback()
        finally:
            if self._turns:
                asyncio.get_running_loop().call_soon(self._next_turn)  # the next one after the loop's next poll

    def reserve(self, size: int, granted: Callable[[], None]) -> bool:
        """True if ``size`` bytes are reserved now; otherwise ``granted`` is called when they are."""
        if not self._waiting and (self.used == 0 or self.used + size <= self.limit):
            self.used += size
            return True
        self._waiting.append((size, granted))
        return False

    def release(self, size: int) -> None:
        self.used -= size
        while self._waiting and (self.used == 0 or self.used + self._waiting[0][0] <= self.limit):
            size, granted = self._waiting.popleft()
            self.used += size
            granted()

    def cancel(self, granted: Callable[[], None]) -> None:
        """Forget a waiting reservation (its connection closed)."""
        self._waiting = deque(entry for entry in self._waiting if entry[1] != granted)


#: Bodies at most this large never wait for the :class:`RequestBudget`.
BUDGETED = 64 * 1024


class ListenerState:
    """What every connection of one listener shares: the registry, limits, tasks and refusal counts."""

    def __init__(self, name: str, limits: Limits, budget: RequestBudget | None = None) -> None:
        self.name = name
        self.limits = limits
        self.budget = budget or RequestBudget(1 << 62)
        self.connections: set[ListenerProtocol] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        #: reason -> connections closed by a limit for that reason (``daxd_connections_refused_total``).
        self.refused: dict[str, int] = {}
        self.draining = False
        self._quiet_until: dict[str, float] = {}

    def refuse(self, reason: str, peer: str, detail: str) -> None:
        """Count a refusal; log it unless one of the same reason was logged within :data:`LOG_EVERY`.

        A flood of hostile connections must not become a flood of log lines.
        """
        self.refused[reason] = self.refused.get(reason, 0) + 1
        if reason in _ROUTINE:
            log.debug("%s connection %s: closing (%s)", self.name, peer, detail)
            return
        now = time.monotonic()
        if now < self._quiet_until.get(reason, 0.0):
            return
        self._quiet_until[reason] = now + LOG_EVERY
        log.warning("%s connection %s: %s; further %s refusals within %.0f s are only counted "
                    "(daxd_connections_refused_total)", self.name, peer, detail, reason, LOG_EVERY)

    def track(self, task: asyncio.Task[Any]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class ListenerProtocol(asyncio.Protocol):
    """One client connection: the protocol-independent half.

    Subclasses implement :meth:`refusal` (bytes sent to a connection over the
    limit), :meth:`timed_out` (what a missed deadline answers), :meth:`on_writable`
    (carry on answering after a write pause) and :meth:`drain`.
    """

    def __init__(self, state: ListenerState) -> None:
        self.state = state
        self.limits = state.limits
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport subclasses
        self.closing = False
        self.read_paused = False
        self.write_paused = False
        self.peer = "?"
        # Kept: on Python 3.11 every get_running_loop() costs a getpid() syscall.
        self.loop = asyncio.get_running_loop()
        self._deadline = math.inf
        self._deadline_reason = ""
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._touched = False

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        transport.set_write_buffer_limits(self.limits.write_high_water, self.limits.write_low_water)  # type: ignore[attr-defined]
        state = self.state
        if len(state.connections) >= self.limits.max_connections:
            self.refuse("max_connections", f"refused: {len(state.connections)} connections open "
                        "(the listener's max connections)", self.refusal())
            return
        state.connections.add(self)
        self.set_deadline(self.limits.idle_timeout, "idle_timeout")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.state.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself

    def pause_writing(self) -> None:
        self.write_paused = True
        self.pause_reading()
        self.set_deadline(self.limits.idle_timeout, "send_timeout")

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.closing:
            self.on_writable()

    # -- for subclasses -----------------------------------------------------

    def refusal(self) -> bytes:
        """The bytes a connection over the connection limit is sent before it is closed."""
        return b""

    def timed_out(self, reason: str) -> None:
        """A deadline passed; the default closes the connection (the reason is counted)."""
        self.state.refuse(reason, self.peer, f"closing ({reason.replace('_', ' ')})")
        self.close()

    def on_writable(self) -> None:
        """The peer read enough of its replies: carry on."""

    def drain(self) -> None:
        """The listener is shutting down: finish what has started, then close."""
        self.close()

    # -- flow control -------------------------------------------------------

    def pause_reading(self) -> None:
        if not self.read_paused and not self.closing:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and not self.closing:
            self.read_paused = False
            self.transport.resume_reading()

    # -- deadlines ----------------------------------------------------------

    def set_deadline(self, seconds: float, reason: str) -> None:
        """Close (through :meth:`timed_out`) unless the deadline moves within ``seconds``; 0: none."""
        self.set_deadline_at(self.loop.time() + seconds if seconds > 0 else math.inf, reason)

    def set_deadline_at(self, when: float, reason: str) -> None:
        self._touched = False
        self._deadline = when
        self._deadline_reason = reason
        if when < self._timer_at and not self.closing:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = when
            self._timer = self.loop.call_at(when, self._check_deadline)

    def clear_deadline(self) -> None:
        self._deadline = math.inf

    def touch_idle(self) -> None:
        """The connection is waiting for a request again: restart the idle deadline.

        The hot path (once per request): while an idle deadline is already set,
        only a flag is raised, and the timer moves the deadline when it fires,
        so an idle connection is closed between one and two idle timeouts
        after its last request.
        """
        if self._deadline_reason == "idle_timeout" and self._deadline != math.inf:
            self._touched = True
        else:
            self.set_deadline(self.limits.idle_timeout, "idle_timeout")

    def _check_deadline(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        if self.closing or self._deadline == math.inf:
            return
        if self._touched and self._deadline_reason == "idle_timeout":
            self._touched = False
            self.set_deadline(self.limits.idle_timeout, "idle_timeout")
            return
        if self.loop.time() >= self._deadline:
            self.timed_out(self._deadline_reason)
        else:
            self.set_deadline_at(self._deadline, self._deadline_reason)

    # -- closing ------------------------------------------------------------

    def refuse(self, reason: str, detail: str, reply: bytes) -> None:
        """Count (and maybe log) a refusal, send ``reply`` and close after a lingering read (see the module doc)."""
        self.state.refuse(reason, self.peer, detail)
        self.linger(reply)

    def linger(self, reply: bytes) -> None:
        """Write ``reply``, shut the write side and discard input until the peer closes or :data:`LINGER` passes."""
        transport = self.transport
        if self.closing or transport is None or transport.is_closing():
            return
        if reply:
            transport.write(reply)
        self.closing = True
        self.state.connections.discard(self)
        if self.read_paused:
            self.read_paused = False
            transport.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
        self.loop.call_later(LINGER, transport.close)

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()


async def shutdown(servers: Sequence[asyncio.Server], states: Sequence[ListenerState],
                   grace: float) -> tuple[int, int]:
    """Stop accepting, let connections finish what they started (bounded by ``grace``), close the rest.

    Returns:
        (requests that finished during the drain, requests cut off when the grace ran out).
    """
    for server in servers:
        server.close()
    tasks: set[asyncio.Task[Any]] = set()
    for state in states:
        state.draining = True
        for connection in list(state.connections):
            connection.drain()
        tasks |= state.tasks
    finished = cut = 0
    if tasks:
        done, pending = await asyncio.wait(list(tasks), timeout=grace)
        finished, cut = len(done), len(pending)
        for task in pending:
            task.cancel()
    deadline = asyncio.get_running_loop().time() + min(grace, 1.0)
    while any(state.connections for state in states) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)  # answers of finished tasks are being written and their connections closed
    for state in states:
        for connection in list(state.connections):
            connection.close()
    for server in servers:
        await server.wait_closed()
    return finished, cut


class ListenerCollector(Collector):
    """Prometheus families of every listener, read when scraped."""

    def __init__(self, states: list[ListenerState]) -> None:
        self.states = states

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        open_ = GaugeMetricFamily("daxd_connections", "Open client connections, by listener.", labels=["listener"])
        refused = CounterMetricFamily("daxd_connections_refused", "Connections refused or closed by a limit, "
                                      "by listener and reason (docs/limits.md).", labels=["listener", "reason"])
        for state in list(self.states):
            open_.add_metric([state.name], len(state.connections))
            for reason, count in list(state.refused.items()):
                refused.add_metric([state.name, reason], count)
        yield open_
        yield refused
