"""Upstream client against a scripted local HTTP server (no DynamoDB needed)."""

from __future__ import annotations

import asyncio
import datetime
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import botocore.session
import orjson
import pytest
import uvloop

from daxd.model.errors import (
    ConditionalCheckFailedException,
    InternalServerError,
    ProvisionedThroughputExceededException,
    ServiceUnavailable,
)
from daxd.sigv4 import Credentials, verify
from daxd.upstream.client import BotocoreCredentials, StaticCredentials, Upstream
from tests.faultproxy import FaultProxy, ThreadedFaultProxy, _Request, _RequestReader

pytestmark = pytest.mark.timeout(20)

NOW = datetime.datetime(2026, 5, 1, 12, 0, 0, tzinfo=datetime.UTC)
Reply = bytes | None  # None: close the connection without answering
Handler = Callable[[_Request], Awaitable[Reply]]


def http(status: int, body: bytes, *extra: str) -> bytes:
    """A raw HTTP/1.1 response with Content-Length."""
    head = "".join(f"{h}\r\n" for h in extra)
    return f"HTTP/1.1 {status} X\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def ddb_error(status: int, code: str, message: str = "boom") -> bytes:
    return http(status, orjson.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}",
                                      "message": message}))


RUNNING: list[ScriptedServer] = []


@pytest.fixture(autouse=True)
async def _stop_servers() -> AsyncIterator[None]:
    """Stop every scripted server a test started, so no socket outlives its loop."""
    yield
    while RUNNING:
        await RUNNING.pop().stop()


class ScriptedServer:
    """Answers each request with ``handler(request)``; counts connections and concurrency."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[_Request] = []
        self.connections = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        RUNNING.append(self)

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        """Close the listener and every connection, and wait for their tasks."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        requests = _RequestReader()
        try:
            while data := await reader.read(65536):
                requests.parser.feed_data(data)
                while requests.done:
                    reply = await self._answer(requests.done.popleft())
                    if reply is None:
                        return
                    writer.write(reply)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()
            self._tasks.discard(task)

    async def _answer(self, request: _Request) -> Reply:
        self.requests.append(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self.handler(request)
        finally:
            self.in_flight -= 1


def script(*replies: Reply, delay: float = 0.0) -> Handler:
    """Replies in order, the last one repeated."""
    queue = list(replies)

    async def handler(request: _Request) -> Reply:
        if delay:
            await asyncio.sleep(delay)
        return queue.pop(0) if len(queue) > 1 else queue[0]
    return handler


class Sleeps:
    """A fake ``sleep`` that records the backoff delays."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make_upstream(endpoint: str, **kw: Any) -> Upstream:
    kw.setdefault("sleep", Sleeps())
    kw.setdefault("random", lambda: 1.0)
    kw.setdefault("clock", lambda: NOW)
    return Upstream(endpoint, "us-east-1", StaticCredentials("AKID", "SECRET"), **kw)


async def serve(handler: Handler, **kw: Any) -> tuple[ScriptedServer, Upstream]:
    server = ScriptedServer(handler)
    return server, make_upstream(await server.start(), **kw)


ITEM = b'{"Item":{"id":{"S":"1"}}}'


async def test_success_is_signed_and_returns_body() -> None:
    server, up = await serve(script(http(200, ITEM)))
    assert await up.call("GetItem", b'{"TableName":"t"}') == ITEM
    req = server.requests[0]
    headers = {k.lower(): v for k, v in req.headers}
    assert req.method == "POST" and req.path == "/"
    assert headers["x-amz-target"] == "DynamoDB_20120810.GetItem"
    assert headers["content-type"] == "application/x-amz-json-1.0"
    assert verify("POST", "/", "", headers, bytes(req.body), {"AKID": "SECRET"}, NOW) == "AKID"
    assert up.last_success is not None
    await up.close()
    await server.stop()


async def test_session_token_is_sent() -> None:
    server = ScriptedServer(script(http(200, b"{}")))
    up = Upstream(await server.start(), "us-east-1", StaticCredentials("AKID", "SECRET", "TOK"),
                  clock=lambda: NOW)
    await up.call("GetItem", b"{}")
    headers = {k.lower(): v for k, v in server.requests[0].headers}
    assert headers["x-amz-security-token"] == "TOK"
    assert "x-amz-security-token" in headers["authorization"]
    await up.close()


async def test_client_error_passes_through_unretried() -> None:
    body = ddb_error(400, "ConditionalCheckFailedException", "The conditional request failed")
    server, up = await serve(script(body))
    with pytest.raises(ConditionalCheckFailedException) as info:
        await up.call("PutItem", b"{}")
    assert info.value.message == "The conditional request failed"
    assert info.value.raw is not None and b"ConditionalCheckFailed" in info.value.raw
    assert len(server.requests) == 1
    await up.close()


async def test_throttling_retried_with_backoff_then_succeeds() -> None:
    sleeps = Sleeps()
    throttled = ddb_error(400, "ProvisionedThroughputExceededException")
    server, up = await serve(script(throttled, ddb_error(400, "ThrottlingException"), http(200, ITEM)),
                             sleep=sleeps, max_attempts=3)
    assert await up.call("GetItem", b"{}") == ITEM
    assert len(server.requests) == 3
    assert sleeps.delays == [0.025, 0.05]  # full jitter with random() == 1.0
    await up.close()


async def test_throttling_exhausted_raises_upstream_error() -> None:
    server, up = await serve(script(ddb_error(400, "ProvisionedThroughputExceededException")))
    with pytest.raises(ProvisionedThroughputExceededException):
        await up.call("GetItem", b"{}")
    assert len(server.requests) == 3
    await up.close()


async def test_5xx_retried_up_to_max_attempts_then_raised() -> None:
    server, up = await serve(script(ddb_error(500, "InternalServerError")), max_attempts=4)
    with pytest.raises(InternalServerError) as info:
        await up.call("GetItem", b"{}")
    assert info.value.status == 500
    assert len(server.requests) == 4
    await up.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_connection_refused_is_service_unavailable() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    up = make_upstream(endpoint, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as info:
        await up.call("GetItem", b"{}")
    assert time.monotonic() - started < 1.0
    assert info.value.status == 503 and endpoint in info.value.message
    assert up.last_success is None
    await up.close()


async def test_timeout_is_service_unavailable_and_never_hangs() -> None:
    never = asyncio.Event()

    async def hang(request: _Request) -> Reply:
        await never.wait()
        return None
    server, up = await serve(hang, timeout=0.2, max_attempts=2)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match=r"no response within 0\.2 s"):
        await up.call("GetItem", b"{}")
    assert 0.4 <= time.monotonic() - started < 1.5
    assert len(server.requests) == 2 and server.connections == 2  # timed-out connection discarded
    never.set()
    await up.close()


async def test_keep_alive_reuses_one_connection() -> None:
    server, up = await serve(script(http(200, ITEM)))
    for _ in range(5):
        assert await up.call("GetItem", b"{}") == ITEM
    assert server.connections == 1 and up.pool.connections_opened == 1
    await up.close()


async def test_connection_close_response_is_not_reused() -> None:
    server, up = await serve(script(http(200, ITEM, "Connection: close")))
    for _ in range(3):
        assert await up.call("GetItem", b"{}") == ITEM
    assert server.connections == 3
    await up.close()


async def test_chunked_response() -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"7\r\n{\"Item\"\r\n12\r\n:{\"id\":{\"S\":\"1\"}}}\r\n0\r\n\r\n")
    server, up = await serve(script(chunked))
    assert await up.call("GetItem", b"{}") == ITEM
    assert await up.call("GetItem", b"{}") == ITEM
    assert server.connections == 1
    await up.close()


async def test_dropped_connection_is_retried() -> None:
    server, up = await serve(script(None, http(200, ITEM)))
    assert await up.call("GetItem", b"{}") == ITEM
    assert server.connections == 2
    await up.close()


async def test_concurrency_limited_to_max_connections() -> None:
    server, up = await serve(script(http(200, ITEM), delay=0.05), max_connections=2)
    results = await asyncio.gather(*(up.call("GetItem", b"{}") for _ in range(6)))
    assert results == [ITEM] * 6
    assert server.max_in_flight == 2 and server.connections == 2
    await up.close()


async def test_forward_returns_errors_without_raising() -> None:
    server, up = await serve(script(ddb_error(400, "UnknownOperationException")))
    status, body = await up.forward("DynamoDB_20120810.Frobnicate", b"{}")
    assert status == 400 and b"UnknownOperationException" in body
    assert len(server.requests) == 1
    headers = {k.lower(): v for k, v in server.requests[0].headers}
    assert headers["x-amz-target"] == "DynamoDB_20120810.Frobnicate"
    await up.close()


async def test_observe_hook_gets_operation_and_latency() -> None:
    seen: list[tuple[str, float]] = []
    _, up = await serve(script(http(200, ITEM)), observe=lambda op, s: seen.append((op, s)))
    await up.call("Query", b"{}")
    assert [op for op, _ in seen] == ["Query"] and seen[0][1] >= 0
    await up.close()


def test_large_bodies_on_uvloop() -> None:
    """The pool runs on uvloop too; bodies past the single-write threshold go through whole."""
    big = b'{"v":"' + b"x" * 200_000 + b'"}'

    async def echo(request: _Request) -> Reply:
        return http(200, bytes(request.body))

    async def run() -> None:
        server, up = await serve(echo)
        for _ in range(2):
            assert await up.call("PutItem", big) == big
        assert server.connections == 1
        await up.close()
        await server.stop()
        RUNNING.clear()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run())


def test_botocore_credentials_wraps_session_and_fallback() -> None:
    session = botocore.session.Session()
    session.set_credentials("AK", "SK", "TK")
    assert BotocoreCredentials(session).get() == Credentials("AK", "SK", "TK")

    class NoCredentials:
        def get_credentials(self) -> None:
            return None
    empty = cast(botocore.session.Session, NoCredentials())
    fallback = Credentials("daxd", "daxd")
    assert BotocoreCredentials(empty, fallback=fallback).get() == fallback
    with pytest.raises(InternalServerError, match="no AWS credentials"):
        BotocoreCredentials(empty).get()


def test_for_aws_builds_endpoint() -> None:
    up = Upstream.for_aws("eu-west-1", clock=lambda: NOW)
    assert up.endpoint == "https://dynamodb.eu-west-1.amazonaws.com"
    assert up.pool.port == 443 and up.pool.host_header == "dynamodb.eu-west-1.amazonaws.com"


# FaultProxy between the client and the scripted server ---------------------------------------

async def test_fault_proxy_injects_throttling_drops_and_stale_reads() -> None:
    versions = iter(range(1, 100))

    async def counter(request: _Request) -> Reply:
        return http(200, b'{"v":%d}' % next(versions))
    server = ScriptedServer(counter)
    proxy = FaultProxy(await server.start())
    port = await proxy.start()
    up = make_upstream(f"http://127.0.0.1:{port}")

    proxy.fail_next.append((400, "ProvisionedThroughputExceededException"))
    proxy.drop_next = 1
    assert await up.call("GetItem", b'{"k":1}') == b'{"v":1}'  # dropped, throttled, then served
    assert proxy.seen["DynamoDB_20120810.GetItem"] == 3

    proxy.stale_reads = True
    assert await up.call("GetItem", b'{"k":1}') == b'{"v":1}'  # lagging replica: first answer
    assert await up.call("GetItem", b'{"k":1,"ConsistentRead":true}') == b'{"v":2}'
    assert await up.call("PutItem", b'{"k":1}') == b'{"v":3}'
    await up.close()
    await proxy.stop()
    await server.stop()


async def test_threaded_fault_proxy_fails_next_request() -> None:
    server = ScriptedServer(script(http(200, ITEM)))
    proxy = ThreadedFaultProxy(await server.start())
    port = await asyncio.to_thread(proxy.start)
    proxy.fail_next = [(500, "InternalServerError")]
    up = make_upstream(f"http://127.0.0.1:{port}", max_attempts=1)
    with pytest.raises(InternalServerError):
        await up.call("GetItem", b"{}")
    assert await up.call("GetItem", b"{}") == ITEM
    assert proxy.seen["DynamoDB_20120810.GetItem"] == 2
    await up.close()
    await asyncio.to_thread(proxy.stop)
    await server.stop()


# --- send_now / finish: a miss's first attempt written before any task exists -------------------------


async def warm(up: Upstream, connections: int = 1) -> None:
    """Open pooled connections, so send_now finds an idle one."""
    await asyncio.gather(*(up.call("GetItem", b"{}") for _ in range(connections)))


async def test_send_now_needs_an_idle_connection() -> None:
    server, up = await serve(script(http(200, ITEM)))
    assert up.send_now("GetItem", b"{}") is None  # nothing pooled yet: call() connects
    await warm(up)
    sent = up.send_now("GetItem", b'{"TableName":"t"}')
    assert sent is not None
    assert up.send_now("GetItem", b"{}") is None  # the one connection is busy
    assert await up.finish(sent) == ITEM
    headers = {k.lower(): v for k, v in server.requests[1].headers}
    assert verify("POST", "/", "", headers, bytes(server.requests[1].body), {"AKID": "SECRET"}, NOW) == "AKID"
    assert server.connections == 1 and up.pool._in_use == 0
    await up.close()


async def test_finish_retries_throttling_like_call() -> None:
    sleeps = Sleeps()
    throttled = ddb_error(400, "ThrottlingException")
    server, up = await serve(script(http(200, b"{}"), throttled, throttled, http(200, ITEM)), sleep=sleeps)
    await warm(up)
    sent = up.send_now("GetItem", b"{}")
    assert sent is not None
    assert await up.finish(sent) == ITEM
    assert len(server.requests) == 4 and sleeps.delays == [0.025, 0.05]
    await up.close()


async def test_finish_passes_client_errors_through_unretried() -> None:
    server, up = await serve(script(http(200, b"{}"), ddb_error(400, "ConditionalCheckFailedException")))
    await warm(up)
    sent = up.send_now("PutItem", b"{}")
    assert sent is not None
    with pytest.raises(ConditionalCheckFailedException):
        await up.finish(sent)
    assert len(server.requests) == 2
    await up.close()


async def test_send_now_times_out_and_gives_its_connection_back() -> None:
    never = asyncio.Event()
    answered = 0

    async def first_then_hang(request: _Request) -> Reply:
        nonlocal answered
        answered += 1
        if answered > 1:
            await never.wait()
        return http(200, b"{}")
    _server, up = await serve(first_then_hang, timeout=0.2, max_attempts=2)
    await warm(up)
    sent = up.send_now("GetItem", b"{}")
    assert sent is not None
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match=r"no response within 0\.2 s"):
        await up.finish(sent)
    assert 0.4 <= time.monotonic() - started < 1.5
    assert up.pool._in_use == 0
    never.set()
    await up.close()


async def test_send_now_respects_the_connection_limit() -> None:
    server, up = await serve(script(http(200, ITEM), delay=0.02), max_connections=2)
    await warm(up, 2)
    sent = [up.send_now("GetItem", b"{}") for _ in range(3)]
    assert sent[0] is not None and sent[1] is not None and sent[2] is None
    results = await asyncio.gather(*(up.finish(s) for s in sent if s is not None),
                                   *(up.call("GetItem", b"{}") for _ in range(4)))
    assert results == [ITEM] * 6
    assert server.max_in_flight <= 2 and server.connections == 2 and up.pool._in_use == 0
    await up.close()


async def test_identical_misses_share_one_upstream_request_sent_early_or_not() -> None:
    from daxd.accelerator import Accelerator, CacheSettings
    from daxd.drivers import AsyncDriver

    server, up = await serve(script(http(200, ITEM), delay=0.05))
    driver = AsyncDriver(Accelerator(CacheSettings(item_ttl=0.01)), up)

    async def three_at_once() -> None:
        pending = [driver.begin("GetItem", {"TableName": "t", "Key": {"id": {"S": "1"}}}) for _ in range(3)]
        responses = await asyncio.gather(*pending)
        assert [r.body for r in responses] == [ITEM] * 3

    await three_at_once()  # nothing pooled: the first coroutine sends, the others join its flight
    assert len(server.requests) == 1
    await asyncio.sleep(0.02)  # the cached item expires
    await three_at_once()  # pooled: the first is written before any task exists, the others join it
    assert len(server.requests) == 2 and len(driver._flights) == 0
    await up.close()
