"""The asyncio adaptor of the DAX front end: bytes in, replies out, in order.

Theory of operation: each connection owns a sans-IO :class:`DaxConnection`.
``data_received`` feeds it and pulls events while the connection is neither
busy nor write-paused; each event goes to :meth:`DaxService.handle`, which
answers at once (hits and control methods) or with an awaitable (anything
that goes upstream). Replies made at once are written in batches of
:data:`WRITE_BATCH` bytes, and after each write the connection checks the
transport: past the listener's high-water mark of unsent bytes it stops
answering and reading until the peer has read (see
:mod:`daxd.frontends.listener`), so a client that pipelines without reading
costs a bounded amount of memory however much it sends. While an awaitable
is pending the connection is *busy*: later requests stay buffered in the
codec, so pipelined requests are answered strictly in order, and reading
pauses once the buffer passes :data:`READ_HIGH_WATER`. A client that
disconnects mid-request leaves its task to finish quietly (a write must
still invalidate the cache) and the reply is dropped.

Bad bytes (wrong magic, garbage, oversized lengths, unknown method ids) make
the codec raise :class:`ProtocolError`: the client gets one error reply, the
connection is closed (after a lingering read, so the client reads the error
rather than a reset) and one line is logged; nobody else notices. A request
over the frame limit is answered with ``RequestEntityTooLarge``.

Limits come from the listener base: the connection limit (refused connections
get a ``ServiceUnavailable`` error reply), ``idle_timeout`` (the clients
reconnect transparently) and ``body_timeout`` for a request once begun.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from daxd.frontends.dax.attrs import AttributeListTable
from daxd.frontends.dax.cbor import FrameTooLarge
from daxd.frontends.dax.codec import DaxConnection
from daxd.frontends.dax.errors import encode_error
from daxd.frontends.dax.events import NEED_DATA, ConnectionClosed
from daxd.frontends.dax.service import DaxService, Session
from daxd.frontends.listener import ListenerProtocol, ListenerState
from daxd.model.errors import InternalServerError, ProtocolError, RequestTooLarge, ServiceUnavailable

log = logging.getLogger("daxd.dax")

#: Pause reading when this many request bytes wait behind a busy request.
READ_HIGH_WATER = 1 << 20
#: Replies made at once are joined into writes of about this size.
WRITE_BATCH = 64 * 1024


class DaxProtocol(ListenerProtocol):
    """One client connection."""

    def __init__(self, service: DaxService, state: ListenerState) -> None:
        super().__init__(state)
        self.service = service
        self.codec = DaxConnection(max_frame_size=state.limits.max_request_size)
        self.session: Session | None = None
        self._busy = False
        self._draining = False
        self._frame_started: float | None = None

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.closing:
            return
        local = transport.get_extra_info("sockname")
        self.session = self.service.session(
            (str(local[0]), int(local[1])) if isinstance(local, tuple) else None, self.peer)

    def refusal(self) -> bytes:
        return encode_error(ServiceUnavailable("Too many connections to this DAX listener"))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.codec = DaxConnection(max_frame_size=self.state.limits.max_request_size)  # drop buffered bytes

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.codec.receive_data(data)
        self._pump()

    def eof_received(self) -> bool | None:
        if not self.closing:
            self.codec.receive_data(b"")
            self._pump()
        return None

    def on_writable(self) -> None:
        self._pump()

    def drain(self) -> None:
        self._draining = True
        if not self._busy and not self.codec.buffered:
            self.close()

    # -- the request loop ---------------------------------------------------

    def _pump(self) -> None:
        """Answer buffered requests in order until one must wait, the peer must read, or the bytes run out."""
        out: list[bytes] = []
        size = 0
        try:
            while not (self._busy or self.closing or self.write_paused):
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
                    size += len(reply)
                    if size >= WRITE_BATCH:
                        self._send(b"".join(out))
                        out.clear()
                        size = 0
                    continue
                self._wait_for(reply)
        except FrameTooLarge as exc:
            self._refuse("frame_size", RequestTooLarge(f"Request size exceeds the limit of "
                                                       f"{self.codec.max_frame_size} bytes ({exc.message})"), out)
            return
        except ProtocolError as exc:
            self._refuse("protocol_error", exc, out)
            return
        except Exception as exc:  # a bug must cost one connection, not the node
            log.exception("DAX connection %s: internal error", self.peer)
            self._refuse("protocol_error", ProtocolError(f"internal error: {exc}"), out)
            return
        if out:
            self._send(b"".join(out) if len(out) > 1 else out[0])
        self._flow_control()

    def _wait_for(self, reply: Awaitable[bytes]) -> None:
        self._busy = True
        self.state.track(asyncio.ensure_future(self._await(reply)))

    async def _await(self, pending: Awaitable[bytes]) -> None:
        try:
            reply = await pending
        except Exception:
            log.exception("DAX connection %s: internal error", self.peer)
            reply = encode_error(InternalServerError("Internal server error"))
        self._busy = False
        if self.closing:
            return
        self._send(reply)
        self._pump()

    def _flow_control(self) -> None:
        """Pause reading while requests wait (busy or unread replies), and keep the right deadline."""
        if self.closing:
            return
        if self._draining and not self._busy:
            self.close()
            return
        buffered = self.codec.buffered
        if self.write_paused:
            self.pause_reading()
            return  # the send deadline set by pause_writing stands
        if self._busy:
            if buffered > READ_HIGH_WATER:
                self.pause_reading()
            self.clear_deadline()
            return
        if self.read_paused:
            self.resume_reading()
        if buffered:  # a request has begun: it must be complete within body_timeout
            if self._frame_started is None:
                self._frame_started = self.loop.time()
            if self.limits.body_timeout > 0:
                self.set_deadline_at(self._frame_started + self.limits.body_timeout, "body_timeout")
        else:
            self._frame_started = None
            self.touch_idle()

    def _send(self, data: bytes) -> None:
        if not self.closing and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _refuse(self, reason: str, exc: ProtocolError | RequestTooLarge, out: list[bytes]) -> None:
        """The stream cannot be trusted any more: answer with an error and close."""
        out.append(encode_error(exc))
        self.refuse(reason, f"closing after a protocol error: {exc.message}", b"".join(out))


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

    def __init__(self, attr_lists: AttributeListTable) -> None:
        self.attr_lists = attr_lists

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("daxd_attribute_lists", "Attribute-name lists the DAX front end remembers "
                                "(bounded by --attribute-lists-max).", value=len(self.attr_lists))
        yield GaugeMetricFamily("daxd_attribute_lists_max", "The --attribute-lists-max bound.",
                                value=self.attr_lists.max_entries)
