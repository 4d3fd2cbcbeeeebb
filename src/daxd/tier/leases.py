"""Stream-shard leases and checkpoints in Valkey: one reader per shard across every node sharing it.

The decisions are :mod:`daxd.streams.leasing`'s (pure); this module performs
them on Valkey and is the stream tailer's :class:`~daxd.streams.tailer.ShardLeases`.

Keys (``<table> NUL <shard id>``; table names cannot hold a NUL):

=================================  =============================================================
``dx:l:{<table> NUL <shard>}``     the shard's lease: the holder's node name, expiring after
                                   :data:`LEASE_MS` unless the holder renews it (every
                                   :data:`ROUND` seconds, compare-and-renew)
``dx:c:{<table> NUL <shard>}``     the shard's checkpoint: ``<stream ARN> LF <sequence number>``
                                   of the last record applied (``LF end`` once a closed shard was
                                   read to its end); expires 2 days after its last write (a stream
                                   keeps records 24 h), so it survives every node's restart;
                                   written only by the lease's holder (checked in the same script)
``dx:t``                           the tables followed: a sorted set, member the table name, score
                                   the last time (epoch ms) a node that caches it renewed it;
                                   forgotten after :data:`TABLE_MS` without renewal
``dx:q:t:<table>``                 bumped when a reader may have missed records of the table (it
                                   started at ``LATEST``, or trimmed data): every node hears it
                                   (tracking) and drops what it cached of the table; the table's
                                   items and pages are removed from the shared tier
=================================  =============================================================

Each round (:data:`ROUND` seconds; :data:`FREE_ROUND` while a known shard
has no holder) a node: renews the leases it holds (a lease found taken or
expired is lost: its reader stops); renews the tables it
caches in ``dx:t`` and starts following any table another node registered
(so a holder follows a table it never read itself); reads the holders of
every shard it knows and takes free ones up to its fair share
(:func:`daxd.streams.leasing.plan`), each with ``SET NX PX`` in a script that
also returns the checkpoint, so the reader resumes right after it. A stopping
node deletes its leases, so they move at once. A killed node's leases are
taken at the next round too: each node's lease client is named
``dxl:<node name>``, and a holder with no such connection in ``CLIENT LIST``
is gone (its kernel closed its connections), so its lease is taken before it
expires, with the same script checking it still names the gone holder. A node
cut off without its connections closing (a partition, a hung process) keeps
its leases until they expire (:data:`LEASE_MS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from daxd.streams.leasing import ShardRef, decode_checkpoint, encode_checkpoint, plan
from daxd.streams.planner import Position
from daxd.tasks import cancel_and_wait
from daxd.tier.registry import mget_across_slots
from daxd.tier.shared import TABLE_DISTRUST, table_entry_patterns

if TYPE_CHECKING:
    from daxd.accelerator import Accelerator

log = logging.getLogger("daxd.streams")

LEASE, CHECKPOINT, TABLES = b"dx:l:", b"dx:c:", b"dx:t"
#: A lease lives this long without renewal (a dead holder's shards wait at most this long).
LEASE_MS = 3000
#: Seconds between rounds (renewals, table registry, acquisitions).
ROUND = 1.0
#: Seconds between rounds while some known shard has no holder (it is read by nobody: hurry).
FREE_ROUND = 0.2
#: A table nobody renewed for this long is no longer followed by nodes that do not cache it.
TABLE_MS = 3_600_000
#: A checkpoint outlives its last write this long: a stream keeps records 24 hours, so an older
#: checkpoint names trimmed records anyway (the reader would start at TRIM_HORIZON and distrust).
CHECKPOINT_MS = 2 * 24 * 3_600_000
#: Tables registered per node (bounded, like everything a node sends).
MAX_TABLES = 1000
#: The connection name of a node's lease client (``CLIENT SETNAME``): its absence from ``CLIENT LIST``
#: means the node is gone (a killed process's connections are closed by its kernel at once).
CLIENT_NAME = "dxl:"

#: KEYS: lease, checkpoint. ARGV: node, ms, the dead holder ("" if none). Take a free lease, a dead
#: holder's, or keep ours; returns {held, checkpoint}.
ACQUIRE_SCRIPT = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] and holder ~= ARGV[3] then return {0, false} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, redis.call('GET', KEYS[2])}
"""
#: KEYS: lease. ARGV: node, ms. Extend our lease; 0: it is not ours any more.
RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
#: KEYS: lease, checkpoint. ARGV: node, checkpoint, ms. Advance the checkpoint only while the lease is ours.
CHECKPOINT_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
"""
#: KEYS: lease. ARGV: node. Give a lease back (only ours).
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0
"""


def shard_id(table: str, shard: str) -> bytes:
    """``{table NUL shard}``: hash-tagged, so a shard's lease and checkpoint share a cluster slot
    (the scripts that read one and write the other need both on one shard)."""
    return b"{" + table.encode() + b"\x00" + shard.encode() + b"}"


class StreamLeases:
    """This node's leases: the tailer's :class:`~daxd.streams.tailer.ShardLeases`, kept by one task.

    Args:
        client: a client of the shared tier's Valkey named :data:`CLIENT_NAME` + ``name``
            (:meth:`daxd.tier.client.ValkeyTier.named_client`); closed by :meth:`stop`.
        name: this node's name (the value of its leases).
        accelerator: its tables are registered; tables others registered are followed.
        live: how many nodes are live, this one included (membership).
        wake: told when the leases held changed (the tailer re-plans its streams).
        wall: epoch seconds (the table registry's scores).
    """

    def __init__(self, client: Any, *, name: str, accelerator: Accelerator, live: Callable[[], int],
                 wake: Callable[[], None] = lambda: None, wall: Callable[[], float] = time.time) -> None:
        self.client = client
        self.name = name
        self.accelerator = accelerator
        self.live = live
        self.wake = wake
        self.wall = wall
        #: Every shard listed by a DescribeStream of a followed stream, and the ones read to their end.
        self.known: dict[ShardRef, None] = {}
        self.ended: set[ShardRef] = set()
        #: The leases held, with the position their checkpoint says to resume from (None: none).
        self.held: dict[ShardRef, Position | None] = {}
        self._acquire = self.client.register_script(ACQUIRE_SCRIPT)
        self._renew = self.client.register_script(RENEW_SCRIPT)
        self._checkpoint = self.client.register_script(CHECKPOINT_SCRIPT)
        self._release = self.client.register_script(RELEASE_SCRIPT)
        self._task: asyncio.Task[None] | None = None
        self._trouble_logged = False
        self._poke = asyncio.Event()
        #: Whether the last round saw a shard without a holder.
        self.unread = False

    # -- the tailer's hooks --------------------------------------------------

    def listed(self, table: str, stream: str, shards: Sequence[str]) -> None:
        listed = {ShardRef(table, stream, s) for s in shards}
        for ref in [r for r in self.known if r.table == table and r not in listed]:
            del self.known[ref]  # trimmed, or an older stream of the table
        if not listed <= self.known.keys():
            self._poke.set()  # a new shard: try for it now, not at the next round
        self.known.update(dict.fromkeys(listed))

    def owns(self, table: str, stream: str, shard: str) -> bool:
        return ShardRef(table, stream, shard) in self.held

    def position(self, table: str, stream: str, shard: str) -> Position | None:
        return self.held.get(ShardRef(table, stream, shard))

    async def checkpoint(self, table: str, stream: str, shard: str, sequence: str) -> bool:
        ref = ShardRef(table, stream, shard)
        name = shard_id(table, shard)
        try:
            ok = await self._checkpoint(keys=[LEASE + name, CHECKPOINT + name],
                                        args=[self.name, encode_checkpoint(stream, sequence), CHECKPOINT_MS])
        except Exception as exc:  # Valkey unreachable: we cannot prove the lease is ours, so stop
            log.warning("stream lease of %s %s: checkpoint failed (%s): stopping its reader", table, shard, exc)
            ok = 0
        if ok:
            if ref in self.held:
                self.held[ref] = Position.after(sequence)
            return True
        self.held.pop(ref, None)
        log.info("stream lease of %s %s lost: its reader stops", table, shard)
        return False

    async def finished(self, table: str, stream: str, shard: str, sequence: str | None) -> None:
        ref = ShardRef(table, stream, shard)
        self.ended.add(ref)
        name = shard_id(table, shard)
        with contextlib.suppress(Exception):
            await self._checkpoint(keys=[LEASE + name, CHECKPOINT + name],
                                   args=[self.name, encode_checkpoint(stream, sequence or "0", ended=True),
                                              CHECKPOINT_MS])
            await self._release(keys=[LEASE + name], args=[self.name])
        self.held.pop(ref, None)

    async def distrust(self, table: str, stream: str) -> None:
        """The tailer's ``distrust``: every node drops what it cached of ``table``, and so does the tier.

        Bumping ``dx:q:t:<table>`` makes Valkey push its name to every node
        (their L1s, this one's included); the table's shared entries are removed here.
        """
        dropped = self.accelerator.distrust(table)
        try:
            await self.client.incr(TABLE_DISTRUST + table.encode())  # no expiry: one would push a distrust
            for pattern in table_entry_patterns(table):
                batch: list[bytes] = []
                async for key in self.client.scan_iter(match=pattern, count=1000):
                    batch.append(key)
                    if len(batch) >= 500:
                        await self.client.unlink(*batch)
                        batch = []
                if batch:
                    await self.client.unlink(*batch)
        except Exception as exc:  # the tier is down: every node drops its L1 anyway, and resyncs
            log.warning("distrusting table %s in the shared tier failed: %s", table, exc)
        log.debug("stream %s of table %s positioned: %d local entries dropped, every node told", stream, table,
                  dropped)

    # -- the round -------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="daxd-stream-leases")

    async def stop(self) -> None:
        """Stop the rounds and give every lease back (another node resumes them at once)."""
        task, self._task = self._task, None
        await cancel_and_wait([task])
        held, self.held = list(self.held), {}
        with contextlib.suppress(Exception):
            for ref in held:
                await self._release(keys=[LEASE + shard_id(ref.table, ref.shard)], args=[self.name])
        with contextlib.suppress(Exception):
            await self.client.aclose()

    async def _run(self) -> None:
        while True:
            try:
                await self.round()
                self._trouble_logged = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Valkey down: leases expire; checkpoints stop the readers
                if not self._trouble_logged:
                    log.warning("stream leases: round failed (%s); retrying every %g s", exc, ROUND)
                    self._trouble_logged = True
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._poke.wait(), FREE_ROUND if self.unread else ROUND)
            self._poke.clear()

    async def round(self) -> None:
        """Renew, register tables, follow the others', take free shards up to the fair share."""
        changed = await self._renew_held()
        await self._sync_tables()
        known = list(self.known)
        if known:
            holders = await mget_across_slots(self.client, [LEASE + shard_id(r.table, r.shard) for r in known])
            found = {r: (h.decode() if h is not None else None) for r, h in zip(known, holders, strict=True)}
            dead = await self._dead_holders({h for h in found.values() if h is not None and h != self.name})
            gone = {r: h for r, h in found.items() if h in dead}
            for ref in gone:
                found[ref] = None  # free to take: its holder is gone, its lease not expired yet
            decision = plan(self.name, known, found, self.live(), self.ended)
            unlisted = tuple(r for r in self.held if r not in self.known)  # trimmed, or the table re-created
            self.unread = any(found[r] is None for r in known if r not in self.ended)
            for ref in (*decision.release, *unlisted):
                await self._release(keys=[LEASE + shard_id(ref.table, ref.shard)], args=[self.name])
                self.held.pop(ref, None)
                log.info("stream lease of %s %s given back", ref.table, ref.shard)
                changed = True
            for ref in decision.acquire:
                changed |= await self._take(ref, gone.get(ref, ""))
        if changed:
            self.wake()

    async def _renew_held(self) -> bool:
        if not self.held:
            return False
        refs = list(self.held)
        pipe = self.client.pipeline(transaction=False)
        for ref in refs:
            await self._renew(keys=[LEASE + shard_id(ref.table, ref.shard)], args=[self.name, LEASE_MS], client=pipe)
        results = await pipe.execute()
        lost = [ref for ref, ok in zip(refs, results, strict=True) if not ok]
        for ref in lost:
            self.held.pop(ref, None)
            log.warning("stream lease of %s %s lost (expired or taken): its reader stops", ref.table, ref.shard)
        return bool(lost)

    async def _dead_holders(self, holders: set[str]) -> set[str]:
        """The holders with no lease client connected to Valkey: killed, or cut off from it.

        Their leases are taken at once instead of after their expiry. Where ``CLIENT LIST``
        is not allowed (some managed services), leases move on expiry only.
        """
        if not holders:
            return set()
        try:
            clients = await self.client.client_list(_type="normal")
        except Exception:
            return set()
        if not isinstance(clients, list) or not all(isinstance(c, dict) for c in clients):
            return set()  # not one server's list (e.g. cluster mode): leases move on expiry only
        connected = {str(c.get("name", "")) for c in clients}
        return {h for h in holders if CLIENT_NAME + h not in connected}

    async def _take(self, ref: ShardRef, dead: str = "") -> bool:
        name = shard_id(ref.table, ref.shard)
        took, raw = await self._acquire(keys=[LEASE + name, CHECKPOINT + name], args=[self.name, LEASE_MS, dead])
        if not took:
            return False
        checkpoint = decode_checkpoint(raw)
        if checkpoint is not None and checkpoint.ended and checkpoint.stream == ref.stream:
            self.ended.add(ref)
            await self._release(keys=[LEASE + name], args=[self.name])
            return False
        self.held[ref] = checkpoint.resume(ref.stream) if checkpoint is not None else None
        log.info("stream lease of %s %s taken%s, %s", ref.table, ref.shard, f" from {dead} (gone)" if dead else "",
                 f"resuming after {checkpoint.sequence}" if checkpoint is not None else "no checkpoint yet")
        return True

    async def _sync_tables(self) -> None:
        """Renew this node's tables in ``dx:t``; follow every table a live registration names."""
        acc = self.accelerator
        mine = sorted(acc.tables_seen | set(acc.schemas))[:MAX_TABLES]
        now_ms = int(self.wall() * 1000)
        pipe = self.client.pipeline(transaction=False)
        if mine:
            pipe.zadd(TABLES, dict.fromkeys(mine, now_ms))
        pipe.zremrangebyscore(TABLES, "-inf", now_ms - TABLE_MS)
        pipe.zrange(TABLES, 0, MAX_TABLES - 1)
        *_, names = await pipe.execute()
        for raw in names:
            table = raw.decode(errors="replace")
            if table not in acc.tables_seen:
                acc.see_table(table)


async def leases(client: Any) -> list[dict[str, Any]]:
    """Every shard with a lease or a checkpoint: table, shard, holder (None: free), checkpoint
    (sequence number, None: none), ttl (seconds the lease has left, None: free); for ``daxd status``."""
    rows: dict[bytes, dict[str, Any]] = {}
    for prefix in (LEASE, CHECKPOINT):
        async for key in client.scan_iter(match=prefix + b"*", count=1000):
            name = key[len(prefix):]
            table, _, shard = name.removeprefix(b"{").removesuffix(b"}").partition(b"\x00")
            rows.setdefault(name, {"table": table.decode(errors="replace"), "shard": shard.decode(errors="replace"),
                                   "holder": None, "checkpoint": None, "ttl": None})
    names = sorted(rows)
    if names:
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.get(LEASE + name)
            pipe.pttl(LEASE + name)
            pipe.get(CHECKPOINT + name)
        answers = await pipe.execute()
        for i, name in enumerate(names):
            holder, ttl, raw = answers[3 * i:3 * i + 3]
            checkpoint = decode_checkpoint(raw)
            row = rows[name]
            row["holder"] = holder.decode(errors="replace") if holder is not None else None
            row["ttl"] = ttl / 1000 if holder is not None and ttl is not None and ttl >= 0 else None
            row["checkpoint"] = checkpoint.sequence if checkpoint is not None else None
    return [rows[n] for n in names]
