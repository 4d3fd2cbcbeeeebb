"""The I/O side of the shared tier: performs plans' tier calls on Valkey and hears its invalidations.

Client library: valkey-py with its C parser (libvalkey); see
docs/architecture.md for the measured comparison with redis-py + hiredis.

Coherence: one connection subscribes to ``__redis__:invalidate``, a second
turns on ``CLIENT TRACKING ... REDIRECT <first> BCAST`` for the prefixes of
:data:`daxd.tier.shared.TRACKED`. Valkey then pushes the name of every key a
write changes under them, from any node, and the Accelerator drops its L1
copies of it. The second connection is pinged every half second; when either
breaks (or a tier call fails) the tier is *down*:

- the Accelerator's L1 is dropped at once (invalidations may be lost from now),
  and again when the tier is back, before it is trusted;
- tier calls answer :data:`~daxd.tier.shared.DOWN` at once: misses go to
  DynamoDB and nothing is cached, writes go through;
- the keys of every write whose commit could not reach Valkey are remembered
  (bounded) and evicted from the tier on reconnection, before anything is
  served from it again; past the bound every ``dx:`` key is removed instead;
- the listener reconnects with backoff; each transition is logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import valkey.asyncio as valkey_async
from valkey.exceptions import ValkeyError

from daxd.tier.shared import COMMIT_SCRIPT, DOWN, FILL_SCRIPT, TRACKED, TierCall, encode_lookup

log = logging.getLogger("daxd.tier")

#: Keys of writes not yet committed to the tier remembered while it is down; past this, flush it all.
MAX_UNSYNCED = 100_000
_PING_EVERY = 0.5
_FAILURES = (ValkeyError, OSError, asyncio.TimeoutError)


class ValkeyTier:
    """Performs :class:`TierCall` s and keeps L1 coherent through tracking pushes."""

    def __init__(self, url: str, *, on_invalidate: Callable[[bytes | None], None],
                 on_lost: Callable[[], object], timeout: float = 1.0) -> None:
        self.url = url
        self.timeout = timeout
        #: Told each pushed key name (None: everything, e.g. FLUSHALL).
        self.on_invalidate = on_invalidate
        #: Told when L1 can no longer be trusted (the tier went down, or came back).
        self.on_lost = on_lost
        self.client: Any = valkey_async.from_url(  # type: ignore[no-untyped-call]
            url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._fill = self.client.register_script(FILL_SCRIPT)
        self._commit = self.client.register_script(COMMIT_SCRIPT)
        self.up = False
        self.reason = "not connected yet"
        self.invalidations = 0
        self.unsynced: dict[tuple[bytes, ...], None] = {}
        self.overflowed = False
        self._trouble = asyncio.Event()
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- tier calls ---------------------------------------------------------

    async def perform(self, call: TierCall) -> bytes:
        """Answer one tier call; :data:`DOWN` when Valkey cannot be used now."""
        if not self.up:
            self._remember(call)
            return DOWN
        try:
            if call.operation == "tier.get":
                item, generation, written = await self.client.mget(*call.args)
                return encode_lookup(item, generation, written)
            if call.operation == "tier.fill":
                keys, args = call.args
                stored = await self._fill(keys=list(keys), args=list(args))
                return b"1" if stored else b"0"
            if call.operation == "tier.commit":
                pipe = self.client.pipeline(transaction=False)
                for keys, args in call.args:
                    await self._commit(keys=list(keys), args=list(args), client=pipe)
                await pipe.execute()
                return b"1"
        except _FAILURES as exc:
            self._remember(call)
            self._went_down(f"{type(exc).__name__}: {exc}")
            return DOWN
        raise ValueError(f"unknown tier call {call.operation}")

    def _remember(self, call: TierCall) -> None:
        """A commit that did not reach Valkey: its keys are evicted from the tier on reconnection."""
        if call.operation != "tier.commit":
            return
        for keys, _ in call.args:
            if len(self.unsynced) >= MAX_UNSYNCED:
                self.overflowed = True
                return
            self.unsynced[tuple(keys)] = None

    async def _resync(self) -> None:
        """Evict from the tier what was written while it was unreachable (before trusting it again)."""
        if self.overflowed:
            log.warning("shared tier: more than %d writes while it was down: removing every dx: key", MAX_UNSYNCED)
            async for batch in self._scan_batches():
                await self.client.unlink(*batch)
            self.overflowed = False
            self.unsynced.clear()
            return
        while self.unsynced:
            batch = list(self.unsynced)[:500]
            pipe = self.client.pipeline(transaction=False)
            for keys in batch:
                await self._commit(keys=list(keys), args=[b"e", b"", b"0", b"0"], client=pipe)
            await pipe.execute()
            for keys in batch:
                self.unsynced.pop(keys, None)

    async def _scan_batches(self) -> Any:
        batch: list[bytes] = []
        async for name in self.client.scan_iter(match=b"dx:*", count=1000):
            batch.append(name)
            if len(batch) >= 1000:
                yield batch
                batch = []
        if batch:
            yield batch

    # -- coherence ----------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="daxd-tier-tracking")

    async def wait_connected(self, timeout: float) -> bool:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout)
        return self.up

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.aclose()

    def _went_down(self, reason: str) -> None:
        if self.up:
            log.warning("shared tier down (%s): dropping L1, serving from DynamoDB until it is back", reason)
            self.on_lost()
        self.up = False
        self.reason = reason
        self._trouble.set()

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            pool = valkey_async.ConnectionPool.from_url(self.url, socket_timeout=self.timeout,
                                                        socket_connect_timeout=self.timeout)
            try:
                listener = await pool.get_connection("SUBSCRIBE")  # type: ignore[no-untyped-call]
                tracker = await pool.get_connection("CLIENT")  # type: ignore[no-untyped-call]
                await listener.send_command("CLIENT", "ID")
                listener_id = await listener.read_response()
                await listener.send_command("SUBSCRIBE", "__redis__:invalidate")
                await listener.read_response()
                prefixes = [part for prefix in TRACKED for part in (b"PREFIX", prefix)]
                await tracker.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", listener_id, "BCAST", *prefixes)
                await tracker.read_response()
                await self._resync()
                self._trouble.clear()
                self.on_lost()  # invalidations may have been missed while we were not tracking
                if not self.up:
                    log.warning("shared tier up: %s", self.url)
                self.up, self.reason = True, "ok"
                self._connected.set()
                backoff = 0.05
                await self._listen(listener, tracker)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._went_down(f"{type(exc).__name__}: {exc}")
            finally:
                with contextlib.suppress(Exception):
                    await pool.disconnect()
            self._connected.set()  # someone waiting for the first attempt learns it failed
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _listen(self, listener: Any, tracker: Any) -> None:
        next_ping = time.monotonic() + _PING_EVERY
        while not self._trouble.is_set():
            message = await listener.read_response(timeout=_PING_EVERY / 2)
            if message is not None:
                self._handle(message)
            if time.monotonic() >= next_ping:
                await tracker.send_command("PING")
                if await tracker.read_response(timeout=self.timeout) is None:
                    raise TimeoutError("no answer to PING")
                next_ping = time.monotonic() + _PING_EVERY
        raise ConnectionError(self.reason)

    # -- a named client for stream leases (daxd.tier.leases) ---------------

    def named_client(self, name: str) -> Any:
        """A separate client of the same Valkey whose connections carry ``name`` (``CLIENT SETNAME``):
        other nodes see in ``CLIENT LIST`` whether the process holding it is still connected."""
        return valkey_async.from_url(  # type: ignore[no-untyped-call]
            self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout, client_name=name)

    def _handle(self, message: Any) -> None:
        if not isinstance(message, list) or len(message) != 3 or message[0] != b"message":
            return
        names = message[2]
        if names is None:
            self.invalidations += 1
            self.on_invalidate(None)
            return
        for name in names:
            self.invalidations += 1
            self.on_invalidate(name)
