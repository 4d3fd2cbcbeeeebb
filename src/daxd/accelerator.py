"""All cache policy, in one place, for every front end.

Theory of operation: :meth:`Accelerator.plan` turns one DynamoDB operation
into a generator (a *plan*). The plan looks in the cache and, when it needs
DynamoDB, yields a :class:`~daxd.messages.Call`; the driver performs it and
sends the response body back in (or throws the upstream's error in). The
plan's return value is the :class:`~daxd.messages.Response` for the caller.
The plan does no I/O and reads no clock but the injected timer, so the same
policy runs under the node's asyncio driver and the in-process synchronous
driver (:mod:`daxd.drivers`), and tests can step through it by hand.

Policy, briefly (docs/consistency.md has the contract):
- eventually consistent GetItem/BatchGetItem/Query/Scan are served from the
  item and query caches; misses are fetched and filled, guarded by generation
  tokens so a fill never stores a value older than a write it raced with;
- ``ConsistentRead`` reads, TransactGetItems and everything else are forwarded;
- writes are forwarded; after DynamoDB acknowledged them the new image (or a
  negative entry) replaces the item and the affected queries are invalidated;
  a failed write evicts what it named;
- a key or partition changed (or a table flushed or distrusted) in the last
  ``consistent_window`` seconds is refilled with ``ConsistentRead`` so a
  lagging replica cannot bring back the pre-write value.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import orjson

from daxd.cache.generations import Generations
from daxd.cache.item_cache import CachedItem, ItemCache, Token
from daxd.cache.query_cache import QueryCache
from daxd.cache.store import Store
from daxd.cache.stream_order import Applied, KeyOrder
from daxd.messages import MEMO_BODY_MAX, Call, Change, Response
from daxd.model import keys
from daxd.model.errors import AccessDeniedException, DaxdError, ResourceNotFoundException, ValidationException
from daxd.model.expressions import legacy_partition_value, partition_value
from daxd.model.keys import TableSchema
from daxd.model.requests import check_request
from daxd.model.stream_records import Outcome, StreamRecord
from daxd.model.values import check_item_size, normalize_item
from daxd.observability import Metrics
from daxd.policy import TablePolicies
from daxd.tier.shared import SharedTier, parse_invalidation

log = logging.getLogger("daxd.accelerator")

#: Where a GetItem's answer lives in the item cache: (table, canonical key, projection).
ItemRef = tuple[str, bytes, str]

Plan = Generator[Call, bytes, Response]
#: A sub-plan that performs one upstream call and returns its body.
Fetch = Generator[Call, bytes, bytes]

#: Control-plane operations refused by ``--control-plane read-only``.
MUTATING_CONTROL_PLANE = frozenset({
    "CreateTable", "UpdateTable", "DeleteTable", "UpdateTimeToLive", "TagResource", "UntagResource",
    "CreateBackup", "DeleteBackup", "RestoreTableFromBackup", "RestoreTableToPointInTime",
    "CreateGlobalTable", "UpdateGlobalTable", "UpdateGlobalTableSettings", "UpdateContinuousBackups",
    "UpdateContributorInsights", "EnableKinesisStreamingDestination", "DisableKinesisStreamingDestination",
    "UpdateKinesisStreamingDestination", "UpdateTableReplicaAutoScaling", "ImportTable",
    "ExportTableToPointInTime", "PutResourcePolicy", "DeleteResourcePolicy",
})
_FLUSHING_CONTROL_PLANE = frozenset({"UpdateTable", "DeleteTable", "RestoreTableFromBackup",
                                     "RestoreTableToPointInTime"})
_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
_PARTIQL = frozenset({"ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction"})
#: Request fields that change a Query/Scan response only by adding ConsumedCapacity.
_NOT_IN_QUERY_KEY = ("ReturnConsumedCapacity",)
#: Tables whose effective policy is remembered (names come from clients: bounded, cleared when full).
POLICY_MEMO_MAX = 10_000
#: Keys DynamoDB accepts in one BatchGetItem (more: its ValidationException, never a cache answer).
MAX_BATCH_GET_KEYS = 100
#: Checked request bodies remembered (a few hundred bytes each: a few MiB when full).
CHECKED_BODIES_MAX = 8_192
#: Seconds of disagreement allowed between DynamoDB's clock (a stream record's
#: creation time) and ours when judging whether a local write may be newer.
STREAM_CLOCK_MARGIN = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheSettings:
    """Cache policy knobs; each mirrors a ``daxd serve`` flag."""

    item_ttl: float = 300.0
    query_ttl: float = 300.0
    cache_size: int = 1 << 30
    #: Seconds after a write during which refills use ConsistentRead.
    consistent_window: float = 5.0
    read_only_control_plane: bool = False
    #: Only these tables are cached (None: all).
    tables: frozenset[str] | None = None
    #: Per-table overrides of the above (``[tables.NAME]``, daxd.policy); unmatched tables use the globals.
    policies: TablePolicies = field(default_factory=TablePolicies)

    def __post_init__(self) -> None:
        if self.item_ttl < 0 or self.query_ttl < 0:
            raise ValueError("TTLs must be >= 0 seconds")
        if self.cache_size <= 0:
            raise ValueError("cache_size must be > 0 bytes")
        if self.consistent_window < 0:
            raise ValueError("consistent_window must be >= 0 seconds")


@dataclass(frozen=True, slots=True)
class TableCachePolicy:
    """How one table is cached: the global settings with its ``[tables.X]`` section applied."""

    #: Whether the table is cached at all (False: every request is forwarded, nothing stored).
    cache: bool
    item_ttl: float
    query_ttl: float
    #: Whether Query/Scan pages of the table are cached.
    query_cache: bool
    #: The ``[tables.X]`` pattern that matched (None: the global flags).
    rule: str | None

    def describe(self) -> dict[str, Any]:
        return {"cache": self.cache, "item_ttl": self.item_ttl, "query_ttl": self.query_ttl,
                "query_cache": self.query_cache, "rule": self.rule}


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


class Accelerator:
    """Cache policy. Single-owner: drive it from one thread or one event loop."""

    def __init__(self, settings: CacheSettings | None = None, *,
                 timer: Callable[[], float] = time.monotonic, metrics: Metrics | None = None) -> None:
        self.settings = settings or CacheSettings()
        self.timer = timer
        self.store: Store[tuple[Any, ...], Any] = Store(self.settings.cache_size, timer=timer)
        flushes = Generations()
        self.flushes = flushes
        self._policies: dict[str, TableCachePolicy] = {}
        self.items = ItemCache(self.store, ttl=self.settings.item_ttl, flushes=flushes, timer=timer,
                               ttl_of=lambda table: self.policy(table).item_ttl)
        self.queries = QueryCache(self.store, ttl=self.settings.query_ttl, flushes=flushes, timer=timer,
                                  ttl_of=lambda table: self.policy(table).query_ttl)
        self.schemas: dict[str, TableSchema] = {}
        #: Tables read through the cache, schema known or not: what a stream tailer follows.
        self.tables_seen: set[str] = set()
        self.stream_order = KeyOrder()
        self.metrics = metrics or Metrics()
        self.metrics.watch_store(self.store)
        #: Told what each write changed, after the cache was updated (the shared tier commits it).
        self.on_write: Callable[[list[Change]], None] | None = None
        #: Told the name of a table the first time it is seen (:meth:`see_table`): a stream
        #: tailer then positions its readers at once instead of at its next discovery round.
        self.on_new_table: Callable[[str], None] | None = None
        #: Runs a cache fill after the answer went out (an async driver: ``loop.call_soon``),
        #: so a miss's latency does not include parsing and storing the item. None: fill inline.
        self.fill_later: Callable[[Callable[[], None]], object] | None = None
        #: The shared second tier (Valkey) behind this process's cache; None: this cache alone.
        self.tier: SharedTier | None = None
        #: Request bodies (with their operation) that passed :func:`check_request`: a repeated
        #: request, the cache's common case, is not checked again. Bounded; cleared when full.
        self._checked: set[tuple[str, bytes]] = set()
        self._handlers: dict[str, Callable[[dict[str, Any], bytes | None], Plan]] = {
            "GetItem": self._get_item,
            "BatchGetItem": self._batch_get_item,
            "Query": self._query,
            "Scan": self._scan,
            "PutItem": self._put_item,
            "UpdateItem": self._update_item,
            "DeleteItem": self._delete_item,
            "BatchWriteItem": self._batch_write_item,
            "TransactWriteItems": self._transact_write_items,
        }

    # -- entry points -------------------------------------------------------

    def plan(self, operation: str, request: dict[str, Any], raw: bytes | None = None) -> Plan:
        """The plan for one operation. ``raw`` is the request's JSON if the caller has it."""
        memo = raw if raw is not None and len(raw) <= MEMO_BODY_MAX else None  # the body, if small enough to keep
        if memo is None or (operation, memo) not in self._checked:
            check_request(operation, request)  # refused as DynamoDB refuses it, before any policy reads it
            if memo is not None:
                self._remember_checked(operation, memo)
        handler = self._handlers.get(operation)
        if handler is not None:
            if self.tier is not None and operation in _WRITES:
                return self.tier.around_write(handler(request, raw))
            return handler(request, raw)
        return self._control(operation, request, raw)

    def _remember_checked(self, operation: str, raw: bytes) -> None:
        if len(self._checked) >= CHECKED_BODIES_MAX:
            self._checked.clear()
        self._checked.add((operation, raw))

    def flush(self, table: str | None = None) -> int:
        """Drop cached entries (of one table, or all); how many were dropped."""
        now = self.timer()
        tables = {table} if table else self._known_tables()
        for name in tables:
            self.flushes.bump(name, now)
            self.schemas.pop(name, None)
            self.tables_seen.discard(name)
        if table is None:
            count = len(self.store)
            self.store.clear()
            return count
        return self.store.remove_where(lambda k: k[1] == table)

    def drop_entries(self) -> None:
        """Drop every cached entry and make fills in flight stale, but keep what is known about
        tables (schemas, the tables streams follow): the shared tier calls this when it may have
        missed invalidations."""
        now = self.timer()
        for name in self._known_tables() | self.tables_seen:
            self.flushes.bump(name, now)
        self.store.clear()

    def distrust(self, table: str) -> int:
        """Stop trusting what the cache holds of ``table``: its stream may have changes we will never see.

        Called when a reader of the table's stream is (re)positioned where
        records may have been missed (a first ``LATEST`` iterator, an expired one
        without a checkpoint, trimmed data, a shard taken over). Entries filled
        before that point may be stale until their TTL, so they are dropped,
        fills in flight are made stale, and refills use ``ConsistentRead`` for
        ``consistent_window`` seconds (a lagging replica could still serve the
        value before a write the reader will never report). Unlike
        :meth:`flush`, the schema and the table's place among the followed
        tables are kept. Returns how many entries were dropped.
        """
        self.flushes.bump(table, self.timer())
        return self.store.remove_where(lambda k: k[1] == table)

    def see_table(self, table: str) -> None:
        """``table`` is read through a cache (a miss here, or a peer's): follow it from now on
        (see :attr:`on_new_table`)."""
        if table not in self.tables_seen:
            self.tables_seen.add(table)
            if self.on_new_table is not None:
                self.on_new_table(table)

    def _known_tables(self) -> set[str]:
        return {k[1] for k in self.store} | set(self.schemas)

    # -- reads --------------------------------------------------------------

    def cached_item(self, req: dict[str, Any]) -> CachedItem | None:
        """The GetItem hit path alone, for front ends that keep their own encoding of hits.

        Returns the cached entry (counted as a hit), or None: then run :meth:`plan`.
        A front end may keep its wire encoding of the item in ``entry.extra``;
        it lives and dies with the entry.
        """
        ref = self.item_ref(req)
        return None if ref is None else self.cached_item_at(ref)

    def cached_item_at(self, ref: ItemRef) -> CachedItem | None:
        """:meth:`cached_item` for a front end that kept the request's :meth:`item_ref`:
        the live entry (counted as a hit), or None."""
        hit = self.items.get(*ref)
        if hit is not None:
            self.metrics.item_hit(ref[0])
        return hit

    def item_ref(self, req: dict[str, Any]) -> ItemRef | None:
        """Where a GetItem's answer lives in the item cache: (table, canonical key, projection).

        None unless the cache answers the read (:meth:`answers_from_cache`) with
        the bare entry: a read asking for ``ReturnConsumedCapacity`` is answered
        from the cache too, but by :meth:`plan`, which adds the capacity. A pure
        function of the request, so a front end may keep it by the request's
        bytes (:meth:`get_item_at`).

        Raises:
            SerializationException, ValidationException: the request is malformed.
        """
        if len(req) > 2 or "Key" not in req:  # more than TableName and Key: the model checks the rest
            check_request("GetItem", req)
        table = req.get("TableName")
        if not self.answers_from_cache(table, req) or "ReturnConsumedCapacity" in req:
            return None
        return table, keys.canonical_key(req.get("Key")), _projection(req)

    def get_item_at(self, ref: ItemRef, req: dict[str, Any] | None, raw: bytes | None) -> CachedItem | Plan:
        """GetItem in one step, for a request whose :meth:`item_ref` the caller has: the cached
        entry (a hit, counted), or the plan that answers the miss.

        ``req`` may be None when ``raw`` (the request's JSON) is given: a miss
        only decodes it if it must change the request (a consistent refill).
        """
        hit = self.cached_item_at(ref)
        return hit if hit is not None else self._fetch_item(req, raw, *ref)

    def answers_from_cache(self, table: object, read: dict[str, Any]) -> TypeGuard[str]:
        """The cacheability rule, for every read path (GetItem, BatchGetItem's tables, Query, Scan).

        An eventually consistent read of a cached table is answered from the
        cache. ``ReturnConsumedCapacity`` does not change that: a hit reports
        the zero units it took from DynamoDB, in DynamoDB's shape; a miss
        reports DynamoDB's figure for the caller's own read mode.
        """
        return isinstance(table, str) and read.get("ConsistentRead") is not True and self._cached(table)

    def _get_item(self, req: dict[str, Any], raw: bytes | None) -> Plan:
        table = _table(req)
        if not self.answers_from_cache(table, req):
            return (yield from self._forward("GetItem", req, raw))
        key = keys.canonical_key(req.get("Key"))
        projection = _projection(req)
        hit = self.cached_item_at((table, key, projection))
        if hit is not None:
            return _item_response(hit.item, table, req.get("ReturnConsumedCapacity"))
        return (yield from self._fetch_item(req, raw, table, key, projection))

    def _fetch_item(self, req: dict[str, Any] | None, raw: bytes | None, table: str, key: bytes,
                    projection: str) -> Plan:
        """A GetItem miss: read upstream (consistently right after a write here) and fill the cache."""
        schema = self.schemas.get(table)
        if schema is not None:  # the backend may not check key types (the embedded one does not)
            keys.check_key(orjson.loads(key), schema.key)
        self.metrics.item_miss(table)
        self.see_table(table)
        token = self.items.token(table, key)
        if self.tier is not None and not projection:
            return (yield from self._fetch_shared(req, raw, table, key, token))
        upgraded = self._refill_consistently(table, key)
        if upgraded:
            req, raw = _consistent(req, raw), None
        elif req is None:
            req = {"TableName": table}  # raw is the request: _send forwards it as it came
        body = yield from self._send("GetItem", req, raw, shared=True)
        if upgraded and _asks_capacity(req):
            body = dumps(_as_eventually_consistent(orjson.loads(body)))
        if self.fill_later is not None:
            self.fill_later(lambda: self._fill_item(table, key, projection, body, token))
            return Response(body=body)
        data = orjson.loads(body)
        self._fill_item(table, key, projection, body, token, data)
        return Response(body=body, data=data)

    def _fetch_shared(self, req: dict[str, Any] | None, raw: bytes | None, table: str, key: bytes,
                      token: Token) -> Plan:
        """A full-item miss with a shared tier: its entry there, else DynamoDB, then both tiers filled.

        The tier's fill is guarded by the key's generation in Valkey, so a fill
        that raced a write through any node is dropped; L1 is filled only when
        the tier stored the same answer.
        """
        assert self.tier is not None
        looked = yield from self.tier.lookup(table, key)
        self.metrics.shared_tier_lookup("GetItem", looked.found)
        if looked.found:
            self.items.fill(table, key, "", looked.item, token)
            return Response(body=item_body(looked.item))
        if looked.recent or self._refill_consistently(table, key):
            req, raw = _consistent(req, raw), None
        elif req is None:
            req = {"TableName": table}
        body = yield from self._send("GetItem", req, raw, shared=True)
        data = orjson.loads(body)
        item = data.get("Item")
        image = None if item is None else dumps(item)
        if looked.down or (yield from self.tier.fill(table, key, looked, image, self.policy(table).item_ttl)):
            self.items.fill(table, key, "", image, token)  # tier down: for --degraded-ttl at most
        return Response(body=body, data=data)

    def shared_tier_lost(self, down: bool) -> None:
        """The shared tier went down (True) or is back (False): either way this process may have missed
        invalidations, so its entries go; while it is down new ones live ``degraded_ttl`` seconds at most."""
        self.drop_entries()
        cap = self.tier.degraded_ttl if down and self.tier is not None else None
        self.items.ttl_cap = self.queries.ttl_cap = cap

    def apply_invalidation(self, name: bytes | None) -> None:
        """A key the shared tier reports changed (None: all of them): drop this process's copies.

        Every worker hears the push itself, so the shared write stamps are left alone.
        """
        if name is None:
            self.drop_entries()
            return
        what = parse_invalidation(name)
        if what is None:
            return
        if what.queries and what.partition is None:  # a whole table: a stream reader distrusted it
            self.distrust(what.table)
        elif what.queries:
            self.queries.invalidate(what.table, what.partition, share=False)
        elif what.key is not None:
            self.items.evict(what.table, what.key, share=False)

    def _fill_item(self, table: str, key: bytes, projection: str, body: bytes, token: Token,
                   data: dict[str, Any] | None = None) -> None:
        """Cache a GetItem answer, unless the key changed since ``token`` (then a write owns it)."""
        if data is None:
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                log.warning("not caching an unparsable GetItem answer from upstream for table %s", table)
                return
        item = data.get("Item")
        self.items.fill(table, key, projection, None if item is None else dumps(item), token)

    def _batch_get_item(self, req: dict[str, Any], raw: bytes | None) -> Plan:
        request_items = req.get("RequestItems")
        if not isinstance(request_items, dict) or not request_items:
            return (yield from self._forward("BatchGetItem", req, raw))
        found: dict[str, list[bytes]] = {}
        misses: dict[str, dict[str, Any]] = {}
        tokens: dict[tuple[str, bytes], Token] = {}
        upgraded: set[str] = set()  # tables read consistently for read-your-writes: capacity as asked
        for table, spec in request_items.items():
            found[table] = []
            listed = spec.get("Keys") if isinstance(spec, dict) else None
            canonical = [keys.canonical_key(k) for k in listed] if isinstance(listed, list) else []
            if (not isinstance(spec, dict) or not self.answers_from_cache(table, spec)
                    or not 0 < len(set(canonical)) == len(canonical) <= MAX_BATCH_GET_KEYS):
                misses[table] = spec  # DynamoDB answers it, and refuses what it must (no keys, duplicates)
                continue
            projection = _projection(spec)
            missing: list[Any] = []
            for key_av, key in zip(listed or (), canonical, strict=True):
                hit = self.items.get(table, key, projection)
                if hit is None:
                    self.metrics.item_miss(table)
                    tokens[(table, key)] = self.items.token(table, key)
                    missing.append(key_av)
                else:
                    self.metrics.item_hit(table)
                    if hit.item is not None:
                        found[table].append(hit.item)
            if missing:
                misses[table] = {**spec, "Keys": missing}
                if any(self._refill_consistently(table, keys.canonical_key(k)) for k in missing):
                    misses[table]["ConsistentRead"] = True
                    upgraded.add(table)
        mode = req.get("ReturnConsumedCapacity")
        if not misses:
            return Response(body=_batch_get_body(found, mode))
        upstream_req = {**req, "RequestItems": misses}
        data = orjson.loads((yield from self._send("BatchGetItem", upstream_req, None)))
        _batch_capacity(data, mode, [t for t in found if t not in misses], upgraded)
        for table, spec in misses.items():
            if not isinstance(spec, dict) or not any(t == table for t, _ in tokens):
                continue
            schema = yield from self.table_schema(table)
            self._fill_batch(table, spec, data, schema, tokens)
        responses = data.setdefault("Responses", {})
        for table, items in found.items():
            responses.setdefault(table, []).extend(orjson.loads(item) for item in items)
        return Response(data=data)

    def _fill_batch(self, table: str, spec: dict[str, Any], data: dict[str, Any], schema: TableSchema,
                    tokens: dict[tuple[str, bytes], Token]) -> None:
        """Cache a BatchGetItem's answers; keys neither found nor unprocessed are not found."""
        projection = _projection(spec)
        returned = data.get("Responses", {}).get(table, [])
        names = schema.key.names
        if any(not all(n in item for n in names) for item in returned):
            return  # the projection dropped key attributes: we cannot tell which item is which
        unprocessed = {keys.canonical_key(k)
                       for k in data.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])}
        by_key = {keys.canonical_key(keys.key_of(item, schema.key)): item for item in returned}
        for key_av in spec["Keys"]:
            key = keys.canonical_key(key_av)
            if key in unprocessed or (table, key) not in tokens:
                continue
            item = by_key.get(key)
            self.items.fill(table, key, projection, None if item is None else dumps(item),
                            tokens[(table, key)])

    def _scan(self, req: dict[str, Any], raw: bytes | None) -> Plan:
        return self._query(req, raw, "Scan")

    def _query(self, req: dict[str, Any], raw: bytes | None, operation: str = "Query") -> Plan:
        table = _table(req)
        if not self.queries.enabled or not self.policy(table).query_cache or not self.answers_from_cache(table, req):
            return (yield from self._forward(operation, req, raw))
        partition = None
        if operation == "Query" and not req.get("IndexName"):
            schema = yield from self.table_schema(table)
            partition = _query_partition(req, schema)
        request_key = operation.encode() + orjson.dumps(
            {k: v for k, v in req.items() if k not in _NOT_IN_QUERY_KEY}, option=orjson.OPT_SORT_KEYS)
        hit = self.queries.get(table, request_key, partition)
        if hit is not None:
            self.metrics.query_hit(operation, table)
            return Response(body=_with_capacity(hit.body, table, req.get("ReturnConsumedCapacity")))
        self.metrics.query_miss(operation, table)
        self.see_table(table)
        token = self.queries.token(table, partition)
        tier, looked = self.tier, None
        if tier is not None:
            looked = yield from tier.page_lookup(table, partition, request_key)
            self.metrics.shared_tier_lookup(operation, looked.found and looked.item is not None)
            if looked.found and looked.item is not None:
                self.queries.fill(table, request_key, partition, looked.item, token)
                return Response(body=_with_capacity(looked.item, table, req.get("ReturnConsumedCapacity")))
        since = self._window_start()
        upgraded = not req.get("IndexName") and (self.queries.changed_since(table, partition, since)
                                                 or self.flushes.bumped_since(table, since)
                                                 or (looked is not None and looked.recent))
        if upgraded:
            req, raw = {**req, "ConsistentRead": True}, None
        body = yield from self._send(operation, req, raw, shared=True)
        data = orjson.loads(body)
        stored = body
        if "ConsumedCapacity" in data:
            stored = dumps({k: v for k, v in data.items() if k != "ConsumedCapacity"})
            if upgraded:
                body = dumps(_as_eventually_consistent(data))
        if tier is None or looked is None or looked.down or (yield from tier.page_fill(
                table, partition, request_key, looked, stored, self.policy(table).query_ttl)):
            self.queries.fill(table, request_key, partition, stored, token)
        return Response(body=body, data=data)

    # -- writes -------------------------------------------------------------

    def _put_item(self, req: dict[str, Any], raw: bytes | None) -> Plan:
        table = _table(req)
        check_item_size(req.get("Item"))
        if not self._cached(table):
            return (yield from self._forward("PutItem", req, raw))
        schema = yield from self.table_schema(table)
        item = normalize_item(req.get("Item"))
        key, partition = self._locate(item, schema)
        tokens = self._tokens([(table, key)])
        body = yield from self._write("PutItem", req, raw, [(table, key, partition)])
        self._commit([Change(table, key, partition, dumps(item))], tokens)
        return Response(body=body)

    def _update_item(self, req: dict[str, Any], raw: bytes | None) -> Plan:
        table = _table(req)
        if not self._cached(table):
            return (yield from self._forward("UpdateItem", req, raw))
        schema = yield from self.table_schema(table)
        key, partition = self._locate(req.get("Key"), schema)
        asked = req.get("ReturnValues", "NONE")
        if asked not in ("NONE", "ALL_NEW"):
            body = yield from self._write("UpdateItem", req, raw, [(table, key, partition)])
            self._commit([Change(table, key, partition, unknown=True)], {})
            return Response(body=body)
        upstream_req = {**req, "ReturnValues": "ALL_NEW"}
        tokens = self._tokens([(table, key)])
        touched = [(table, key, partition)]
        data = orjson.loads((yield from self._write("UpdateItem", upstream_req, None, touched)))
        image = data.get("Attributes")
        self._commit([Change(table, key, partition, unknown=True) if image is None
                      else Change(table, key, partition, dumps(image))], tokens)
        if asked == "NONE":
            data.pop("Attributes", None)
        return Response(data=data)

    def _delete_item(self, req: dict[str, Any], raw: bytes | None) -> Plan:
        table = _table(req)
        if not self._cached(table):
            return (yield from self._forward("DeleteItem", req, raw))
        schema = yield from self.table_schema(table)
        key, partition = self._locate(req.get("Key"), schema)
        tokens = self._tokens([(table, key)])
        body = yield from self._write("DeleteItem", req, raw, [(table, key, partition)])
        self._commit([Change(table, key, partition, None)], tokens)
        return Response(body=body)

    def _batch_write_item(self, req: dict[str, Any], raw: bytes | None) -> Plan:
        writes: list[tuple[str, bytes, bytes, bytes | None]] = []
        for table, requests in (req.get("RequestItems") or {}).items():
            if not self._cached(table) or not isinstance(requests, list):
                continue
            schema = yield from self.table_schema(table)
            for write in requests:
                put, delete = (write or {}).get("PutRequest"), (write or {}).get("DeleteRequest")
                if isinstance(put, dict):
                    check_item_size(put.get("Item"))
                    item = normalize_item(put.get("Item"))
                    writes.append((table, *self._locate(item, schema), dumps(item)))
                elif isinstance(delete, dict):
                    writes.append((table, *self._locate(delete.get("Key"), schema), None))
        touched = [(t, k, p) for t, k, p, _ in writes]
        tokens = self._tokens([(t, k) for t, k, _ in touched])
        data = orjson.loads((yield from self._write("BatchWriteItem", req, raw, touched)))
        unprocessed = set()
        for table, requests in (data.get("UnprocessedItems") or {}).items():
            known = self.schemas.get(table)
            for write in requests if known else ():
                body = write.get("PutRequest", {}).get("Item") or write.get("DeleteRequest", {}).get("Key")
                unprocessed.add((table, keys.canonical_key(keys.key_of(body, known.key))))  # type: ignore[union-attr]
        self._commit([Change(t, k, p, i, (t, k) in unprocessed) for t, k, p, i in writes], tokens)
        return Response(data=data)

    def _transact_write_items(self, req: dict[str, Any], raw: bytes | None) -> Plan:
        actions: list[tuple[str, str, bytes, bytes, bytes | None]] = []
        for entry in req.get("TransactItems") or ():
            valid = isinstance(entry, dict) and len(entry) == 1
            ((kind, action),) = entry.items() if valid else ((None, None),)
            if not isinstance(action, dict) or not self._cached(table := _table(action)):
                continue
            schema = yield from self.table_schema(table)
            if kind == "Put":
                item = normalize_item(action.get("Item"))
                actions.append((kind, table, *self._locate(item, schema), dumps(item)))
            elif kind in ("Update", "Delete", "ConditionCheck"):
                actions.append((str(kind), table, *self._locate(action.get("Key"), schema), None))
        touched = [(t, k, p) for kind, t, k, p, _ in actions if kind != "ConditionCheck"]
        tokens = self._tokens([(t, k) for _, t, k, _, _ in actions])
        body = yield from self._write("TransactWriteItems", req, raw, touched,
                                      also_evict=[(t, k) for _, t, k, _, _ in actions])
        self._commit([Change(t, k, p, i, kind == "Update") for kind, t, k, p, i in actions
                      if kind != "ConditionCheck"], tokens)
        return Response(body=body)

    # -- DynamoDB Streams ---------------------------------------------------

    def apply_stream_record(self, record: StreamRecord, age: float | None = None) -> Outcome:
        """Apply a change DynamoDB reported on a table's stream (whoever made it).

        The record's new image (a negative entry for a REMOVE) replaces the
        cached item and wins over any fill in flight; without a new image
        (KEYS_ONLY, OLD_IMAGE streams) the key is evicted. The key's queries and
        the table's scans and index queries are invalidated.

        A record reaches us after the write it reports, maybe after a later
        write through this node whose image is already cached: its image is
        stored only if nothing but the stream touched the key since the last
        record applied to it, or since the record was created (``age`` seconds
        ago by our wall clock; None: unknown). Otherwise the key is evicted,
        which is always safe. Records older than one applied are ignored.
        """
        table = record.table
        schema = self.schemas.get(table)
        if schema is None or not self._cached(table):
            return Outcome.SKIPPED
        key, partition = self._locate(record.keys, schema)
        name = (table, key)
        last = self.stream_order.last(name, record.stream)
        if last is not None and record.sequence <= last.sequence:
            return Outcome.STALE
        untouched = last is not None and last.generation == self.items.keys.current(name)
        since = float("-inf") if age is None else self.timer() - age - STREAM_CLOCK_MARGIN
        image = None if record.removed else record.new_image
        if (record.removed or image is not None) and (untouched or not self.items.changed_since(table, key, since)):
            self.items.put_image(table, key, None if image is None else dumps(image), self.items.token(table, key))
            outcome = Outcome.PUT if image is not None else Outcome.NEGATIVE
        else:
            self.items.evict(table, key)
            outcome = Outcome.EVICTED
        self.queries.invalidate(table, partition)
        self.stream_order.remember(name, Applied(record.stream, record.sequence, self.items.keys.current(name)))
        return outcome

    def stream_change(self, record: StreamRecord) -> Change | None:
        """What a stream record changed, as an eviction (for the shared tier); None: not cached here."""
        schema = self.schemas.get(record.table)
        if schema is None or not self._cached(record.table):
            return None
        key, partition = self._locate(record.keys, schema)
        return Change(record.table, key, partition, unknown=True)

    # -- everything else ----------------------------------------------------

    def _control(self, operation: str, req: dict[str, Any], raw: bytes | None) -> Plan:
        if operation in MUTATING_CONTROL_PLANE and self.settings.read_only_control_plane:
            raise AccessDeniedException(
                f"daxd is running with --control-plane read-only: {operation} is not allowed")
        body = yield from self._send(operation, req, raw)
        if operation == "CreateTable":
            self._learn_schema(body)
        if operation in _FLUSHING_CONTROL_PLANE and isinstance(req.get("TableName"), str):
            log.info("%s on table %s: %d cached entries of it flushed", operation, req["TableName"],
                     self.flush(req["TableName"]))
        elif operation in _PARTIQL:
            self._flush_partiql(req)
        return Response(body=body)

    def _flush_partiql(self, req: dict[str, Any]) -> None:
        """PartiQL writes name their tables in free text: flush every cached table they mention."""
        statements = [req, *(req.get("Statements") or []), *(req.get("TransactStatements") or [])]
        texts = [str(s.get("Statement", "")) for s in statements if isinstance(s, dict)]
        writes = [t for t in texts if t.strip()[:6].upper() != "SELECT"]
        if not writes:
            return
        for table in self._known_tables():
            if any(table in text for text in writes):
                self.flush(table)

    # -- plumbing -----------------------------------------------------------

    def _send(self, operation: str, req: dict[str, Any], raw: bytes | None, *, shared: bool = False) -> Fetch:
        """Yield one upstream call; a table that vanished upstream is flushed."""
        try:
            return (yield Call(operation, raw if raw is not None else dumps(req), shared))
        except ResourceNotFoundException:
            table = req.get("TableName")
            if isinstance(table, str) and table in self.schemas:
                self.flush(table)
            raise

    def _forward(self, operation: str, req: dict[str, Any], raw: bytes | None) -> Plan:
        return Response(body=(yield from self._send(operation, req, raw)))

    def _write(self, operation: str, req: dict[str, Any], raw: bytes | None,
               touched: list[tuple[str, bytes, bytes]],
               also_evict: list[tuple[str, bytes]] | None = None) -> Fetch:
        """Forward a write; whatever happens, its keys and partitions are invalidated."""
        try:
            body = yield from self._send(operation, req, raw)
        except DaxdError:
            evicted = also_evict if also_evict is not None else [(t, k) for t, k, _ in touched]
            for table, key in evicted:
                self.items.evict(table, key)
            self._invalidate_queries(touched)
            if self.on_write is not None:
                self.on_write(_failed_changes(evicted, touched))
            raise
        self._invalidate_queries(touched)
        return body

    def _tokens(self, keys_: list[tuple[str, bytes]]) -> dict[tuple[str, bytes], Token]:
        """Item tokens taken before a write is sent, for :meth:`_commit`."""
        return {(table, key): self.items.token(table, key) for table, key in keys_}

    def _commit(self, changes: list[Change], tokens: dict[tuple[str, bytes], Token]) -> None:
        """Apply an acknowledged write's changes to the item cache, then tell the observer (the shared tier).

        An image (or a negative entry) is stored only if its key's token is
        unchanged since the write was sent (see :meth:`ItemCache.put_image`);
        an ``evicted`` change forgets the key.
        """
        for change in changes:
            if change.unknown:
                self.items.evict(change.table, change.key)
            else:
                self.items.put_image(change.table, change.key, change.image, tokens[(change.table, change.key)])
        if self.on_write is not None and changes:
            self.on_write(changes)

    def _invalidate_queries(self, touched: list[tuple[str, bytes, bytes]]) -> None:
        for table, _, partition in touched:
            self.queries.invalidate(table, partition)

    def table_schema(self, table: str) -> Generator[Call, bytes, TableSchema]:
        """The table's key schema: known, or learned from DescribeTable (a shared call: concurrent
        askers of every front end share one). The one path by which a schema is learned on demand."""
        schema = self.schemas.get(table)
        if schema is None:
            body = yield from self._send("DescribeTable", {"TableName": table}, None, shared=True)
            schema = self.learn_schema(orjson.loads(body)["Table"])
        return schema

    def learn_schema(self, description: Mapping[str, Any]) -> TableSchema:
        """Remember a table's schema from its description (DescribeTable's ``Table``, CreateTable's
        ``TableDescription``): the one place the schema cache is written. A schema already known is kept."""
        schema = TableSchema.from_description(description)
        return self.schemas.setdefault(schema.name, schema)

    def _learn_schema(self, body: bytes) -> None:
        """A table created through daxd: its key schema is known from the answer, no DescribeTable needed."""
        with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError, StopIteration):
            self.learn_schema(orjson.loads(body)["TableDescription"])

    def _locate(self, key_or_item: Any, schema: TableSchema) -> tuple[bytes, bytes]:
        """Canonical key bytes and partition bytes of an item or key."""
        if not isinstance(key_or_item, dict):
            raise ValidationException("The provided key element does not match the schema")
        key = keys.key_of(key_or_item, schema.key)
        keys.check_key(key, schema.key)
        return keys.canonical_key(key), keys.partition_of(key, schema.key)

    def policy(self, table: str) -> TableCachePolicy:
        """The one place a table's cache policy is decided (remembered per table name)."""
        found = self._policies.get(table)
        if found is None:
            if len(self._policies) >= POLICY_MEMO_MAX:
                self._policies.clear()
            found = self._policies[table] = self._resolve_policy(table)
        return found

    def _resolve_policy(self, table: str) -> TableCachePolicy:
        s = self.settings
        matched = s.policies.match(table)
        rule, section = matched if matched is not None else (None, None)
        cache = (s.tables is None or table in s.tables) and (section is None or section.cache)
        item_ttl = section.item_ttl if section is not None and section.item_ttl is not None else s.item_ttl
        query_ttl = section.query_ttl if section is not None and section.query_ttl is not None else s.query_ttl
        query_cache = cache and query_ttl > 0 and (section is None or section.query_cache)
        return TableCachePolicy(cache, item_ttl, query_ttl, query_cache, rule)

    def policies_view(self) -> dict[str, Any]:
        """What ``GET /tables`` and ``daxd status`` show: the defaults, the sections, each known table's policy."""
        s = self.settings
        tables = sorted(self.tables_seen | set(self.schemas) | set(s.tables or ()) |
                        {name for name in s.policies.rules if not name.endswith("*")})
        return {
            "default": {"cache": s.tables is None, "item_ttl": s.item_ttl, "query_ttl": s.query_ttl,
                        "query_cache": s.query_ttl > 0},
            "rules": {name: section.describe() for name, section in s.policies.rules.items()},
            "tables": {name: self.policy(name).describe() for name in tables[:1000]},
        }

    def _cached(self, table: str) -> bool:
        return self.policy(table).cache

    def _refill_consistently(self, table: str, key: bytes) -> bool:
        """Whether a refill of this item reads consistently: a write to it through this node, or a
        flush or distrust of its table, lies within the consistent window (so neither our own write
        nor one the stream reported can be undone by a lagging replica's older value)."""
        since = self._window_start()
        return self.items.changed_since(table, key, since) or self.flushes.bumped_since(table, since)

    def _window_start(self) -> float:
        return self.timer() - self.settings.consistent_window


def _failed_changes(evicted: list[tuple[str, bytes]], touched: list[tuple[str, bytes, bytes]]) -> list[Change]:
    """A failed write's changes: every key it named evicted, with its partition if it wrote there."""
    partitions = {(t, k): p for t, k, p in touched}
    return [Change(t, k, partitions.get((t, k)), unknown=True) for t, k in evicted]


def _consistent(req: dict[str, Any] | None, raw: bytes | None) -> dict[str, Any]:
    """The request (parsed from ``raw`` when only that is at hand) as a strongly consistent read."""
    return {**(req if req is not None else orjson.loads(raw or b"{}")), "ConsistentRead": True}


def _table(req: dict[str, Any]) -> str:
    table = req.get("TableName")
    if not isinstance(table, str) or not table:
        raise ValidationException("1 validation error detected: Value null at 'tableName' failed to "
                                  "satisfy constraint: Member must not be null")
    return table


def _projection(req: dict[str, Any]) -> str:
    """What distinguishes a projected read's entry from the full item's ("" for none)."""
    expression, legacy = req.get("ProjectionExpression"), req.get("AttributesToGet")
    if expression is None and legacy is None:
        return ""
    names = req.get("ExpressionAttributeNames") if expression is not None else None
    return orjson.dumps([expression, names, legacy], option=orjson.OPT_SORT_KEYS).decode()


def _query_partition(req: dict[str, Any], schema: TableSchema) -> bytes | None:
    hash_key = schema.key.hash_key
    if "KeyConditionExpression" in req:
        value = partition_value(str(req["KeyConditionExpression"]), req.get("ExpressionAttributeNames"),
                                req.get("ExpressionAttributeValues"), hash_key)
    else:
        value = legacy_partition_value(req.get("KeyConditions"), hash_key)
    return None if value is None else keys.canonical_value(value)


def _capacity(table: str, mode: Any) -> bytes:
    """What a hit reports when asked for ConsumedCapacity: zero units, it never reached DynamoDB."""
    if mode == "INDEXES":
        return b'{"TableName":' + dumps(table) + b',"CapacityUnits":0.0,"Table":{"CapacityUnits":0.0}}'
    return b'{"TableName":' + dumps(table) + b',"CapacityUnits":0.0}'


def item_body(item: bytes | None) -> bytes:
    """The GetItem response body for a cached item (``{}``: not found)."""
    return b"{}" if item is None else b'{"Item":' + item + b"}"


def _item_response(item: bytes | None, table: str, capacity: Any) -> Response:
    if capacity not in ("TOTAL", "INDEXES"):
        return Response(body=item_body(item))
    parts = [] if item is None else [b'"Item":' + item]
    if capacity in ("TOTAL", "INDEXES"):
        parts.append(b'"ConsumedCapacity":' + _capacity(table, capacity))
    return Response(body=b"{" + b",".join(parts) + b"}")


def _with_capacity(body: bytes, table: str, capacity: Any) -> bytes:
    if capacity not in ("TOTAL", "INDEXES"):
        return body
    separator = b"" if body == b"{}" else b","
    return body[:-1] + separator + b'"ConsumedCapacity":' + _capacity(table, capacity) + b"}"


def _batch_get_body(found: dict[str, list[bytes]], mode: Any) -> bytes:
    tables = b",".join(dumps(t) + b":[" + b",".join(items) + b"]" for t, items in found.items())
    if mode not in ("TOTAL", "INDEXES"):
        return b'{"Responses":{' + tables + b'},"UnprocessedKeys":{}}'
    capacity = b",".join(_capacity(t, mode) for t in found)
    return b'{"Responses":{' + tables + b'},"UnprocessedKeys":{},"ConsumedCapacity":[' + capacity + b"]}"


def _batch_capacity(data: dict[str, Any], mode: Any, from_cache: list[str], upgraded: set[str]) -> None:
    """A partly cached BatchGetItem's ConsumedCapacity: DynamoDB's entries for the tables it read
    (as the caller's read mode would cost), and zero for the tables answered wholly from cache."""
    if mode not in ("TOTAL", "INDEXES"):
        return
    entries = data.setdefault("ConsumedCapacity", [])
    for entry in entries:
        if isinstance(entry, dict) and entry.get("TableName") in upgraded:
            _halve(entry)
    entries.extend(orjson.loads(_capacity(t, mode)) for t in from_cache)


def _asks_capacity(req: dict[str, Any]) -> bool:
    return req.get("ReturnConsumedCapacity") in ("TOTAL", "INDEXES")


def _as_eventually_consistent(data: dict[str, Any]) -> dict[str, Any]:
    """A response to a read daxd made strongly consistent (read-your-writes) with the
    ConsumedCapacity the caller's eventually consistent read costs: half, as DynamoDB
    charges 0.5 unit per 4 KB for those and 1 for strongly consistent ones."""
    capacity = data.get("ConsumedCapacity")
    for entry in capacity if isinstance(capacity, list) else [capacity]:
        if isinstance(entry, dict):
            _halve(entry)
    return data


def _halve(capacity: dict[str, Any]) -> None:
    for name in ("CapacityUnits", "ReadCapacityUnits"):
        if isinstance(capacity.get(name), (int, float)):
            capacity[name] = capacity[name] / 2
    inner = [capacity.get("Table"), *(capacity.get("GlobalSecondaryIndexes") or {}).values(),
             *(capacity.get("LocalSecondaryIndexes") or {}).values()]
    for part in inner:
        if isinstance(part, dict):
            _halve(part)
