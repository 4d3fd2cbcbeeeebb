"""The shared second tier (L2) as the Accelerator sees it: key names, calls and their answers, no I/O.

Plans do no I/O: to read or change the shared tier a plan yields a
:class:`TierCall` (a :class:`~daxd.messages.Call` the driver sends to Valkey
instead of DynamoDB) and gets bytes back, exactly as for an upstream call.
:mod:`daxd.tier.client` performs them.

Keys. ``T`` is the table name (DynamoDB table names hold neither NUL nor
braces), ``K`` the canonical key, ``P`` the canonical partition key value,
``h(x)`` the CRC-32 of ``x`` in 8 hex digits and ``D`` a 128-bit BLAKE2b digest
of a Query/Scan request (its canonical JSON):

==================================  ====================================================================
``dx:i:{T NUL h(K)}K``              the item: ``1`` + its DynamoDB JSON, or ``0`` (not found);
                                    expires with the table's item TTL
``dx:g:{T NUL h(K)}K``              the key's generation: INCR by every write through any node
``dx:w:{T NUL h(K)}K``              present for ``--consistent-window`` seconds after a write
``dx:q:p:{T NUL h(P)}P``            a partition's query generation: INCR by every write to it
``dx:qw:{T NUL h(P)}P``             present for the consistent window after a write to the partition
``dx:qp:{T NUL h(P)}D``             a base-table Query page of that partition: ``<generation>|<body>``
``dx:q:s:{T}``                      the table's query generation: INCR by every write to the table
``dx:qw:{T}``                       present for the consistent window after a write to the table
``dx:qs:{T}D``                      a Scan page, or a Query page of an index: ``<generation>|<body>``
``dx:q:t:T``                        INCR when a stream reader distrusts the table
                                    (:mod:`daxd.tier.leases`): every node drops its L1 of it
==================================  ====================================================================

**Hash tags.** The part in braces is the key's hash tag: in cluster mode
Valkey places a key by its tag alone, so every group of keys one script or one
``MGET`` touches shares a slot: an item with its generation and marker (the
fill guard, the write commit), a page with the generation and marker it depends
on. Items are tagged by key, not by partition, so one large partition still
spreads over every shard (and a GetItem needs no key schema to name its keys).
A write's item commit and its query-generation bumps are separate commands
(different slots), all sent before the write is acknowledged; nothing needs
them to be atomic together, because a page is checked only against its own
generation. The tag's hash, not ``K`` or ``P`` itself, is inside the braces:
canonical keys contain ``}``, which would end a tag early.

**Coherence.** Every node tracks the prefixes ``dx:g:``, ``dx:q:p:`` and
``dx:q:t:`` (``CLIENT TRACKING ... BCAST``): a write anywhere changes a key
under them, and Valkey pushes its name to every node, which drops its L1
copies (:func:`parse_invalidation`): the item's entries, or the partition's
Queries (and with them the table's Scans and index Queries, as a local write
does), or the whole table (a distrust). The table's query generation
(``dx:q:s:``) is not tracked: a write always bumps a partition too.
:func:`table_entry_patterns` names what a table-wide removal must delete.
Fills and markers are not tracked, so reads cause no invalidation traffic.

**Guards.** A miss reads the item (or page) and its generation in one
``MGET``; the fill script stores the answer only if the generation is still
the one read; a write's commit increments it. So a fill that raced a write
through any node never stores the pre-write value. A page carries the
generation it was filled under and is served only while that is current: a
write makes every page of its partition, and every Scan page of its table,
unreachable in O(1). A page's fill extends its generation key's life to
:data:`GEN_TTL_MS`, and pages live at most that long, so a generation key never
expires (and restarts from 1) under a live page.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any

from daxd.messages import Call, Change, Response
from daxd.model.errors import DaxdError

ITEM, GEN, WRITTEN = b"dx:i:", b"dx:g:", b"dx:w:"
QUERY_PART, QUERY_TABLE, QUERY_WRITTEN = b"dx:q:p:", b"dx:q:s:", b"dx:qw:"
PAGE_PART, PAGE_TABLE = b"dx:qp:", b"dx:qs:"
#: Bumped (``dx:q:t:`` + the table's name) when a table is distrusted: every node drops its L1 of it.
TABLE_DISTRUST = b"dx:q:t:"
#: Prefixes every node tracks (their changes are what invalidates L1 copies).
TRACKED = (GEN, QUERY_PART, TABLE_DISTRUST)
#: Milliseconds a generation key outlives its last write or page fill: far longer than any fill
#: can be in flight, and the longest a page lives in the tier.
GEN_TTL_MS = 3_600_000

#: KEYS: item, gen. ARGV: token (the generation the miss read, "" if none), value, ttl ms (0: none).
FILL_SCRIPT = """
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[1] then return 0 end
if ARGV[3] == '0' then redis.call('SET', KEYS[1], ARGV[2])
else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
"""

#: KEYS: page, gen. ARGV: token (the generation the miss read, "" if none), value, ttl ms (> 0).
#: The generation key is made to outlive the page (see the module docstring).
PAGE_FILL_SCRIPT = """
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if ARGV[1] ~= '' then redis.call('PEXPIRE', KEYS[2], """ + str(GEN_TTL_MS) + """) end
return 1
"""

#: KEYS: item, gen, written. ARGV: 's' (store ARGV[2]) or 'e' (evict), value, ttl ms (0: none), window ms.
#: A key written twice within the window is evicted, not stored: two nodes' acknowledgements
#: may arrive in the opposite order to the one DynamoDB applied.
COMMIT_SCRIPT = """
local recent = redis.call('EXISTS', KEYS[3]) == 1
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], """ + str(GEN_TTL_MS) + """)
if ARGV[1] == 's' and not recent then
  if ARGV[3] == '0' then redis.call('SET', KEYS[1], ARGV[2])
  else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
else redis.call('DEL', KEYS[1]) end
if ARGV[4] ~= '0' then redis.call('SET', KEYS[3], '1', 'PX', ARGV[4]) end
return 1
"""

#: KEYS: a query generation, its "recently written" marker. ARGV: window ms.
BUMP_SCRIPT = """
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], """ + str(GEN_TTL_MS) + """)
if ARGV[1] ~= '0' then redis.call('SET', KEYS[2], '1', 'PX', ARGV[1]) end
return 1
"""

#: The answer of a tier call when Valkey could not be reached: the plan carries on without the tier.
DOWN = b"!"

#: One item script of a commit: (item, gen, written) keys and (mode, value, ttl ms, window ms).
ItemCommit = tuple[tuple[bytes, bytes, bytes], tuple[bytes, bytes, str, str]]
#: One query-generation bump of a commit: (generation, marker) keys.
Bump = tuple[bytes, bytes]


class TierCall(Call):
    """A call for the shared tier; ``args`` are what the performer needs (key names, values).

    ``tier.get`` (args: keys to MGET), ``tier.fill`` and ``tier.page_fill`` ((keys, script args)),
    ``tier.commit`` ((item commits, bumps, window ms)).
    """

    __slots__ = ("args",)

    def __init__(self, operation: str, args: tuple[Any, ...]) -> None:
        super().__init__(operation, b"")
        self.args = args


@dataclass(frozen=True, slots=True)
class Lookup:
    """What the shared tier holds for one key (or one Query/Scan page)."""

    found: bool
    #: The item's JSON (None: not found) or the page's body.
    item: bytes | None
    #: The key's (page's) generation as Valkey stores it (b"" when it has none): the fill's token.
    generation: bytes
    #: Written through some node within the consistent window: refill with ConsistentRead.
    recent: bool
    #: The tier could not be reached: answer from DynamoDB, cache in L1 only briefly.
    down: bool = False


def _tag(table: str, part: bytes) -> bytes:
    return b"{" + table.encode() + b"\x00" + b"%08x" % zlib.crc32(part) + b"}" + part


def item_id(table: str, key: bytes) -> bytes:
    """The part of an item's key names after the prefix: hash tag, then the canonical key."""
    return _tag(table, key)


def item_keys(table: str, key: bytes) -> tuple[bytes, bytes, bytes]:
    name = _tag(table, key)
    return ITEM + name, GEN + name, WRITTEN + name


def query_generation(table: str, partition: bytes | None) -> Bump:
    """The generation (and marker) a page depends on: its partition's, or its table's (None)."""
    if partition is None:
        tag = b"{" + table.encode() + b"}"
        return QUERY_TABLE + tag, QUERY_WRITTEN + tag
    name = _tag(table, partition)
    return QUERY_PART + name, QUERY_WRITTEN + name


def page_key(table: str, partition: bytes | None, request: bytes) -> bytes:
    digest = hashlib.blake2b(request, digest_size=16).digest()
    if partition is None:
        return PAGE_TABLE + b"{" + table.encode() + b"}" + digest
    return PAGE_PART + b"{" + table.encode() + b"\x00" + b"%08x" % zlib.crc32(partition) + b"}" + digest


def encode_lookup(item: bytes | None, generation: bytes | None, written: bytes | None) -> bytes:
    """The performer's answer to ``tier.get`` (an MGET of value, generation, marker)."""
    flag = b"w" if written is not None else b"-"
    return (generation or b"") + b"|" + flag + (item or b"")


def decode_lookup(reply: bytes) -> Lookup:
    if reply == DOWN:
        return Lookup(False, None, b"", False, down=True)
    generation, _, rest = reply.partition(b"|")
    recent, value = rest[:1] == b"w", rest[1:]
    if not value:
        return Lookup(False, None, generation, recent)
    return Lookup(True, value[1:] if value[:1] == b"1" else None, generation, recent)


def decode_page(reply: bytes) -> Lookup:
    """A page is found only if it was filled under the generation current now."""
    if reply == DOWN:
        return Lookup(False, None, b"", False, down=True)
    generation, _, rest = reply.partition(b"|")
    recent, value = rest[:1] == b"w", rest[1:]
    filled_under, sep, body = value.partition(b"|")
    if not sep or filled_under != generation:
        return Lookup(False, None, generation, recent)
    return Lookup(True, body, generation, recent)


def ttl_ms(seconds: float) -> str:
    return str(int(seconds * 1000))


class SharedTier:
    """The Accelerator's side of the shared tier: which calls to yield, and what their answers mean."""

    def __init__(self, *, item_ttl: float, consistent_window: float, degraded_ttl: float = 1.0,
                 item_ttl_of: Callable[[str], float] | None = None) -> None:
        self.item_ttl_ms = ttl_ms(item_ttl)
        #: A table's own item TTL (the Accelerator's per-table policy); None: ``item_ttl`` for all.
        self.item_ttl_of = item_ttl_of
        self.window_ms = ttl_ms(consistent_window)
        #: Seconds an L1 entry may live while the tier is down (``--degraded-ttl``).
        self.degraded_ttl = degraded_ttl
        #: Changes of acknowledged writes, appended by the Accelerator's ``on_write`` hook and
        #: committed to Valkey before the write is answered (:meth:`around_write`).
        self.outbox: list[Change] = []

    def lookup(self, table: str, key: bytes) -> Generator[Call, bytes, Lookup]:
        reply = yield TierCall("tier.get", item_keys(table, key))
        return decode_lookup(reply)

    def fill(self, table: str, key: bytes, looked: Lookup, item: bytes | None,
             ttl: float | None = None) -> Generator[Call, bytes, bool]:
        """Store a miss's answer unless a write changed the key since ``looked`` was read; True if stored."""
        if looked.down:
            return False
        name, generation, _ = item_keys(table, key)
        value = b"0" if item is None else b"1" + item
        expiry = self.item_ttl_ms if ttl is None else ttl_ms(ttl)
        reply = yield TierCall("tier.fill", ((name, generation), (looked.generation, value, expiry)))
        return reply == b"1"

    def page_lookup(self, table: str, partition: bytes | None, request: bytes) -> Generator[Call, bytes, Lookup]:
        """A Query/Scan page, valid only under its current generation (``partition`` None: a Scan or
        an index Query, which depend on the whole table)."""
        generation, marker = query_generation(table, partition)
        reply = yield TierCall("tier.get", (page_key(table, partition, request), generation, marker))
        return decode_page(reply)

    def page_fill(self, table: str, partition: bytes | None, request: bytes, looked: Lookup, body: bytes,
                  ttl: float) -> Generator[Call, bytes, bool]:
        """Store a page unless a write changed its generation since ``looked`` was read; True if stored."""
        if looked.down or ttl <= 0:
            return False
        generation, _ = query_generation(table, partition)
        expiry = str(min(int(ttl * 1000), GEN_TTL_MS))
        reply = yield TierCall("tier.page_fill", ((page_key(table, partition, request), generation),
                                                  (looked.generation, looked.generation + b"|" + body, expiry)))
        return reply == b"1"

    def commit(self, changes: Iterable[Change]) -> TierCall:
        """One call committing a write's changes: images stored, keys evicted, generations bumped."""
        items: list[ItemCommit] = []
        bumps: dict[Bump, None] = {}
        for change in changes:
            store = not change.unknown
            value = b"" if not store else (b"0" if change.image is None else b"1" + change.image)
            expiry = self.item_ttl_ms if self.item_ttl_of is None else ttl_ms(self.item_ttl_of(change.table))
            items.append((item_keys(change.table, change.key),
                          (b"s" if store else b"e", value, expiry, self.window_ms)))
            if change.partition is not None:
                bumps[query_generation(change.table, change.partition)] = None
                bumps[query_generation(change.table, None)] = None
        return TierCall("tier.commit", (tuple(items), tuple(bumps), self.window_ms))

    def around_write(self, plan: Generator[Call, bytes, Response]) -> Generator[Call, bytes, Response]:
        """Run a write's plan; before it answers (or fails), commit what it changed to the tier.

        The Accelerator reports a write's changes through ``on_write`` during
        the step that finishes the plan; plans run one step at a time on one
        thread, so what the outbox holds after a step is this plan's.
        """
        reply: bytes | None = None
        error: DaxdError | None = None
        while True:
            try:
                call = plan.throw(error) if error is not None else plan.send(reply)  # type: ignore[arg-type]
            except StopIteration as done:
                yield from self._flush()
                result: Response = done.value
                return result
            except DaxdError:
                yield from self._flush()
                raise
            yield from self._flush()
            try:
                reply, error = (yield call), None
            except DaxdError as exc:
                reply, error = None, exc

    def _flush(self) -> Generator[Call, bytes, None]:
        if self.outbox:
            changes = self.outbox[:]
            self.outbox.clear()
            yield self.commit(changes)


@dataclass(frozen=True, slots=True)
class Invalidation:
    """What a pushed key name means for L1: an item's entries, a partition's queries, or (``queries``
    without a partition) the whole table."""

    table: str
    key: bytes | None = None
    partition: bytes | None = None
    queries: bool = False


def _untag(rest: bytes) -> tuple[str, bytes] | None:
    """``{T NUL h}X`` -> (T, X); None if it is not shaped so."""
    end = rest.find(b"}")
    if not rest.startswith(b"{") or end < 0:
        return None
    table, sep, _ = rest[1:end].partition(b"\x00")
    return (table.decode(errors="replace"), rest[end + 1:]) if sep else None


def table_entry_patterns(table: str) -> tuple[bytes, ...]:
    """``SCAN MATCH`` patterns of every item and page of ``table`` in the tier (table names hold no
    glob characters). Removing them, and bumping :data:`TABLE_DISTRUST`, forgets the table everywhere."""
    name = table.encode()
    return (ITEM + b"{" + name + b"\x00*", PAGE_PART + b"{" + name + b"\x00*", PAGE_TABLE + b"{" + name + b"}*")


def parse_invalidation(name: bytes) -> Invalidation | None:
    """The L1 entries a changed Valkey key stands for (None: not one of ours)."""
    if name.startswith(GEN):
        found = _untag(name[len(GEN):])
        return None if found is None else Invalidation(found[0], key=found[1])
    if name.startswith(QUERY_PART):
        found = _untag(name[len(QUERY_PART):])
        return None if found is None else Invalidation(found[0], partition=found[1], queries=True)
    if name.startswith(TABLE_DISTRUST) and len(name) > len(TABLE_DISTRUST):
        return Invalidation(name[len(TABLE_DISTRUST):].decode(errors="replace"), queries=True)
    return None
