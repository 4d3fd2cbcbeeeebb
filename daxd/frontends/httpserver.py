"""A lean HTTP/1.1 server: httptools parsing inside an asyncio.Protocol.

Why not a framework: a cached GetItem must cost a few microseconds of CPU,
and aiohttp spends ~45 µs per request on this machine (docs/architecture.md, "Measured costs").
This adaptor only pumps bytes: it parses requests, hands each to an
application callable and writes the answer. An application may answer at
once (a cache hit: no task is created) or return an awaitable (a miss).

Requests on one connection are answered in order, one at a time; requests
that arrive meanwhile wait in a short queue, and reading pauses when it is
full. Bodies over ``max_body`` are refused with 413 and the connection closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httptools

log = logging.getLogger("daxd.http")

#: DynamoDB's own request limit is 16 MB; anything larger is refused unread.
DEFAULT_MAX_BODY = 16 * 1024 * 1024
_PIPELINE_HIGH_WATER = 16
_REASONS = {200: b"OK", 400: b"Bad Request", 403: b"Forbidden", 404: b"Not Found", 413: b"Payload Too Large",
            500: b"Internal Server Error", 503: b"Service Unavailable"}


class HttpRequest:
    """One parsed request. Header names are lower-cased bytes in ``raw_headers``;
    ``headers`` decodes them to text only when someone asks (SigV4 checks do,
    the cache-hit path does not)."""

    __slots__ = ("_headers", "body", "method", "path", "raw_headers")

    def __init__(self, method: str, path: str, raw_headers: dict[bytes, bytes], body: bytes) -> None:
        self.method = method
        self.path = path
        self.raw_headers = raw_headers
        self.body = body
        self._headers: dict[str, str] | None = None

    @property
    def headers(self) -> dict[str, str]:
        if self._headers is None:
            self._headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in self.raw_headers.items()}
        return self._headers


@dataclass(slots=True)
class HttpResponse:
    status: int
    body: bytes
    content_type: bytes = b"application/x-amz-json-1.0"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    close: bool = False

    def encode(self) -> bytes:
        if self.status == 200 and not self.close and len(self.headers) == 1:
            name, value = self.headers[0]
            return _OK_HEAD % (self.content_type, len(self.body), name, value) + self.body
        head = [b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                % (self.status, _REASONS.get(self.status, b"Unknown"), self.content_type, len(self.body))]
        head.extend(b"%s: %s\r\n" % pair for pair in self.headers)
        if self.close:
            head.append(b"Connection: close\r\n")
        head.append(b"\r\n")
        return b"".join(head) + self.body


_OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s: %s\r\n\r\n"

Application = Callable[[HttpRequest], "HttpResponse | Awaitable[HttpResponse]"]


class ServerState:
    """What every connection of one listener shares: for limits and graceful shutdown."""

    def __init__(self) -> None:
        self.connections: set[HttpProtocol] = set()
        self.tasks: set[asyncio.Task[Any]] = set()


class HttpProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, app: Application, state: ServerState, *, max_body: int = DEFAULT_MAX_BODY,
                 error_response: Callable[[int, str], HttpResponse] | None = None) -> None:
        self.app = app
        self.state = state
        self.max_body = max_body
        self.error_response = error_response or _plain_error
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        # Kept: on Python 3.11 every get_running_loop() (ensure_future's too) costs a getpid() syscall.
        self._loop = asyncio.get_running_loop()
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._body_size = 0
        self._queue: deque[HttpRequest] = deque()
        self._busy = False
        self._closing = False
        self._paused = False

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses
        self.state.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        self._closing = True
        self._queue.clear()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "Protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            if not self._closing:
                self._fail(400, f"Malformed HTTP request: {exc}")

    # -- httptools callbacks ------------------------------------------------

    def on_message_begin(self) -> None:
        self._url, self._headers, self._body, self._body_size = b"", {}, [], 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        length = self._headers.get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.max_body:
            self._fail(413, f"Request body of {int(length)} bytes is over the limit of {self.max_body}")

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self.max_body:
            self._fail(413, f"Request body is over the limit of {self.max_body} bytes")
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._closing:
            return
        method = self.parser.get_method().decode("ascii", "replace")
        request = HttpRequest(method, self._url.decode("latin-1"), self._headers, b"".join(self._body))
        self._queue.append(request)
        if len(self._queue) >= _PIPELINE_HIGH_WATER and self.transport and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        if not self._busy:
            self._drain()

    # -- answering ----------------------------------------------------------

    def _drain(self) -> None:
        """Answer queued requests in order; stop at the first that must wait."""
        while self._queue and not self._closing:
            request = self._queue.popleft()
            try:
                result = self.app(request)
            except Exception:
                log.exception("unhandled error answering %s %s", request.method, request.path)
                result = self.error_response(500, "Internal server error")
            if isinstance(result, HttpResponse):
                self._write(result)
                continue
            self._busy = True
            task = self._loop.create_task(self._await(result))
            self.state.tasks.add(task)
            task.add_done_callback(self.state.tasks.discard)
            return
        if self._paused and self.transport and not self._closing:
            self._paused = False
            self.transport.resume_reading()

    async def _await(self, pending: Awaitable[HttpResponse]) -> None:
        try:
            response = await pending
        except Exception:
            log.exception("unhandled error answering a request")
            response = self.error_response(500, "Internal server error")
        self._busy = False
        self._write(response)
        self._drain()

    def _write(self, response: HttpResponse) -> None:
        if self.transport is None or self._closing:
            return
        self.transport.write(response.encode())
        if response.close:
            self._closing = True
            self.transport.close()

    def _fail(self, status: int, message: str) -> None:
        """Answer an unparseable or oversized request and close: the stream cannot be trusted."""
        log.info("refusing request: %s", message)
        response = self.error_response(status, message)
        response.close = True
        self._queue.clear()
        self._write(response)

    def close_if_idle(self) -> None:
        if not self._busy and not self._queue:
            self.close()

    def close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()


def _plain_error(status: int, message: str) -> HttpResponse:
    return HttpResponse(status, message.encode(), content_type=b"text/plain")


async def serve(app: Application, host: str, port: int, state: ServerState, **kwargs: Any) -> asyncio.Server:
    """Start a listener; the returned server's sockets tell the bound port."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: HttpProtocol(app, state, **kwargs), host, port, reuse_address=True)
