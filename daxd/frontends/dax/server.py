"""The asyncio adaptor of the DAX front end: bytes in, replies out, in order.

Theory of operation: each connection owns a sans-IO :class:`DaxConnection`.
``data_received`` feeds it and pulls events while the connection is not busy;
each event goes to :meth:`DaxService.handle`, which answers at once (hits and
control methods: the replies of one read are written with one ``write``) or
with an awaitable (anything that goes upstream). While an awaitable is pending
the connection is *busy*: later requests stay buffered in the codec, so
pipelined requests are answered strictly in order, and reading pauses once the
buffer passes a high-water mark. A client that disconnects mid-request leaves
its task to finish quietly (a write must still invalidate the cache) and the
reply is dropped.

Bad bytes (wrong magic, garbage, oversized lengths, unknown method ids) make
the codec raise :class:`ProtocolError`: the client gets one error reply, the
connection is closed and one line is logged; nobody else notices.

Limits (uvicorn ``server.py`` style, shared in :class:`ListenerState`):
``max_connections`` (past it new connections are closed at once) and
``idle_timeout`` (a connection with no request for that long is closed; the
clients reconnect transparently).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from daxd.frontends.dax.attrs import AttributeListTable
from daxd.frontends.dax.codec import DEFAULT_MAX_FRAME_SIZE, DaxConnection
from daxd.frontends.dax.errors import encode_error
from daxd.frontends.dax.events import NEED_DATA, ConnectionClosed
from daxd.frontends.dax.service import DaxService, Session
from daxd.model.errors import InternalServerError, ProtocolError

log = logging.getLogger("daxd.dax")

#: Pause reading when this many request bytes wait behind a busy request.
READ_HIGH_WATER = 1 << 20
DEFAULT_MAX_CONNECTIONS = 10_000
#: The Python client never reaps idle pooled connections; JS does after 5 s,
#: Go after 30 s. Ten minutes frees abandoned sockets without churning live pools.
DEFAULT_IDLE_TIMEOUT = 600.0


class ListenerState:
    """What every connection of the node's DAX listeners shares: limits, live connections and tasks."""

    def __init__(self, *, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.max_frame_size = max_frame_size
        self.connections: set[DaxProtocol] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.refused = 0


class DaxProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, service: DaxService, state: ListenerState) -> None:
        self.service = service
        self.state = state
        self.codec = DaxConnection(max_frame_size=state.max_frame_size)
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport subclasses
        self.session: Session | None = None
        self._busy = False
        self._closing = False
        self._read_paused = False
        self._write_paused = False
        self._last_active = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        peer_text = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        if len(self.state.connections) >= self.state.max_connections:
            self.state.refused += 1
            log.warning("DAX connection from %s refused: %d connections open (--dax-max-connections)",
                        peer_text, len(self.state.connections))
            self._closing = True
            transport.close()
            return
        local = transport.get_extra_info("sockname")
        self.session = self.service.session(
            (str(local[0]), int(local[1])) if isinstance(local, tuple) else None, peer_text)
        self.state.connections.add(self)
        self._last_active = self._loop.time()
        if self.state.idle_timeout > 0:
            self._idle_timer = self._loop.call_later(self.state.idle_timeout, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self.state.connections.discard(self)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self.codec = DaxConnection(max_frame_size=self.state.max_frame_size)  # drop buffered bytes

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._last_active = self._loop.time()
        self.codec.receive_data(data)
        self._pump()

    def eof_received(self) -> bool | None:
        if not self._closing:
            self.codec.receive_data(b"")
            self._pump()
        return None

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._pump()

    # -- the request loop ---------------------------------------------------

    def _pump(self) -> None:
        """Answer buffered requests in order until one must wait, or the bytes run out."""
        out: list[bytes] = []
        try:
            while not (self._busy or self._closing or self._write_paused):
                event = self.codec.next_event()
                if event is NEED_DATA:
                    break
                if isinstance(event, ConnectionClosed):
                    self.close()
                    break
                assert self.session is not None
                reply = self.service.handle(self.session, event)
                if reply is None:
                    continue
                if isinstance(reply, bytes):
                    out.append(reply)
                    continue
                self._wait_for(reply)
        except ProtocolError as exc:
            self._protocol_error(exc, out)
        except Exception as exc:  # a bug must cost one connection, not the node
            log.exception("DAX connection %s: internal error", self._peer())
            self._protocol_error(ProtocolError(f"internal error: {exc}"), out)
        if out:
            self._send(b"".join(out) if len(out) > 1 else out[0])
        self._flow_control()

    def _wait_for(self, reply: Awaitable[bytes]) -> None:
        self._busy = True
        task = asyncio.ensure_future(self._await(reply))
        self.state.tasks.add(task)
        task.add_done_callback(self.state.tasks.discard)

    async def _await(self, pending: Awaitable[bytes]) -> None:
        try:
            reply = await pending
        except Exception:
            log.exception("DAX connection %s: internal error", self._peer())
            reply = encode_error(InternalServerError("Internal server error"))
        self._busy = False
        if self._closing:
            return
        self._last_active = self._loop.time()
        self._send(reply)
        self._pump()

    def _flow_control(self) -> None:
        if self._closing or self.transport is None:
            return
        backlog = self._busy or self._write_paused
        if backlog and not self._read_paused and self.codec.buffered > READ_HIGH_WATER:
            self._read_paused = True
            self.transport.pause_reading()
        elif self._read_paused and not backlog:
            self._read_paused = False
            self.transport.resume_reading()

    def _send(self, data: bytes) -> None:
        if not self._closing and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _protocol_error(self, exc: ProtocolError, out: list[bytes]) -> None:
        """The stream cannot be trusted any more: answer with an error and close (§2.4)."""
        log.warning("DAX connection %s: closing after a protocol error: %s", self._peer(), exc.message)
        out.append(encode_error(exc))
        self._send(b"".join(out))
        out.clear()
        self.close()

    def close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def _peer(self) -> str:
        return self.session.peer if self.session is not None else "?"

    # -- limits and shutdown ------------------------------------------------

    def _check_idle(self) -> None:
        loop = self._loop
        idle_for = loop.time() - self._last_active
        if self._closing:
            return
        if idle_for >= self.state.idle_timeout and not self._busy:
            log.info("DAX connection %s: closing after %.0f s idle (--dax-idle-timeout)", self._peer(), idle_for)
            self.close()
            return
        self._idle_timer = loop.call_later(max(self.state.idle_timeout - idle_for, 0.05), self._check_idle)

    def close_if_idle(self) -> None:
        if not self._busy:
            self.close()


async def serve(service: DaxService, state: ListenerState, host: str, port: int,
                ssl_context: ssl.SSLContext | None = None, *, reuse_port: bool = False) -> asyncio.Server:
    """Start a DAX listener; the returned server's sockets tell the bound port.

    ``reuse_port``: share the port with the node's other workers (SO_REUSEPORT).
    """
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: DaxProtocol(service, state), host, port, reuse_address=True,
                                    ssl=ssl_context, backlog=1024, reuse_port=reuse_port or None)


class DaxCollector(Collector):
    """Prometheus gauges of the DAX front end, read when scraped (nothing to update per request)."""

    def __init__(self, attr_lists: AttributeListTable, state: ListenerState) -> None:
        self.attr_lists = attr_lists
        self.state = state

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield GaugeMetricFamily("daxd_attribute_lists", "Attribute-name lists the DAX front end remembers "
                                "(bounded by --attribute-lists-max).", value=len(self.attr_lists))
        yield GaugeMetricFamily("daxd_attribute_lists_max", "The --attribute-lists-max bound.",
                                value=self.attr_lists.max_entries)
        yield GaugeMetricFamily("daxd_dax_connections", "Open DAX connections.", value=len(self.state.connections))
        yield CounterMetricFamily("daxd_dax_connections_refused", "DAX connections closed at once because "
                                  "--dax-max-connections were open.", value=self.state.refused)
