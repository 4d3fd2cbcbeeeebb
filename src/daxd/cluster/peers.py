"""Connections to peers: calls with timeouts, and a bounded outbox drained by one worker.

:class:`PeerConnection` is one TCP connection to a peer's DAX port, opened on
first use and again after any failure; calls on it are serialised (a reply is
matched to its request by order, as in DAX). Every failure - refused, reset,
timed out, a reply that is not CBOR, an error reply - becomes
:class:`PeerError`: the caller marks the peer unhealthy and carries on.

:class:`PeerLink` adds the push side. The write path calls :meth:`PeerLink.push`,
which only appends to a bounded outbox and never waits. A worker task drains
the outbox in batches. What cannot be delivered (the outbox overflowed, or a
send failed) is dropped and remembered as ``needs_flush``: the next message
the peer receives from us tells it to flush its whole cache, because it may
have missed an invalidation. A dead peer restarts empty anyway; a partitioned
one must not keep serving what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
from collections import deque
from collections.abc import Callable
from typing import Any

from daxd.cluster.membership import Address
from daxd.cluster.wire import ReplyReader, authorize, preamble, request
from daxd.model.errors import DaxdError
from daxd.upstream.sigv4 import Credentials

log = logging.getLogger("daxd.cluster")

#: Seconds a peer call may take (connect included); the JS client's health check allows 1 s (§7.2).
DEFAULT_TIMEOUT = 1.0
#: Pending pushes per peer before the outbox is dropped and the peer told to flush.
DEFAULT_MAX_OUTBOX = 10_000
#: Items per ``daxd.invalidate``/``daxd.records`` call.
BATCH_ITEMS = 500
#: Re-sign the connection this often; the DAX clients re-sign every 150 s (§1.4), the server allows 5 min.
REAUTH_SECONDS = 120.0


class PeerError(Exception):
    """A peer call failed; the message says how."""


class PeerConnection:
    """One connection to a peer's DAX port.

    Args:
        address: where to connect (host and DAX port).
        credentials: the key to sign ``authorizeConnection`` with (None: cluster without ``--auth-keys``).
        region: the SigV4 scope's region.
        timeout: seconds per call, connect included.
    """

    def __init__(self, address: Address, *, credentials: Credentials | None = None, region: str = "us-east-1",
                 timeout: float = DEFAULT_TIMEOUT,
                 clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC)) -> None:
        self.address = address
        self.credentials = credentials
        self.region = region
        self.timeout = timeout
        self.clock = clock
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._replies = ReplyReader()
        self._signed_at: datetime.datetime | None = None
        self._lock = asyncio.Lock()

    async def call(self, method: str, body: Any) -> Any:
        """Call a peer method; its reply value.

        Raises:
            PeerError: unreachable, timed out, garbage or an error reply.
        """
        async with self._lock:
            try:
                return await asyncio.wait_for(self._call(method, body), self.timeout)
            except PeerError:
                await self.close()
                raise
            except (OSError, TimeoutError, EOFError, DaxdError) as exc:
                await self.close()
                raise PeerError(_describe(exc)) from None

    async def _call(self, method: str, body: Any) -> Any:
        if self._writer is None:
            await self._connect()
        assert self._writer is not None and self._reader is not None
        self._writer.write(self._authorization() + request(method, body))
        await self._writer.drain()
        while (reply := self._replies.next_reply()) is None:
            data = await self._reader.read(65536)
            if not data:
                raise EOFError("peer closed the connection")
            self._replies.feed(data)
        if not reply.ok:
            raise PeerError(f"peer answered error {list(reply.codes)}: {reply.message}")
        return reply.value

    async def _connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.address.host, self.address.port)
        self._replies = ReplyReader()
        self._signed_at = None
        self._writer.write(preamble(os.urandom(16)))

    def _authorization(self) -> bytes:
        """``authorizeConnection`` before the first call and every :data:`REAUTH_SECONDS` after."""
        if self.credentials is None:
            return b""
        now = self.clock()
        if self._signed_at is not None and (now - self._signed_at).total_seconds() < REAUTH_SECONDS:
            return b""
        self._signed_at = now
        return authorize(self.credentials.access_key, self.credentials.secret_key, self.region, now)

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, DaxdError):
        return f"bad reply: {exc.message}"
    return str(exc) or type(exc).__name__


class PeerLink:
    """A peer's connection plus the outbox of pushes to it.

    Args:
        connection: the peer's connection.
        on_failure: told (with a reason) when a push could not be delivered.
        max_outbox: pending items before the outbox is dropped.
    """

    def __init__(self, connection: PeerConnection, *, on_failure: Callable[[str], None],
                 max_outbox: int = DEFAULT_MAX_OUTBOX) -> None:
        self.connection = connection
        self.on_failure = on_failure
        self.max_outbox = max_outbox
        self.outbox: deque[tuple[str, Any]] = deque()
        self.needs_flush = False
        self.sent = 0
        self.dropped = 0
        self._wake = asyncio.Event()

    def push(self, method: str, items: list[Any]) -> None:
        """Queue items for ``method``; never waits, never raises."""
        if len(self.outbox) + len(items) > self.max_outbox:
            self._drop("outbox overflow")
            return
        self.outbox.extend((method, item) for item in items)
        self._wake.set()

    def wake(self) -> None:
        """Deliver a pending flush now (the peer just answered a ping)."""
        if self.needs_flush:
            self._wake.set()

    async def run(self) -> None:
        """Drain the outbox forever (until cancelled)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.outbox or self.needs_flush:
                if not await self._send_batch():
                    break

    async def _send_batch(self) -> bool:
        method, batch = take_batch(self.outbox, BATCH_ITEMS)
        flush = self.needs_flush
        body: dict[str, Any] = {"items": batch}
        if flush:
            body["flush"] = True
        try:
            await self.connection.call(method, body)
        except PeerError as exc:
            self.dropped += len(batch)
            self._drop(str(exc))
            return False
        if flush:
            self.needs_flush = False
        self.sent += len(batch)
        return True

    def _drop(self, reason: str) -> None:
        self.dropped += len(self.outbox)
        self.outbox.clear()
        if not self.needs_flush:
            log.warning("peer %s: dropping pushes (%s); it will be told to flush", self.connection.address, reason)
        self.needs_flush = True
        self.on_failure(reason)


def take_batch(outbox: deque[tuple[str, Any]], limit: int) -> tuple[str, list[Any]]:
    """Pop the longest run of items for one method from the front (empty: an invalidate carrying a flush)."""
    if not outbox:
        return "daxd.invalidate", []
    method = outbox[0][0]
    batch: list[Any] = []
    while outbox and outbox[0][0] == method and len(batch) < limit:
        batch.append(outbox.popleft()[1])
    return method, batch
