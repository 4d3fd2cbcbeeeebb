"""A connection to a node's DAX port for daxd's own method (``daxd status`` asks a node with it).

:class:`NodeConnection` is one TCP connection, opened on first use and again
after any failure; calls on it are serialised (a reply is matched to its
request by order, as in DAX). Every failure - refused, reset, timed out, a
reply that is not CBOR, an error reply - becomes :class:`NodeCallError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
from collections.abc import Callable
from typing import Any

from daxd.cluster.membership import Address
from daxd.cluster.wire import ReplyReader, authorize, preamble, request
from daxd.model.errors import DaxdError
from daxd.upstream.sigv4 import Credentials

#: Seconds a call may take (connect included); the JS client's health check allows 1 s (§7.2).
DEFAULT_TIMEOUT = 1.0
#: Re-sign the connection this often; the DAX clients re-sign every 150 s (§1.4), the server allows 5 min.
REAUTH_SECONDS = 120.0


class NodeCallError(Exception):
    """A call failed; the message says how."""


class NodeConnection:
    """One connection to a node's DAX port.

    Args:
        address: where to connect (host and DAX port).
        credentials: the key to sign ``authorizeConnection`` with (None: a node without ``--auth-keys``).
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
        """Call a daxd method; its reply value.

        Raises:
            NodeCallError: unreachable, timed out, garbage or an error reply.
        """
        async with self._lock:
            try:
                return await asyncio.wait_for(self._call(method, body), self.timeout)
            except NodeCallError:
                await self.close()
                raise
            except (OSError, TimeoutError, EOFError, DaxdError) as exc:
                await self.close()
                raise NodeCallError(_describe(exc)) from None

    async def _call(self, method: str, body: Any) -> Any:
        if self._writer is None:
            await self._connect()
        assert self._writer is not None and self._reader is not None
        self._writer.write(self._authorization() + request(method, body))
        await self._writer.drain()
        while (reply := self._replies.next_reply()) is None:
            data = await self._reader.read(65536)
            if not data:
                raise EOFError("the node closed the connection")
            self._replies.feed(data)
        if not reply.ok:
            raise NodeCallError(f"the node answered error {list(reply.codes)}: {reply.message}")
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
