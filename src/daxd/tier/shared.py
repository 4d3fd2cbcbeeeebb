"""The shared second tier (L2) as the Accelerator sees it: key names, calls and their answers, no I/O.

Plans do no I/O: to read or change the shared tier a plan yields a
:class:`TierCall` (a :class:`~daxd.messages.Call` the driver sends to Valkey
instead of DynamoDB) and gets bytes back, exactly as for an upstream call.
:mod:`daxd.tier.valkey` performs them.

Keys (``<id>`` is ``table NUL canonical key``; table names cannot hold a NUL):

============================  =============================================================
``dx:i:<id>``                 the item: ``1`` + its DynamoDB JSON, or ``0`` (not found);
                              expires with ``--item-ttl``
``dx:g:<id>``                 the key's generation: INCR by every write through any node
``dx:w:<id>``                 present for ``--consistent-window`` seconds after a write
``dx:q:p:<table> NUL <part>`` a partition's query generation: INCR by every write to it
``dx:q:t:<table>``            a table's query generation (reserved: whole-table invalidations)
============================  =============================================================

Every node tracks the prefixes ``dx:g:`` and ``dx:q:`` (``CLIENT TRACKING ...
BCAST``): a write anywhere changes a key under them, and Valkey pushes its
name to every node, which drops its L1 copies (:func:`parse_invalidation`).

The fill guard is atomic in Valkey: a miss reads the item and its generation
in one ``MGET``, and the fill script stores the answer only if the generation
is unchanged; a write's commit script increments it. So a fill that raced a
write through any node never stores the pre-write value.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from daxd.cluster.changes import Change
from daxd.messages import Call, Response
from daxd.model.errors import DaxdError

ITEM, GEN, WRITTEN, QUERY_PART, QUERY_TABLE = b"dx:i:", b"dx:g:", b"dx:w:", b"dx:q:p:", b"dx:q:t:"
#: Prefixes every node tracks (their changes are what invalidates L1 copies).
TRACKED = (GEN, b"dx:q:")
#: Seconds a generation key outlives its last write: far longer than any fill can be in flight.
GEN_TTL_MS = 3_600_000

#: KEYS: item, gen. ARGV: token (the generation the miss read, "" if none), value, ttl ms (0: none).
FILL_SCRIPT = """
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[1] then return 0 end
if ARGV[3] == '0' then redis.call('SET', KEYS[1], ARGV[2])
else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
"""

#: KEYS: item, gen, written, query generation ("" if none depends on the key).
#: ARGV: 's' (store ARGV[2]) or 'e' (evict), value, ttl ms (0: none), window ms.
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
if KEYS[4] ~= '' then
  redis.call('INCR', KEYS[4])
  redis.call('PEXPIRE', KEYS[4], """ + str(GEN_TTL_MS) + """)
end
return 1
"""

#: The answer of a tier call when Valkey could not be reached: the plan carries on without the tier.
DOWN = b"!"


class TierCall(Call):
    """A call for the shared tier. ``operation`` is ``tier.get``, ``tier.fill`` or ``tier.commit``;
    ``args`` are what the performer needs (key names, values)."""

    __slots__ = ("args",)

    def __init__(self, operation: str, args: tuple[Any, ...]) -> None:
        super().__init__(operation, b"")
        self.args = args


@dataclass(frozen=True, slots=True)
class Lookup:
    """What the shared tier holds for one key."""

    found: bool
    item: bytes | None
    #: The key's generation as Valkey stores it (b"" when it has none): the fill's token.
    generation: bytes
    #: Written through some node within the consistent window: refill with ConsistentRead.
    recent: bool
    #: The tier could not be reached: answer from DynamoDB and cache nothing.
    down: bool = False


def item_id(table: str, key: bytes) -> bytes:
    return table.encode() + b"\x00" + key


def encode_lookup(item: bytes | None, generation: bytes | None, written: bytes | None) -> bytes:
    """The performer's answer to ``tier.get`` (an MGET of item, generation, written)."""
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


class SharedTier:
    """The Accelerator's side of the shared tier: which calls to yield, and what their answers mean."""

    def __init__(self, *, item_ttl: float, consistent_window: float) -> None:
        self.item_ttl_ms = str(int(item_ttl * 1000))
        self.window_ms = str(int(consistent_window * 1000))
        #: Changes of acknowledged writes, appended by the Accelerator's ``on_write`` hook and
        #: committed to Valkey before the write is answered (:meth:`around_write`).
        self.outbox: list[Change] = []

    def lookup(self, table: str, key: bytes) -> Generator[Call, bytes, Lookup]:
        name = item_id(table, key)
        reply = yield TierCall("tier.get", (ITEM + name, GEN + name, WRITTEN + name))
        return decode_lookup(reply)

    def fill(self, table: str, key: bytes, looked: Lookup, item: bytes | None) -> Generator[Call, bytes, bool]:
        """Store a miss's answer unless a write changed the key since ``looked`` was read; True if stored."""
        if looked.down:
            return False
        name = item_id(table, key)
        value = b"0" if item is None else b"1" + item
        reply = yield TierCall("tier.fill", ((ITEM + name, GEN + name), (looked.generation, value, self.item_ttl_ms)))
        return reply == b"1"

    def commit(self, changes: list[Change]) -> TierCall:
        """One call committing a write's changes: images stored, keys evicted, generations bumped."""
        scripts = []
        for change in changes:
            name = item_id(change.table, change.key)
            query = b"" if change.partition is None else QUERY_PART + item_id(change.table, change.partition)
            store = not change.evicted
            value = b"" if not store else (b"0" if change.image is None else b"1" + change.image)
            scripts.append(((ITEM + name, GEN + name, WRITTEN + name, query),
                            (b"s" if store else b"e", value, self.item_ttl_ms, self.window_ms)))
        return TierCall("tier.commit", tuple(scripts))

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
    """What a pushed key name means for L1: an item's entries, or a partition's (None: a table's) queries."""

    table: str
    key: bytes | None = None
    partition: bytes | None = None
    queries: bool = False


def parse_invalidation(name: bytes) -> Invalidation | None:
    """The L1 entries a changed Valkey key stands for (None: not one of ours)."""
    if name.startswith(GEN):
        table, sep, key = name[len(GEN):].partition(b"\x00")
        return Invalidation(table.decode(errors="replace"), key=key) if sep else None
    if name.startswith(QUERY_PART):
        table, sep, partition = name[len(QUERY_PART):].partition(b"\x00")
        return Invalidation(table.decode(errors="replace"), partition=partition, queries=True) if sep else None
    if name.startswith(QUERY_TABLE):
        return Invalidation(name[len(QUERY_TABLE):].decode(errors="replace"), queries=True)
    return None
