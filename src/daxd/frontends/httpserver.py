"""A lean HTTP/1.1 server: httptools parsing inside a :class:`ListenerProtocol`.

Why not a framework: a cached GetItem must cost a few microseconds of CPU,
and aiohttp spends ~45 µs per request on this machine (docs/architecture.md, "Measured costs").
This adaptor only pumps bytes: it parses requests, hands each to an
application callable and writes the answer. An application may answer at
once (a cache hit: no task is created) or return an awaitable (a miss).

What HTTP/1.1 clients rely on, and where it is handled here:

* **Keep-alive.** A request that asks to close (``Connection: close``, or
  HTTP/1.0 without ``Connection: keep-alive``) is answered with
  ``Connection: close`` and the connection is closed after the answer.
  During a graceful drain every answer closes its connection.
* **Pipelining in order, bounded.** Requests on one connection are answered
  one at a time, in order. At most :data:`PIPELINE_MAX` parsed requests wait;
  beyond that unparsed bytes are kept as they came (at most one read) and
  reading pauses. Replies are written as they are made; while the transport
  holds more than the listener's high-water mark, nothing more is answered or
  read (see :mod:`daxd.frontends.listener`).
* ``Expect: 100-continue`` gets ``100 Continue`` unless the body is already
  refused; chunked request bodies are decoded by the parser; ``gzip`` and
  ``deflate`` bodies are inflated with the result bounded by the body limit.
* ``HEAD`` is answered as ``GET`` without the body; every answer has ``Date``.
* Limits: header count and bytes (431), body bytes (413), time to receive the
  headers and the body (408), each answered with the application's error
  shape and then the connection closed; refusals are counted by reason.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import httptools

from daxd.frontends.listener import BUDGETED, ListenerProtocol, ListenerState

log = logging.getLogger("daxd.http")

#: Parsed requests that may wait behind the one being answered.
PIPELINE_MAX = 16
#: Bytes fed to the parser at a time, so that parsing can stop at :data:`PIPELINE_MAX`.
FEED_SLICE = 16 * 1024
_REASONS = {100: b"Continue", 200: b"OK", 400: b"Bad Request", 403: b"Forbidden", 404: b"Not Found",
            408: b"Request Timeout", 413: b"Payload Too Large", 415: b"Unsupported Media Type",
            431: b"Request Header Fields Too Large", 500: b"Internal Server Error", 503: b"Service Unavailable"}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_METHODS = {m.encode(): m for m in ("GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS")}
#: Headers a request may not repeat (a second Content-Length is a request-smuggling attempt).
_SINGLE_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"host"})
#: Content-Encoding -> zlib window bits (gzip; zlib-wrapped deflate, raw deflate tried when that fails).
_ENCODINGS = {b"gzip": 16 + zlib.MAX_WBITS, b"x-gzip": 16 + zlib.MAX_WBITS, b"deflate": zlib.MAX_WBITS}


class HttpRequest:
    """One parsed request. Header names are lower-cased bytes in ``raw_headers``;
    ``headers`` decodes them to text only when someone asks (SigV4 checks do,
    the cache-hit path does not)."""

    __slots__ = ("_headers", "body", "keep_alive", "method", "path", "raw_headers", "reserved", "turn")

    def __init__(self, method: str, path: str, raw_headers: dict[bytes, bytes], body: bytes,
                 *, keep_alive: bool = True) -> None:
        self.method = method
        self.path = path
        self.raw_headers = raw_headers
        self.body = body
        self.keep_alive = keep_alive
        #: Bytes of the node's request budget this request holds until it is answered.
        self.reserved = 0
        #: A large request's turn to be answered has come (see :class:`RequestBudget`).
        self.turn = False
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

    def encode(self, *, date: bytes, close: bool = False, keep_alive: bool = False, head: bool = False) -> bytes:
        """The response's bytes; ``close``/``keep_alive`` add that Connection header, ``head`` drops the body."""
        body = b"" if head else self.body
        if self.status == 200 and not close and not keep_alive and len(self.headers) == 1:
            name, value = self.headers[0]
            return _OK_HEAD % (self.content_type, len(self.body), date, name, value) + body
        head_lines = [b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nDate: %s\r\n"
                      % (self.status, _REASONS.get(self.status, b"Unknown"), self.content_type, len(self.body),
                         date)]
        head_lines.extend(b"%s: %s\r\n" % pair for pair in self.headers)
        if close:
            head_lines.append(b"Connection: close\r\n")
        elif keep_alive:
            head_lines.append(b"Connection: keep-alive\r\n")
        head_lines.append(b"\r\n")
        return b"".join(head_lines) + body


_OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\nDate: %s\r\n%s: %s\r\n\r\n"

Application = Callable[[HttpRequest], "HttpResponse | Awaitable[HttpResponse]"]


_date = (-1, b"")


def http_date() -> bytes:
    """The ``Date`` header's value, formatted once a second."""
    global _date
    now = int(time.time())
    if now != _date[0]:
        _date = (now, formatdate(now, usegmt=True).encode())
    return _date[1]


class RequestRefused(Exception):
    """A request broke a limit or cannot be decoded: answered with ``status`` and the connection closed."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


def inflate(body: bytes, encoding: bytes, limit: int) -> bytes:
    """``body`` decoded from ``Content-Encoding: encoding``, never more than ``limit`` bytes.

    Raises:
        RequestRefused: an unknown encoding (415), a body inflating past the limit (413),
            a truncated or corrupt stream (400).
    """
    wbits = _ENCODINGS.get(encoding)
    if wbits is None:
        raise RequestRefused(415, "content_encoding", f"Content-Encoding {encoding.decode('latin-1')!r} "
                             "is not supported (gzip, deflate and identity are)")
    if not body:
        return b""
    for bits in (wbits, -zlib.MAX_WBITS) if encoding == b"deflate" else (wbits,):
        inflater = zlib.decompressobj(bits)
        try:
            data = inflater.decompress(body, limit + 1)
        except zlib.error:
            continue
        if len(data) > limit:
            raise RequestRefused(413, "body_size", f"Request body inflates past the limit of {limit} bytes")
        if not inflater.eof or inflater.unused_data or inflater.unconsumed_tail:
            raise RequestRefused(400, "bad_request", f"Request body is not a complete {encoding.decode()} stream")
        return data
    raise RequestRefused(400, "bad_request", f"Request body is not valid {encoding.decode()} data")


class HttpProtocol(ListenerProtocol):
    """One client connection."""

    def __init__(self, app: Application, state: ListenerState, *,
                 error_response: Callable[[int, str], HttpResponse] | None = None) -> None:
        super().__init__(state)
        self.app = app
        self.max_body = state.limits.max_request_size
        #: Bodies up to this size need no check when their headers arrive.
        self._plain_size = min(self.max_body, BUDGETED)
        self._max_header_count = state.limits.max_header_count
        self._max_header_bytes = state.limits.max_header_bytes
        self.error_response = error_response or _plain_error
        self.parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._header_bytes = 0
        self._repeats = 0
        self._body: bytes | bytearray | None = None
        self._in_head = False
        self._in_body = False
        self._head_fed = 0
        #: Bytes of the data being fed (a head within it is at most that long).
        self._feeding = 0
        self._message_started = 0.0
        self._queue: deque[HttpRequest] = deque()
        self._pending = bytearray()
        self._busy = False
        self._draining = False
        self._reserved = 0
        self._awaiting_budget = False

    # -- asyncio.Protocol ---------------------------------------------------

    def refusal(self) -> bytes:
        return self.error_response(503, "Too many connections to this listener").encode(
            date=http_date(), close=True)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._drop_queue()
        self._pending = bytearray()
        if self._awaiting_budget:
            self.state.budget.cancel(self._budget_granted)
        elif self._reserved:
            self.state.budget.release(self._reserved)
        self._reserved = 0

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return  # a refused connection's remaining input is discarded
        if self._pending or len(data) > FEED_SLICE or self._queue or self._busy:
            self._pending += data
        else:
            self._feed(data)
        self._advance()

    def on_writable(self) -> None:
        self._advance()

    def drain(self) -> None:
        self._draining = True
        if not (self._busy or self._queue or self._pending or self._in_head or self._in_body):
            self.close()

    def timed_out(self, reason: str) -> None:
        if reason in ("header_timeout", "body_timeout") and not self.write_paused:
            what = "headers" if reason == "header_timeout" else "body"
            self._refuse(RequestRefused(408, reason, f"Request {what} not received in time"))
            return
        super().timed_out(reason)

    # -- httptools callbacks ------------------------------------------------

    # Called for every request: kept to the few operations each needs. The header
    # limits are checked once the head is complete; until then the bytes fed to an
    # unfinished head are bounded in _feed, so a head that never ends is refused too.

    def on_message_begin(self) -> None:
        self._url, self._headers, self._body = b"", {}, None
        self._repeats = self._head_fed = self._header_bytes = 0
        self._in_head = True
        self._message_started = 0.0  # set when the head is found incomplete (see _update_deadline)

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in self._headers:
            self._repeated(name)
        self._headers[name] = value

    def _repeated(self, name: bytes) -> None:
        if name in _SINGLE_HEADERS:
            raise RequestRefused(400, "bad_request", f"Repeated {name.decode('latin-1')} header")
        self._repeats += 1
        self._header_bytes += len(name) + len(self._headers[name])  # the value about to be replaced

    def _check_head(self) -> None:
        headers = self._headers
        count = len(headers) + self._repeats
        if count > self._max_header_count:
            raise RequestRefused(431, "header_count", f"More than {self._max_header_count} request headers")
        if not (self._head_fed or self._repeats) and self._feeding <= self._max_header_bytes:
            return  # the whole head came in one feed no larger than the limit
        size = self._header_bytes + sum(map(len, headers)) + sum(map(len, headers.values()))
        if size + len(self._url) + 4 * count > self._max_header_bytes:
            raise RequestRefused(431, "header_size", f"Request headers are over {self._max_header_bytes} bytes")

    def on_headers_complete(self) -> None:
        self._in_head = False
        headers = self._headers
        self._check_head()
        length = headers.get(b"content-length", b"0")
        size = int(length) if length.isdigit() else 0
        if size > self._plain_size or b"content-encoding" in headers:
            self._check_body_head(size)
        if size or b"transfer-encoding" in headers:
            self._in_body = True
            self._message_started = 0.0
            if b"expect" in headers and headers[b"expect"].lower() == b"100-continue" and not (
                    self._busy or self._queue):
                self.transport.write(_CONTINUE)

    def _check_body_head(self, size: int) -> None:
        """A body over the limit (413) or in an unknown encoding (415); a large one waits for the budget."""
        if size > self.max_body:
            raise RequestRefused(413, "body_size", f"Request body of {size} bytes is over the limit "
                                 f"of {self.max_body}")
        encoding = self._headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding not in _ENCODINGS and encoding != b"identity":
            inflate(b"", encoding, 0)  # raises the 415
        if size > BUDGETED:
            self._reserved = size
            self._awaiting_budget = not self.state.budget.reserve(size, self._budget_granted)

    def on_body(self, body: bytes) -> None:
        held = self._body
        if len(body) + (0 if held is None else len(held)) > self.max_body:
            raise RequestRefused(413, "body_size", f"Request body is over the limit of {self.max_body} bytes")
        if held is None:
            self._body = body  # the common case: the whole body in one piece
        elif isinstance(held, bytes):
            self._body = bytearray(held) + body  # one growing buffer: a large body is one allocation
        else:
            held += body

    def on_message_complete(self) -> None:
        self._in_head = self._in_body = False
        body = self._body
        if body is None:
            body = b""
        else:
            self._body = None
            if not isinstance(body, bytes):
                body = bytes(body)
        headers = self._headers
        if b"content-encoding" in headers:
            encoding = headers[b"content-encoding"].strip().lower()
            if encoding != b"identity":
                body = inflate(body, encoding, self.max_body)
        parser = self.parser
        method = parser.get_method()
        request = HttpRequest(_METHODS.get(method) or method.decode("ascii", "replace"),
                              self._url.decode("latin-1"), headers, body, keep_alive=parser.should_keep_alive())
        if self._reserved:
            request.reserved, self._reserved = self._reserved, 0
        if self._busy or self._queue or self.write_paused or self.closing:
            self._queue.append(request)
        else:
            self._answer(request)  # the common case: answered as soon as it is parsed, in order

    def _budget_granted(self) -> None:
        self._awaiting_budget = False
        if not self.closing:
            self._message_started = self.loop.time()  # the body's time starts now
            self._advance()

    def _drop_queue(self) -> None:
        for request in self._queue:
            self._release(request)
        self._queue.clear()

    def _release(self, request: HttpRequest) -> None:
        if request.reserved:
            self.state.budget.release(request.reserved)
            request.reserved = 0

    # -- parsing and answering ----------------------------------------------

    def _feed(self, data: bytes) -> None:
        self._feeding = len(data)
        if self._in_head:
            self._head_fed += len(data)  # bytes of a head that the callbacks have not seen yet (a long line)
            if self._head_fed > self.limits.max_header_bytes + FEED_SLICE:
                self._refuse(RequestRefused(431, "header_size", "Request headers are over "
                                            f"{self.limits.max_header_bytes} bytes"))
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, RequestRefused):
                self._refuse(cause)
            else:  # pragma: no cover - a bug in a callback
                log.error("HTTP connection %s: parser callback failed: %r", self.peer, cause)
                self._refuse(RequestRefused(400, "bad_request", "Malformed HTTP request"))
        except httptools.HttpParserUpgrade:
            self._refuse(RequestRefused(400, "bad_request", "Protocol upgrades are not supported"))
        except httptools.HttpParserError as exc:
            self._refuse(RequestRefused(400, "bad_request", f"Malformed HTTP request: {exc}"))

    def _advance(self) -> None:
        """Answer queued requests and parse more, until a request must wait or the peer must read."""
        if not (self._queue or self._pending or self._busy or self._in_head or self._in_body or self.read_paused
                or self.write_paused or self.closing or self._awaiting_budget):
            self.touch_idle()  # the common case, once per request: all that the rest would do here
            return
        while not self.closing and not self.write_paused:
            if self._queue and not self._busy:
                self._answer(self._queue.popleft())
            elif self._pending and len(self._queue) < PIPELINE_MAX and not self._awaiting_budget:
                chunk = bytes(self._pending[:FEED_SLICE])
                del self._pending[:FEED_SLICE]
                self._feed(chunk)
            else:
                break
        if self.closing:
            return
        if self.write_paused or self._pending or len(self._queue) >= PIPELINE_MAX or self._awaiting_budget:
            self.pause_reading()
        elif self.read_paused:
            self.resume_reading()
        self._update_deadline()

    def _update_deadline(self) -> None:
        limits = self.limits
        if self.write_paused:
            return  # the send deadline set by pause_writing stands
        if self._busy or self._queue or self._pending or self._awaiting_budget:
            self.clear_deadline()
        elif self._in_head or self._in_body:
            if not self._message_started:
                self._message_started = self.loop.time()
            timeout, reason = ((limits.header_timeout, "header_timeout") if self._in_head
                               else (limits.body_timeout, "body_timeout"))
            if timeout > 0:
                self.set_deadline_at(self._message_started + timeout, reason)
        else:
            self.touch_idle()

    def _answer(self, request: HttpRequest) -> None:
        if request.reserved and not request.turn:  # a large body: decoded in its turn (see RequestBudget)
            self._busy = True
            self.state.budget.take_turn(lambda: self._on_turn(request))
            return
        try:
            result = self.app(request)
        except Exception:
            log.exception("unhandled error answering %s %s", request.method, request.path)
            result = self.error_response(500, "Internal server error")
        if isinstance(result, HttpResponse):
            self._respond(request, result)
            return
        self._busy = True
        self.state.track(self.loop.create_task(self._await(request, result)))

    def _on_turn(self, request: HttpRequest) -> None:
        self._busy = False
        if self.closing:
            self._release(request)
            return
        request.turn = True
        self._answer(request)
        self._advance()

    async def _await(self, request: HttpRequest, pending: Awaitable[HttpResponse]) -> None:
        try:
            response = await pending
        except Exception:
            log.exception("unhandled error answering a request")
            response = self.error_response(500, "Internal server error")
        self._busy = False
        self._respond(request, response)
        self._advance()

    def _respond(self, request: HttpRequest, response: HttpResponse) -> None:
        if request.reserved:
            self._release(request)
        if self.closing or self.transport is None:
            return
        close = response.close or not request.keep_alive or self._draining or self.state.draining
        asked = request.raw_headers.get(b"connection")  # HTTP/1.0 clients ask for keep-alive: say it is granted
        if not close and asked is None and request.method != "HEAD":
            self.transport.write(response.encode(date=http_date()))  # the common case
            return
        data = response.encode(date=http_date(), close=close, head=request.method == "HEAD",
                               keep_alive=not close and asked is not None and asked.lower() == b"keep-alive")
        if close:
            self._drop_queue()
            self._pending = bytearray()
            self.linger(data)
        else:
            self.transport.write(data)

    def _refuse(self, refused: RequestRefused) -> None:
        """Answer an unparseable, oversized or late request and close: the stream cannot be trusted."""
        response = self.error_response(refused.status, refused.message)
        self._drop_queue()
        self._pending = bytearray()
        self.refuse(refused.reason, f"refusing request: {refused.message}",
                    response.encode(date=http_date(), close=True))


def _plain_error(status: int, message: str) -> HttpResponse:
    return HttpResponse(status, message.encode(), content_type=b"text/plain")


async def serve(app: Application, host: str, port: int, state: ListenerState,
                ssl_context: ssl.SSLContext | None = None, *, reuse_port: bool = False,
                **kwargs: Any) -> asyncio.Server:
    """Start a listener (HTTPS with ``ssl_context``); the returned server's sockets tell the bound port.

    ``reuse_port``: share the port with the node's other workers (SO_REUSEPORT).
    """
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: HttpProtocol(app, state, **kwargs), host, port, reuse_address=True,
                                    ssl=ssl_context, backlog=1024, reuse_port=reuse_port or None)


async def serve_unix(app: Application, path: str, state: ListenerState, **kwargs: Any) -> asyncio.Server:
    """Start a listener on a unix socket (a worker's private admin listener, :mod:`daxd.workers`)."""
    loop = asyncio.get_running_loop()
    return await loop.create_unix_server(lambda: HttpProtocol(app, state, **kwargs), path, backlog=128)
