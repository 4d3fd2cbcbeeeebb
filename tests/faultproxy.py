"""A fault-injecting HTTP proxy to put between daxd and DynamoDB Local.

DynamoDB Local never throttles, lags or drops a connection; this proxy does,
on demand (the idea of asyncpg's ``tests/test_adversity.py``). Faults are set
from the test as attributes and consumed one request at a time:

* ``delay``: seconds to wait before handling each request;
* ``fail_next``: answer the next requests with ``(status, "__type code")``;
* ``drop_next``: close the next N connections without answering;
* ``stale_reads``: eventually consistent GetItem/Query/Scan/BatchGetItem get
  the first answer ever seen for the same body (a lagging replica);
* ``seen``: requests seen per ``X-Amz-Target``;
* ``hold``: a ``threading.Event``; while it is not set, answers to GetItem are
  fetched from DynamoDB at once but held back (``held`` is set when one is),
  so a test can stage what happens between a read and its answer.

The proxy forwards the client's headers (including its SigV4 signature over the
proxy's host), which DynamoDB Local does not check.

``ThreadedFaultProxy`` runs one in a background thread for sync tests; fault
decisions are taken under a lock, so attributes can be set from any thread.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import httptools
import orjson

from daxd.upstream.http11 import ConnectionPool, HTTPResponse

READ_TARGETS = frozenset(f"DynamoDB_20120810.{op}" for op in ("GetItem", "Query", "Scan", "BatchGetItem"))
#: Hop-by-hop and framing headers the proxy sets itself.
_SKIP = frozenset({"host", "content-length", "connection", "transfer-encoding", "keep-alive"})


@dataclass(slots=True)
class _Request:
    method: str = ""
    path: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k.lower() == name), "")


class _RequestReader:
    """httptools callbacks collecting complete requests from a byte stream."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.done: collections.deque[_Request] = collections.deque()
        self.current = _Request()

    def on_message_begin(self) -> None:
        self.current = _Request()

    def on_url(self, url: bytes) -> None:
        self.current.path += url.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.current.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self.current.body += body

    def on_message_complete(self) -> None:
        self.current.method = self.parser.get_method().decode()
        self.done.append(self.current)


def _is_consistent(body: bytes) -> bool:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(data, dict):
        return False
    if data.get("ConsistentRead") is True:
        return True
    items = data.get("RequestItems")
    return isinstance(items, dict) and any(
        isinstance(v, dict) and v.get("ConsistentRead") is True for v in items.values())


def _error_body(code: str) -> bytes:
    return orjson.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}",
                         "message": f"injected by FaultProxy: {code}"})


def _encode_response(status: int, headers: dict[str, str], body: bytes) -> bytes:
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k not in _SKIP)
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Unknown"
    head = f"HTTP/1.1 {status} {reason}\r\n{lines}Content-Length: {len(body)}\r\n\r\n"
    return head.encode("latin-1") + body


class FaultProxy:
    """An asyncio HTTP proxy to ``target`` (``http://host:port``) with switchable faults."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self._pool = ConnectionPool(parts.hostname or "127.0.0.1", parts.port or 80, keep_headers=True)
        self._server: asyncio.Server | None = None
        self.lock = threading.Lock()
        self.delay = 0.0
        self.fail_next: list[tuple[int, str]] = []
        self.drop_next = 0
        self.stale_reads = False
        self.hold: threading.Event | None = None
        self.held = threading.Event()
        self.seen: collections.Counter[str] = collections.Counter()
        self._first: dict[tuple[str, bytes], HTTPResponse] = {}
        self._clients: set[asyncio.StreamWriter] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen; return the bound port."""
        self._server = await asyncio.start_server(self._serve, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        """Stop listening and close upstream connections."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._clients):
            writer.transport.abort()
        await self._pool.close()
        for _ in range(3):
            await asyncio.sleep(0)

    def _decide(self, target: str) -> tuple[float, str, tuple[int, str] | None]:
        """Count the request and consume one fault: (delay, "drop"/"fail"/"stale"/"forward", error)."""
        with self.lock:
            self.seen[target] += 1
            if self.drop_next > 0:
                self.drop_next -= 1
                return self.delay, "drop", None
            if self.fail_next:
                return self.delay, "fail", self.fail_next.pop(0)
            return self.delay, "stale" if self.stale_reads else "forward", None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests = _RequestReader()
        self._clients.add(writer)
        try:
            while data := await reader.read(65536):
                requests.parser.feed_data(data)
                while requests.done:
                    if not await self._handle(requests.done.popleft(), writer):
                        return
        except (httptools.HttpParserError, ConnectionError):
            pass
        finally:
            self._clients.discard(writer)
            writer.transport.abort()

    async def _handle(self, request: _Request, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must be dropped."""
        target = request.header("x-amz-target")
        delay, action, error = self._decide(target)
        if delay:
            await asyncio.sleep(delay)
        if action == "drop":
            return False
        if error is not None:
            writer.write(_encode_response(error[0], {"content-type": "application/x-amz-json-1.0"},
                                          _error_body(error[1])))
            return True
        response = await self._respond(request, target, stale=action == "stale")
        if response is None:
            return False
        hold = self.hold
        if hold is not None and target == "DynamoDB_20120810.GetItem":
            self.held.set()
            await asyncio.get_running_loop().run_in_executor(None, hold.wait, 30.0)
        writer.write(_encode_response(response.status, response.headers, response.body))
        await writer.drain()
        return True

    async def _respond(self, request: _Request, target: str, *, stale: bool) -> HTTPResponse | None:
        body = bytes(request.body)
        key = (target, body)
        lagging = stale and target in READ_TARGETS and not _is_consistent(body)
        if lagging and key in self._first:
            return self._first[key]
        headers = "".join(f"{k}: {v}\r\n" for k, v in request.headers if k.lower() not in _SKIP)
        try:
            response = await self._pool.request(request.method, request.path, headers, body, 30.0)
        except (ConnectionError, TimeoutError):
            return None
        if target in READ_TARGETS and response.status == 200:
            self._first.setdefault(key, response)
        return response


class ThreadedFaultProxy:
    """A :class:`FaultProxy` on its own event loop in a daemon thread, for sync tests."""

    def __init__(self, target: str) -> None:
        self.proxy = FaultProxy(target)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faultproxy", daemon=True)

    def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Start the thread and the proxy; return the bound port."""
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self.proxy.start(host, port), self._loop).result(10)

    def stop(self) -> None:
        """Stop the proxy, the loop and the thread."""
        asyncio.run_coroutine_threadsafe(self.proxy.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.proxy, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("delay", "fail_next", "drop_next", "stale_reads", "hold"):
            with self.proxy.lock:
                setattr(self.proxy, name, value)
        else:
            object.__setattr__(self, name, value)
