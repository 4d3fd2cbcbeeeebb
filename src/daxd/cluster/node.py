"""A node's part in the cluster: probes, pushes, and the peer methods it answers.

:class:`Cluster` wires :class:`Membership` (pure decisions) to the I/O:

* every ``health_interval`` it pings each peer (``daxd.ping``, with a timeout)
  and feeds the outcome to the membership; when the healthy set changes it
  logs it and lets the stream tailer re-plan its shards;
* the Accelerator's ``on_write`` hook pushes each write's :class:`Change` list
  to every peer (``daxd.invalidate``);
* the stream tailer's sink applies each batch of records here and pushes it
  to every peer (``daxd.records``), and so does its ``distrust`` hook (an item
  ``{"table", "stream", "distrust": true}``: a shard's reader was positioned
  where records may have been missed, so every node drops what it cached of
  the table before that moment);
* :meth:`handle` answers the three peer methods for the DAX front end.

Peers exchange the tables they cache in pings, so every node follows the
stream of every table any node caches: a shard's reader must know the table.
Nothing here raises into the write path: a push only appends to an outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import cbor2

from daxd.cluster.changes import BadChange, Change, apply_changes
from daxd.cluster.membership import Address, Membership
from daxd.cluster.peers import PeerConnection, PeerError, PeerLink
from daxd.cluster.records import MalformedRecord, StreamRecord
from daxd.frontends.dax.errors import encode_error
from daxd.frontends.dax.events import PeerMessage
from daxd.frontends.dax.responses import SUCCESS, encode_endpoints
from daxd.model.errors import ValidationException
from daxd.upstream.sigv4 import Credentials

if TYPE_CHECKING:
    from daxd.accelerator import Accelerator
    from daxd.cluster.streams import StreamTailer

log = logging.getLogger("daxd.cluster")

#: Tables listed in a ping (every node then follows their streams).
MAX_TABLES_SHARED = 1000
DEFAULT_HEALTH_INTERVAL = 1.0
#: Marks a forwarded ``daxd.records`` item that distrusts a table instead of carrying a record.
DISTRUST = "distrust"


class Cluster:
    """This node's membership, peer links and peer-method handlers.

    Args:
        membership: this node's view (already holding the peer list).
        accelerator: this node's cache, which peers' changes are applied to.
        credentials: the key peers are signed with (None: no ``--auth-keys``).
        health_interval: seconds between probes of each peer.
        quiet: seconds a key must be untouched before a peer's image is stored
            (``--consistent-window``, see :func:`daxd.cluster.changes.apply_change`).
    """

    def __init__(self, membership: Membership, accelerator: Accelerator, *, credentials: Credentials | None,
                 region: str, health_interval: float = DEFAULT_HEALTH_INTERVAL, quiet: float = 5.0,
                 timeout: float = 1.0, wall: Callable[[], float] = time.time) -> None:
        self.membership = membership
        self.accelerator = accelerator
        self.health_interval = health_interval
        self.quiet = quiet
        self.wall = wall
        self.tailer: StreamTailer | None = None
        self.links = {a: PeerLink(PeerConnection(a, credentials=credentials, region=region, timeout=timeout),
                                  on_failure=self._failure_reporter(a)) for a in membership.peers}
        #: table -> seconds from a record's creation to its application here (last batch).
        self.stream_lag: dict[str, float] = {}
        self.received = {"daxd.invalidate": 0, "daxd.records": 0, "flush": 0}
        self._endpoints: tuple[int, bytes] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._handlers: dict[str, Callable[[Mapping[str, Any]], Any]] = {
            "daxd.ping": self._on_ping,
            "daxd.invalidate": self._on_invalidate,
            "daxd.records": self._on_records,
        }

    def _failure_reporter(self, address: Address) -> Callable[[str], None]:
        return lambda reason: self._record(address, None, reason)

    # -- lifecycle --

    def start(self) -> None:
        """Start probing and the push workers; hook the Accelerator's writes."""
        if not self.membership.clustered:
            return
        self.accelerator.on_write = self.tell_peers
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._probe_forever(), name="daxd-cluster-health")]
        self._tasks += [loop.create_task(link.run(), name=f"daxd-peer-{a}") for a, link in self.links.items()]

    async def stop(self) -> None:
        self.accelerator.on_write = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for link in self.links.values():
            await link.connection.close()

    # -- health --

    async def _probe_forever(self) -> None:
        while True:
            try:
                await self.probe()
            except Exception:  # a bug in a probe must not stop the others
                log.exception("cluster health probe failed")
            await asyncio.sleep(self.health_interval)

    async def probe(self) -> None:
        """Ping every peer once, at the same time."""
        await asyncio.gather(*(self._probe(a) for a in self.links))
        if self.membership.refresh():
            self._changed()

    async def _probe(self, address: Address) -> None:
        try:
            reply = await self.links[address].connection.call("daxd.ping", self._ping_body())
        except PeerError as exc:
            self._record(address, None, str(exc))
            return
        if not isinstance(reply, Mapping):
            self._record(address, None, "ping reply is not a map")
            return
        self._record(address, reply, None)
        self._learn_tables(reply.get("tables"))
        self.links[address].wake()

    def _record(self, address: Address, reply: Mapping[str, Any] | None, error: str | None) -> None:
        was = self.membership.version
        if reply is not None:
            self.membership.succeeded(address, reply)
        else:
            self.membership.failed(address, error or "failed")
        if self.membership.version != was:
            self._changed()

    def _changed(self) -> None:
        log.info("cluster: healthy nodes are now %s", ", ".join(self.membership.healthy_names()))
        if self.tailer is not None:
            self.tailer.reassign()

    def _learn_tables(self, tables: Any) -> None:
        if isinstance(tables, list):
            for table in tables[:MAX_TABLES_SHARED]:
                if isinstance(table, str):
                    self.accelerator.see_table(table)  # the stream tailer looks at a new one at once

    # -- pushes --

    def tell_peers(self, changes: list[Change]) -> None:
        """The Accelerator's ``on_write`` hook: queue the changes for every peer."""
        wire = [c.to_wire() for c in changes]
        for link in self.links.values():
            link.push("daxd.invalidate", wire)

    async def sink(self, records: Sequence[StreamRecord]) -> None:
        """The stream tailer's sink: apply here, then fan out to every peer."""
        await self._apply_records(records)
        wire = [{"table": r.table, "stream": r.stream, "record": r.to_wire()} for r in records]
        for link in self.links.values():
            link.push("daxd.records", wire)

    async def distrust(self, table: str, stream: str) -> None:
        """The stream tailer's ``distrust`` hook: drop the table's entries here and on every peer."""
        self.accelerator.distrust(table)
        for link in self.links.values():
            link.push("daxd.records", [{"table": table, "stream": stream, DISTRUST: True}])

    async def _apply_records(self, records: Sequence[StreamRecord]) -> None:
        if not records:
            return
        if self.tailer is not None:
            await self.tailer.apply_locally(records)
        else:
            for record in records:
                self.accelerator.apply_stream_record(record)
        latest = records[-1].created
        if latest is not None:
            self.stream_lag[records[-1].table] = max(0.0, self.wall() - latest)

    def owns(self, shard: str) -> bool:
        """The stream tailer's shard filter."""
        return self.membership.owns(shard)

    # -- answering peers --

    def endpoints_reply(self, hostname: str, availability_zone: str) -> bytes | None:
        """The ``endpoints`` reply of a cluster (None: not clustered, answer as a single node)."""
        if not self.membership.clustered:
            return None
        self.membership.refresh()
        cached = self._endpoints
        if cached is None or cached[0] != self.membership.version:
            reply = encode_endpoints(self.membership.endpoints(hostname, availability_zone))
            cached = self._endpoints = (self.membership.version, reply)
        return cached[1]

    def handle(self, message: PeerMessage) -> bytes | Awaitable[bytes]:
        """Answer a peer method; a body we cannot read is a ValidationException, never a crash."""
        body = message.body
        if not isinstance(body, Mapping):
            return encode_error(ValidationException(f"{message.method}: the body must be a map"))
        try:
            result = self._handlers[message.method](body)
        except (BadChange, MalformedRecord, ValueError, TypeError) as exc:
            return encode_error(ValidationException(f"{message.method}: {exc}"))
        if isinstance(result, Awaitable):
            return self._later(message.method, result)
        return SUCCESS + cbor2.dumps(result)

    async def _later(self, method: str, pending: Awaitable[Any]) -> bytes:
        try:
            return SUCCESS + cbor2.dumps(await pending)
        except (BadChange, MalformedRecord, ValueError, TypeError) as exc:
            return encode_error(ValidationException(f"{method}: {exc}"))

    def _on_ping(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self._learn_tables(body.get("tables"))
        status = self.summary()
        if body.get("view") is True:
            status["nodes"] = self.membership.view()
            status["table_policies"] = self.accelerator.policies_view()
        return status

    def _flush_if_asked(self, body: Mapping[str, Any]) -> None:
        if body.get("flush") is True:
            self.received["flush"] += 1
            flushed = self.accelerator.flush()
            log.warning("cluster: a peer could not send us some invalidations, so it asked for a flush: "
                        "%d cached entries dropped", flushed)

    def _on_invalidate(self, body: Mapping[str, Any]) -> int:
        changes = [Change.from_wire(raw) for raw in _items(body)]
        self._flush_if_asked(body)
        self.received["daxd.invalidate"] += len(changes)
        return apply_changes(self.accelerator, changes, self.quiet)

    def _on_records(self, body: Mapping[str, Any]) -> Awaitable[int]:
        """Parsed at once (a bad body is answered with an error); applied asynchronously (schemas)."""
        items = _items(body)
        distrusted = [_distrusted_table(raw) for raw in items if isinstance(raw, Mapping) and DISTRUST in raw]
        records = [_record_from_wire(raw) for raw in items if not (isinstance(raw, Mapping) and DISTRUST in raw)]
        for table in distrusted:
            self.accelerator.distrust(table)
        self._flush_if_asked(body)
        self.received["daxd.records"] += len(records)
        return self._apply_forwarded(records)

    async def _apply_forwarded(self, records: list[StreamRecord]) -> int:
        for run in _by_stream(records):
            await self._apply_records(run)
        return len(records)

    # -- status --

    def _ping_body(self) -> dict[str, Any]:
        return {"node": self.membership.name, "id": self.membership.node_id, "tables": self._tables()}

    def _tables(self) -> list[str]:
        acc = self.accelerator
        return sorted(acc.tables_seen | set(acc.schemas))[:MAX_TABLES_SHARED]

    def summary(self) -> dict[str, Any]:
        """This node's own figures, as a ping reply carries them."""
        metrics = self.accelerator.metrics
        hits = metrics.total("daxd_item_cache_hits") + metrics.total("daxd_query_cache_hits") \
            + metrics.total("daxd_scan_cache_hits")
        misses = metrics.total("daxd_item_cache_misses") + metrics.total("daxd_query_cache_misses") \
            + metrics.total("daxd_scan_cache_misses")
        store = self.accelerator.store
        return {
            "node": self.membership.name, "id": self.membership.node_id, "address": str(self.membership.me),
            "hits": int(hits), "misses": int(misses),
            "hit_ratio": round(hits / (hits + misses), 4) if hits + misses else None,
            "cache_bytes": store.bytes, "cache_entries": len(store),
            "streams": self._streams(), "tables": self._tables(),
            "received": dict(self.received),
        }

    def _streams(self) -> dict[str, dict[str, Any]]:
        stats = self.tailer.stats if self.tailer is not None else None
        tables = set(self.stream_lag) | (set(stats.status) if stats is not None else set())
        lags = {**(stats.last_lag if stats is not None else {}), **self.stream_lag}
        return {t: {"status": stats.status.get(t, "-") if stats is not None else "off",
                    "readers": stats.readers.get(t, 0) if stats is not None else 0,
                    "lag": round(lags[t], 3) if t in lags else None}
                for t in sorted(tables)}

    def view(self) -> dict[str, Any]:
        """Everything ``GET /cluster`` and ``daxd status`` show."""
        return {"self": self.summary(), "nodes": self.membership.view(),
                "pushes": {str(a): {"queued": len(link.outbox), "sent": link.sent, "dropped": link.dropped}
                           for a, link in self.links.items()}}


def _items(body: Mapping[str, Any]) -> list[Any]:
    items = body.get("items", [])
    if not isinstance(items, list):
        raise ValueError("items must be an array")
    return items


def _record_from_wire(raw: Any) -> StreamRecord:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("table"), str) or not isinstance(raw.get("stream"), str):
        raise MalformedRecord("a forwarded record needs its table and stream")
    return StreamRecord.from_wire(raw["table"], raw["stream"], raw.get("record"))


def _distrusted_table(raw: Mapping[str, Any]) -> str:
    if raw.get(DISTRUST) is not True or not isinstance(raw.get("table"), str):
        raise MalformedRecord("a distrust item needs a table name and distrust: true")
    return str(raw["table"])


def _by_stream(records: list[StreamRecord]) -> list[list[StreamRecord]]:
    """Consecutive runs of one stream (the tailer applies a batch under one table's schema)."""
    runs: list[list[StreamRecord]] = []
    for record in records:
        if runs and runs[-1][0].stream == record.stream:
            runs[-1].append(record)
        else:
            runs.append([record])
    return runs


def peer_credentials(secrets: Mapping[str, str] | None) -> Credentials | None:
    """The node signs peer connections with the first key of its own key file."""
    if not secrets:
        return None
    key, secret = next(iter(secrets.items()))
    return Credentials(key, secret)
