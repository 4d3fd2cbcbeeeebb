"""A lean keep-alive HTTP/1.1 client on asyncio (and uvloop), parsed by httptools.

Why not aiohttp or httpx: on the cache-miss path they cost ~200 µs more per
request than this (docs/architecture.md, "Measured costs"); we need one verb, small bodies, and a
connection pool.

Theory of operation: a :class:`ConnectionPool` holds idle :class:`_Connection`
protocols for one (host, port, tls). ``request`` takes a permit from a
semaphore of ``max_connections`` (so callers past the limit wait), reuses an
idle connection or opens one, writes the request and awaits the response
future. A connection carries one request at a time. It goes back to the idle
list only after a complete response that allows keep-alive; a connection that
errored, timed out, was closed by the peer or answered ``Connection: close``
is dropped. Every wait is bounded by the request's ``timeout``.

Errors: :class:`UpstreamConnectionError` (a ``ConnectionError``) for connect,
reset, EOF and unparsable responses; ``TimeoutError`` on timeout. No other
exception leaves this module from ``request``.
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections import deque

import httptools


class UpstreamConnectionError(ConnectionError):
    """The connection failed: refused, reset, closed early, or the response was garbage."""


class HTTPResponse:
    """A complete response. ``headers`` decodes the raw header lines only when asked
    (names lower-case, repeats joined by ``,``); the lines are only kept by a pool
    made with ``keep_headers`` (the cache-miss path never reads them)."""

    __slots__ = ("body", "raw_headers", "status")

    def __init__(self, status: int, raw_headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.raw_headers = raw_headers
        self.body = body

    @property
    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, value in self.raw_headers:
            key, text = name.decode("latin-1").lower(), value.decode("latin-1")
            old = headers.get(key)
            headers[key] = text if old is None else f"{old},{text}"
        return headers


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection: writes requests, parses responses with httptools."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[HTTPResponse] | None = None
        self.closed = False
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # asyncio.Protocol -------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport to write requests on."""
        # uvloop transports are not subclasses of asyncio.Transport; do not assert the type
        self.transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()  # once: on Python 3.11 each call costs a getpid() syscall

    def data_received(self, data: bytes) -> None:
        """Feed the parser; a parse error fails the request and drops the connection."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamConnectionError(f"malformed HTTP response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail a pending request: the peer closed or reset before answering."""
        self.closed = True
        self._fail(UpstreamConnectionError(f"connection closed before the response was complete: {exc}"))

    # httptools callbacks ----------------------------------------------------
    def on_message_begin(self) -> None:
        """Reset per-response state."""
        self._headers = []
        self._body = []


    def on_body(self, body: bytes) -> None:
        """Collect a body chunk (Content-Length or de-chunked)."""
        self._body.append(body)

    def on_message_complete(self) -> None:
        """Resolve the pending request with the finished response."""
        if not self.parser.should_keep_alive():
            self.closed = True
        status = self.parser.get_status_code()
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        waiter, self.waiter = self.waiter, None
        self._stop_timer()
        if waiter is not None and not waiter.done():
            waiter.set_result(HTTPResponse(status, self._headers, body))
        elif waiter is None:
            self.closed = True  # an unsolicited response: the stream is out of step

    # helpers ----------------------------------------------------------------
    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        self._stop_timer()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        self._fail(TimeoutError("no complete response in time"))
        self.close()

    def send(self, data: bytes, body: bytes, deadline: float) -> asyncio.Future[HTTPResponse]:
        """Write a request; return the future of its response, failed with TimeoutError at ``deadline``.

        One timer handle per request: cheaper on the miss path than ``asyncio.timeout``.
        """
        assert self.transport is not None and self.waiter is None and self._loop is not None
        loop = self._loop
        self.waiter = loop.create_future()
        self._timer = loop.call_at(deadline, self._timed_out)
        self.transport.write(data + body if len(body) < 16384 else data)
        if len(body) >= 16384:
            self.transport.write(body)
        return self.waiter

    def close(self) -> None:
        """Drop the connection at once (no graceful TLS shutdown needed for a broken one)."""
        self.closed = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.abort()


class _HeaderedConnection(_Connection):
    """A connection that also keeps the response headers (the cache never reads them: a
    callback per header line costs on every miss, so only a pool that asks gets this)."""

    def on_header(self, name: bytes, value: bytes) -> None:
        """Collect a header line as it came."""
        self._headers.append((name, value))


class ConnectionPool:
    """Keep-alive connections to one origin, at most ``max_connections`` at a time.

    Not thread-safe: use it from one event loop.
    """

    def __init__(self, host: str, port: int, *, ssl: _ssl.SSLContext | None = None,
                 max_connections: int = 64, connect_timeout: float = 3.0, keep_headers: bool = False) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        self.host = host
        self.port = port
        self.ssl = ssl
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self._protocol = _HeaderedConnection if keep_headers else _Connection
        default_port = 443 if ssl is not None else 80
        #: The Host header value (and the host SigV4 signs).
        self.host_header = host if port == default_port else f"{host}:{port}"
        self._head = f"Host: {self.host_header}\r\n"
        self._idle: list[_Connection] = []
        #: Requests holding a connection; past ``max_connections`` callers queue in ``_waiters``
        #: (a counter, not an asyncio.Semaphore: three coroutines fewer per request).
        self._in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        #: Connections opened so far (tests check keep-alive with it).
        self.connections_opened = 0
        self._closing = False

    async def request(self, method: str, path: str, headers: str, body: bytes, timeout: float) -> HTTPResponse:
        """Send one request and read its whole response, within ``timeout`` seconds.

        ``headers`` are the request's header lines, each ending in CRLF (``Host``
        and ``Content-Length`` are added here).

        Raises:
            UpstreamConnectionError: connect failed, reset, EOF or a malformed response.
            TimeoutError: no complete response (or no free connection) in time.
        """
        if self._closing:
            raise UpstreamConnectionError("connection pool is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._in_use >= self.max_connections:  # waiting for a connection counts against the timeout
            async with asyncio.timeout_at(deadline):
                await self._wait_for_permit()
        else:
            self._in_use += 1
        try:
            conn = self._take_idle()
            if conn is None:
                async with asyncio.timeout_at(deadline):
                    conn = await self._connect()
            try:
                response = await conn.send(self._encode(method, path, headers, len(body)), body, deadline)
            except BaseException:
                conn.close()
                raise
            self._release(conn)
            return response
        finally:
            self._give_back()

    async def _wait_for_permit(self) -> None:
        permit = asyncio.get_running_loop().create_future()
        self._waiters.append(permit)
        try:
            await permit  # resolved by _give_back, which hands its permit over
        except BaseException:
            if permit.done() and not permit.cancelled():
                self._give_back()  # handed a permit while being cancelled: pass it on
            elif permit in self._waiters:
                self._waiters.remove(permit)
            raise

    def _give_back(self) -> None:
        """Release a permit: to the longest waiter if there is one, else to the pool."""
        while self._waiters:
            permit = self._waiters.popleft()
            if not permit.done():
                permit.set_result(None)
                return
        self._in_use -= 1

    def ready(self) -> bool:
        """Whether :meth:`try_send` would likely send at once (an idle connection, a free permit)."""
        return bool(self._idle) and self._in_use < self.max_connections and not self._closing

    def try_send(self, method: str, path: str, headers: str, body: bytes,
                 timeout: float) -> asyncio.Future[HTTPResponse] | None:
        """:meth:`request` started now, without a coroutine, on an idle connection; None if none is free.

        The future resolves (or fails) as :meth:`request` would return (or
        raise); the connection and its permit go back when it is done. Lets a
        cache miss reach the upstream before any task is set up for it.
        """
        if self._closing or self._in_use >= self.max_connections:
            return None
        conn = self._take_idle()
        if conn is None or conn._loop is None:
            return None
        self._in_use += 1
        waiter = conn.send(self._encode(method, path, headers, len(body)), body, conn._loop.time() + timeout)
        waiter.add_done_callback(lambda done: self._sent(conn, done))
        return waiter

    def _sent(self, conn: _Connection, done: asyncio.Future[HTTPResponse]) -> None:
        if done.cancelled() or done.exception() is not None:
            conn.close()
        else:
            self._release(conn)
        self._give_back()

    def _encode(self, method: str, path: str, headers: str, length: int) -> bytes:
        return f"{method} {path} HTTP/1.1\r\n{self._head}{headers}Content-Length: {length}\r\n\r\n".encode()

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    def _release(self, conn: _Connection) -> None:
        if conn.closed or self._closing:
            conn.close()
        else:
            self._idle.append(conn)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        server_hostname = self.host if self.ssl is not None else None
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    self._protocol, self.host, self.port, ssl=self.ssl, server_hostname=server_hostname)
        except OSError as exc:  # refused, unreachable, DNS, TLS handshake (SSLError)
            raise UpstreamConnectionError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        self.connections_opened += 1
        return conn

    async def close(self) -> None:
        """Close idle connections; requests in flight close theirs when they finish."""
        self._closing = True
        idle, self._idle = self._idle, []
        for conn in idle:
            if conn.transport is not None:
                conn.transport.close()
        await asyncio.sleep(0)
