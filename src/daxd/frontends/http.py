"""The DynamoDB JSON API front end (``X-Amz-Target: DynamoDB_20120810.<Operation>``).

Translates HTTP requests into operations for the Accelerator and results back
into DynamoDB's exact response shape. It holds no cache policy. The DynamoDB
Streams API (``DynamoDBStreams_20120810.<Operation>``) is forwarded untouched
to the upstream's Streams endpoint, so an application may point every
DynamoDB client at daxd (as DynamoDB Local allows). Bad input is
answered as DynamoDB answers it (400 ``SerializationException`` for bad JSON,
400 ``UnknownOperationException`` for a missing or foreign target, 413 for an
oversized body), never with a traceback.

With a key file, each request is authenticated (the authorizer returns the
signing key) and then checked against the key's permissions
(:meth:`daxd.auth.KeyRing.check`) before the cache is consulted.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from daxd.accelerator import ItemRef, Plan, item_body
from daxd.cache.item_cache import CachedItem
from daxd.drivers import AsyncDriver
from daxd.frontends.bodies import BodyDecoder
from daxd.frontends.httpserver import HttpRequest, HttpResponse
from daxd.messages import MEMO_BODY_MAX, Response, parse_body
from daxd.model.errors import (
    DaxdError,
    InternalServerError,
    RequestTooLarge,
    ServiceUnavailable,
    UnknownOperationException,
)
from daxd.observability import Metrics

if TYPE_CHECKING:
    from daxd.auth import KeyRing

log = logging.getLogger("daxd.http")

TARGET_PREFIX = b"DynamoDB_20120810."
STREAMS_TARGET_PREFIX = b"DynamoDBStreams_20120810."
#: GetItem request bodies remembered with their cache location (~200 B each: ~3 MiB when full).
ITEM_REFS_MAX = 16_384
_JSON_TYPES = frozenset({b"", b"application/x-amz-json-1.0", b"application/x-amz-json-1.1", b"application/json"})

#: Checks a request's identity (SigV4): returns the access key id, raises a DaxdError to refuse it.
Authorizer = Callable[[HttpRequest], str]
#: Sends a DynamoDB Streams call (operation, body) upstream: its 2xx body, or raises the
#: upstream's DaxdError (raw body kept): :meth:`daxd.streams.tailer.StreamsUpstream.call_streams`.
StreamsForwarder = Callable[[str, bytes], Awaitable[bytes]]


class DynamoDBApp:
    """An HTTP application answering DynamoDB API calls through the Accelerator."""

    def __init__(self, driver: AsyncDriver, metrics: Metrics, authorizer: Authorizer | None = None,
                 keyring: KeyRing | None = None, streams: StreamsForwarder | None = None,
                 *, region: str = "us-east-1", decoder: BodyDecoder | None = None) -> None:
        self.driver = driver
        #: Decodes large bodies off the event loop (the default never does: its threshold is infinite).
        self.decoder = decoder or BodyDecoder(threshold=1 << 62)
        #: DynamoDB answers ``GET /`` (load balancers' health checks) with this text.
        self.healthy = HttpResponse(200, f"healthy: dynamodb.{region}.amazonaws.com".encode(),
                                    content_type=b"text/plain")
        self.streams = streams
        self.accelerator = driver.accelerator
        self.metrics = metrics
        self.authorizer = authorizer
        #: Per-key permissions (None: no key file, every request may do anything).
        self.keyring = keyring
        self._ids = itertools.count(1)
        self._item_refs: dict[bytes, ItemRef] = {}

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if request.method in ("GET", "HEAD") and request.path == "/":
            return self.healthy
        started = time.perf_counter()
        operation = "Unknown"
        try:
            operation = self._operation(request)
            key = self.authorizer(request) if self.authorizer is not None else None
            if len(request.body) > self.decoder.threshold and not operation.startswith("Streams."):
                return self._decode_then_dispatch(request.body, operation, key, started)
            return self._dispatch(request.body, operation, key, None, started)
        except DaxdError as exc:
            return self._error(exc, operation, started)

    def _dispatch(self, body: bytes, operation: str, key: str | None, data: dict[str, Any] | None,
                  started: float) -> HttpResponse | Awaitable[HttpResponse]:
        """Answer (or start answering) a request whose identity was checked; ``data``: its body, if decoded.

        Raises:
            DaxdError: refused before anything was sent upstream.
        """
        if self.keyring is not None and not self.keyring.full_access(key):
            data = parse_body(body) if data is None else data
            self.keyring.check(key, operation, data)
        if operation.startswith("Streams."):
            return self._streams(operation, body, started)
        if operation == "GetItem" and data is None:  # the hot path: a hit needs no plan, a miss reuses the lookup's key
            found = self._get_item(body)
            if isinstance(found, CachedItem):
                return self._ok(Response(body=item_body(found.item)), operation, started)
            outcome = self.driver.begin_plan(found)
        else:
            outcome = self.driver.begin(operation, parse_body(body) if data is None else data, body)
        if isinstance(outcome, Response):
            return self._ok(outcome, operation, started)
        return self._finish(outcome, operation, started)

    async def _decode_then_dispatch(self, body: bytes, operation: str, key: str | None,
                                    started: float) -> HttpResponse:
        """A large body: decoded off the event loop (:mod:`daxd.frontends.bodies`), then answered."""
        try:
            answer = self._dispatch(body, operation, key, await self.decoder.decode(body), started)
        except DaxdError as exc:
            return self._error(exc, operation, started)
        return answer if isinstance(answer, HttpResponse) else await answer

    async def _finish(self, pending: Coroutine[Any, Any, Response], operation: str,
                      started: float) -> HttpResponse:
        try:
            return self._ok(await pending, operation, started)
        except DaxdError as exc:
            return self._error(exc, operation, started)
        except Exception:
            log.exception("internal error answering %s", operation)
            return self._error(InternalServerError("Internal server error"), operation, started)

    async def _streams(self, operation: str, body: bytes, started: float) -> HttpResponse:
        """A DynamoDB Streams call, forwarded as it came; the upstream's answer (or error body) as it came."""
        assert self.streams is not None
        try:
            reply = await self.streams(operation.removeprefix("Streams."), body)
        except DaxdError as exc:
            return self._error(exc, operation, started)
        return self._ok(Response(body=reply), operation, started)

    def _get_item(self, body: bytes) -> CachedItem | Plan:
        """A GetItem's cached entry or plan; the request bytes of cacheable reads are remembered.

        Clients send the same bytes for the same key again and again, and
        decoding them and canonicalizing the key costs more than the lookup
        (as in the DAX front's memo). Bounded: cleared when full.
        """
        memo = len(body) <= MEMO_BODY_MAX
        ref = self._item_refs.get(body) if memo else None
        if ref is not None:
            return self.accelerator.get_item_at(ref, None, body)
        data = parse_body(body)
        ref = self.accelerator.item_ref(data)
        if ref is None:
            return self.accelerator.plan("GetItem", data, body)
        if memo:
            if len(self._item_refs) >= ITEM_REFS_MAX:
                self._item_refs.clear()
            self._item_refs[body] = ref
        return self.accelerator.get_item_at(ref, data, body)

    def _operation(self, request: HttpRequest) -> str:
        target = request.raw_headers.get(b"x-amz-target", b"")
        content_type = request.raw_headers.get(b"content-type", b"")
        if content_type not in _JSON_TYPES:
            content_type = content_type.partition(b";")[0].strip().lower()
        if request.method != "POST" or content_type not in _JSON_TYPES:
            raise UnknownOperationException("")
        if target.startswith(TARGET_PREFIX):
            return target[len(TARGET_PREFIX):].decode("ascii", "replace")
        if target.startswith(STREAMS_TARGET_PREFIX) and self.streams is not None:
            return "Streams." + target[len(STREAMS_TARGET_PREFIX):].decode("ascii", "replace")
        raise UnknownOperationException("")

    def _ok(self, response: Response, operation: str, started: float) -> HttpResponse:
        self.metrics.request(operation, time.perf_counter() - started)
        return HttpResponse(200, response.body, headers=[(b"x-amzn-RequestId", b"daxd-%d" % next(self._ids))])

    def _error(self, error: DaxdError, operation: str, started: float) -> HttpResponse:
        self.metrics.request(operation, time.perf_counter() - started, error)
        return HttpResponse(error.status, error.to_json(),
                            headers=[(b"x-amzn-RequestId", b"daxd-%d" % next(self._ids))])


#: Failures found while parsing HTTP itself -> DynamoDB's error code (400s not listed: SerializationException).
_HTTP_ERRORS = {408: "RequestTimeoutException", 413: RequestTooLarge.code, 415: "SerializationException",
                431: "ValidationException", 500: InternalServerError.code, 503: ServiceUnavailable.code}


def error_response(status: int, message: str) -> HttpResponse:
    """DynamoDB's error shape for failures found while parsing HTTP itself (bad framing, limits, encodings)."""
    error = DaxdError(message, code=_HTTP_ERRORS.get(status, "SerializationException"), status=status)
    return HttpResponse(status, error.to_json())
