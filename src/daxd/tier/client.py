"""The I/O side of the shared tier: performs plans' tier calls on Valkey and hears its invalidations.

Client library: valkey-py with its C parser (libvalkey); see
docs/architecture.md for the measured comparison with redis-py + hiredis.

Coherence: per Valkey primary, one connection subscribes to
``__redis__:invalidate`` and a second turns on ``CLIENT TRACKING ... REDIRECT
<first> BCAST`` for the prefixes of :data:`daxd.tier.shared.TRACKED`. Valkey
then pushes the name of every key a write changes under them, from any node,
and the Accelerator drops its L1 copies of it. In cluster mode
(``--valkey-cluster``) tracking is per server, so every primary gets its pair;
the primaries are listed with ``CLUSTER NODES`` and listed again every few
seconds: a change (a failover, a primary added or removed) reconnects
everything, as a lost connection does. Each tracking connection is pinged every
half second; when one breaks (or a tier call fails) the tier is *down*:

- the Accelerator's L1 is dropped at once (invalidations may be lost from now),
  and again when the tier is back, before it is trusted;
- tier calls answer :data:`~daxd.tier.shared.DOWN` at once: misses go to
  DynamoDB, and L1 keeps what it caches only for ``--degraded-ttl`` seconds
  (the Accelerator is told through ``on_lost(True)``); writes go through;
- the keys and query generations of every write whose commit could not reach
  Valkey are remembered (bounded) and evicted or bumped in the tier on
  reconnection, before anything is served from it again; past the bound every
  ``dx:`` key is removed instead;
- the listener reconnects with backoff; each transition is logged once.

TLS (``rediss://``): ``--valkey-ca`` verifies the server against a CA bundle
(else the system's), ``--valkey-cert``/``--valkey-key`` present a client
certificate (mutual TLS); the server's name is checked against the URL's host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import valkey.asyncio as valkey_async
from valkey.asyncio.cluster import ValkeyCluster
from valkey.exceptions import ValkeyError

from daxd.tasks import cancel_and_wait
from daxd.tier.shared import (
    BUMP_SCRIPT,
    COMMIT_SCRIPT,
    DOWN,
    FILL_SCRIPT,
    PAGE_FILL_SCRIPT,
    TRACKED,
    TierCall,
    encode_lookup,
)

log = logging.getLogger("daxd.tier")

#: Keys of writes not yet committed to the tier remembered while it is down; past this, flush it all.
MAX_UNSYNCED = 100_000
_PING_EVERY = 0.5
#: Pings between two listings of a cluster's primaries.
_TOPOLOGY_EVERY = 4
_FAILURES = (ValkeyError, OSError, asyncio.TimeoutError)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Files for a ``rediss://`` connection (None: the default for each)."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    def options(self) -> dict[str, Any]:
        found: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
        if self.ca is not None:
            found["ssl_ca_certs"] = self.ca
        if self.cert is not None:
            found["ssl_certfile"], found["ssl_keyfile"] = self.cert, self.key
        return found


def primaries_of(listing: str, seed_host: str) -> list[tuple[str, int]]:
    """The primaries serving slots in a ``CLUSTER NODES`` answer, as (host, port), sorted."""
    found = []
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) < 9 or "master" not in fields[2].split(",") or "fail" in fields[2].split(","):
            continue
        address = fields[1].split("@")[0].split(",")[0]
        host, _, port = address.rpartition(":")
        found.append((host or seed_host, int(port)))
    return sorted(found)


class ValkeyTier:
    """Performs :class:`TierCall` s and keeps L1 coherent through tracking pushes."""

    def __init__(self, url: str, *, on_invalidate: Callable[[bytes | None], None],
                 on_lost: Callable[[bool], object], timeout: float = 1.0, cluster: bool = False,
                 tls: TlsFiles | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self.cluster = cluster
        #: Told each pushed key name (None: everything, e.g. FLUSHALL).
        self.on_invalidate = on_invalidate
        #: Told when L1 can no longer be trusted: True when the tier went down (cache only
        #: briefly from now), False when it is back (and was resynced).
        self.on_lost = on_lost
        self.options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        if urlsplit(url).scheme in ("rediss", "valkeys"):
            self.options.update((tls or TlsFiles()).options())
        self.client: Any
        if cluster:
            self.client = ValkeyCluster.from_url(url, **self.options)
        else:
            self.client = valkey_async.from_url(url, **self.options)  # type: ignore[no-untyped-call]
        self._fill = self.client.register_script(FILL_SCRIPT)
        self._page_fill = self.client.register_script(PAGE_FILL_SCRIPT)
        self._commit = self.client.register_script(COMMIT_SCRIPT)
        self._bump = self.client.register_script(BUMP_SCRIPT)
        self.up = False
        self.reason = "not connected yet"
        self.invalidations = 0
        #: Times the tier was (re)connected and trusted again.
        self.connects = 0
        #: Primaries tracked now ((host, port); the URL's server alone without cluster mode).
        self.tracked: list[tuple[str, int]] = []
        #: Item key triples and (generation, marker) pairs of commits that did not reach Valkey.
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
                value, generation, written = await self.client.mget(*call.args)
                return encode_lookup(value, generation, written)
            if call.operation in ("tier.fill", "tier.page_fill"):
                keys, args = call.args
                script = self._fill if call.operation == "tier.fill" else self._page_fill
                stored = await script(keys=list(keys), args=list(args))
                return b"1" if stored else b"0"
            if call.operation == "tier.commit":
                items, bumps, window = call.args
                await self._apply(items, [(keys, (window,)) for keys in bumps])
                return b"1"
        except _FAILURES as exc:
            self._remember(call)
            self._went_down(f"{type(exc).__name__}: {exc}")
            return DOWN
        raise ValueError(f"unknown tier call {call.operation}")

    async def _apply(self, items: Any, bumps: Any) -> None:
        """Run item commit scripts and generation bumps: one pipeline, or (cluster) concurrently."""
        scripts = [(self._commit, keys, args) for keys, args in items] + [(self._bump, k, a) for k, a in bumps]
        if self.cluster:
            await asyncio.gather(*(script(keys=list(keys), args=list(args)) for script, keys, args in scripts))
            return
        pipe = self.client.pipeline(transaction=False)
        for script, keys, args in scripts:
            await script(keys=list(keys), args=list(args), client=pipe)
        await pipe.execute()

    def _remember(self, call: TierCall) -> None:
        """A commit that did not reach Valkey: its keys are evicted (its generations bumped) on reconnection."""
        if call.operation != "tier.commit":
            return
        items, bumps, _ = call.args
        for keys in [keys for keys, _ in items] + list(bumps):
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
            await self._apply([(keys, (b"e", b"", b"0", b"0")) for keys in batch if len(keys) == 3],
                              [(keys, (b"0",)) for keys in batch if len(keys) == 2])
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
        self.on_lost(True)  # until the first connection, L1 caches only briefly
        self._task = asyncio.get_running_loop().create_task(self._run(), name="daxd-tier-tracking")

    async def wait_connected(self, timeout: float) -> bool:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout)
        return self.up

    async def stop(self) -> None:
        await cancel_and_wait([self._task])
        await self.client.aclose()

    def _went_down(self, reason: str) -> None:
        if self.up:
            log.warning("shared tier down (%s): dropping L1, serving from DynamoDB until it is back", reason)
            self.on_lost(True)
        self.up = False
        self.reason = reason
        self._trouble.set()

    def _node_url(self, host: str, port: int) -> str:
        parts = urlsplit(self.url)
        return parts._replace(netloc=f"{parts.netloc.rpartition('@')[0]}@{host}:{port}".lstrip("@")).geturl()

    async def _primaries(self) -> list[tuple[str, int]]:
        """The servers to track: every primary in cluster mode, else the URL's own."""
        if not self.cluster:
            return [("", 0)]
        seed = urlsplit(self.url).hostname or "127.0.0.1"
        # The URL's node first; if it is gone, any primary tracked before (it may have been replaced).
        candidates = [self.url] + [self._node_url(host, port) for host, port in self.tracked]
        failure: Exception = ConnectionError("no node to ask")
        for url in candidates:
            pool = valkey_async.ConnectionPool.from_url(url, **self.options)
            try:
                connection = await pool.get_connection("CLUSTER")  # type: ignore[no-untyped-call]
                await connection.send_command("CLUSTER", "NODES")
                listing = await connection.read_response()
            except _FAILURES as exc:
                failure = exc
                continue
            finally:
                await pool.disconnect()
            primaries = primaries_of(listing.decode() if isinstance(listing, bytes) else str(listing), seed)
            if not primaries:
                raise ConnectionError("the cluster has no primary serving slots")
            return primaries
        raise failure

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            pools: list[Any] = []
            try:
                primaries = await self._primaries()
                pairs = []
                for host, port in primaries:
                    url = self._node_url(host, port) if self.cluster else self.url
                    pools.append(pool := valkey_async.ConnectionPool.from_url(url, **self.options))
                    pairs.append(await self._track(pool))
                await self._resync()
                self._trouble.clear()
                self.tracked = primaries if self.cluster else []
                self.on_lost(False)  # invalidations may have been missed while we were not tracking
                if not self.up:
                    log.warning("shared tier up: %s%s", self.url,
                                f" ({len(primaries)} primaries)" if self.cluster else "")
                self.up, self.reason = True, "ok"
                self.connects += 1
                self._connected.set()
                backoff = 0.05
                await self._listen(pairs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._went_down(f"{type(exc).__name__}: {exc}")
            finally:
                for pool in pools:
                    with contextlib.suppress(Exception):
                        await pool.disconnect()
            self._connected.set()  # someone waiting for the first attempt learns it failed
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _track(self, pool: Any) -> tuple[Any, Any]:
        """A listener subscribed to invalidations and a tracker sending them there, on one server."""
        listener = await pool.get_connection("SUBSCRIBE")
        tracker = await pool.get_connection("CLIENT")
        await listener.send_command("CLIENT", "ID")
        listener_id = await listener.read_response()
        await listener.send_command("SUBSCRIBE", "__redis__:invalidate")
        await listener.read_response()
        prefixes = [part for prefix in TRACKED for part in (b"PREFIX", prefix)]
        await tracker.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", listener_id, "BCAST", *prefixes)
        await tracker.read_response()
        return listener, tracker

    async def _listen(self, pairs: list[tuple[Any, Any]]) -> None:
        tasks = [asyncio.create_task(self._listen_one(listener, tracker, watch=self.cluster and index == 0))
                 for index, (listener, tracker) in enumerate(pairs)]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
            raise ConnectionError(self.reason)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task

    async def _listen_one(self, listener: Any, tracker: Any, *, watch: bool) -> None:
        next_ping = time.monotonic() + _PING_EVERY
        pings = 0
        while not self._trouble.is_set():
            message = await listener.read_response(timeout=_PING_EVERY / 2)
            if message is not None:
                self._handle(message)
            if time.monotonic() >= next_ping:
                await tracker.send_command("PING")
                if await tracker.read_response(timeout=self.timeout) is None:
                    raise TimeoutError("no answer to PING")
                next_ping = time.monotonic() + _PING_EVERY
                pings += 1
                if watch and pings % _TOPOLOGY_EVERY == 0:
                    await tracker.send_command("CLUSTER", "NODES")
                    listing = await tracker.read_response(timeout=self.timeout)
                    seed = urlsplit(self.url).hostname or "127.0.0.1"
                    now = primaries_of(listing.decode() if isinstance(listing, bytes) else str(listing), seed)
                    if now != self.tracked:
                        raise ConnectionError(f"cluster primaries changed: {self.tracked} -> {now}")
        raise ConnectionError(self.reason)

    # -- a named client for stream leases (daxd.tier.leases) ---------------

    def named_client(self, name: str) -> Any:
        """A separate client of the same Valkey whose connections carry ``name`` (``CLIENT SETNAME``):
        other nodes see in ``CLIENT LIST`` whether the process holding it is still connected."""
        if self.cluster:
            return ValkeyCluster.from_url(self.url, client_name=name, **self.options)
        return valkey_async.from_url(self.url, client_name=name, **self.options)  # type: ignore[no-untyped-call]

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
