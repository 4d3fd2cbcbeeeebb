"""The DynamoDB Streams tailer: every change to a cached table reaches the cache.

Theory of operation. Writes that never pass through this node (another node,
an application talking to DynamoDB directly, DynamoDB's own TTL deletes) would
leave the cache stale until its TTL; DynamoDB Streams reports each of them.

- *Tables*: every table the Accelerator has read or learnt the schema of
  (``tables_seen``, ``schemas``), looked at at once when a read first misses
  on it (``Accelerator.on_new_table``) and otherwise each
  ``discover_interval``. A table without a stream is left to TTL expiry and
  looked at again every ``recheck_interval`` (its stream may be enabled later).
- *Shards*: :class:`ShardPlanner` (pure) decides which shards of a stream to
  read and from which :class:`Position`: shards open when we first describe
  the stream are read from LATEST; shards born later are read from
  TRIM_HORIZON once their parent is finished, so the records of one key arrive
  in order across splits. A ``positions`` hook may name another start for a
  shard. With ``leases`` (:class:`ShardLeases`: nodes sharing a Valkey) only
  the shards whose lease this node holds are read, from their checkpoint; each
  applied batch advances it, and a lost lease stops the reader (DynamoDB
  Streams allows about two readers per shard: a cluster reads each once).
- *No gap*: a reader positioned where records may have been missed (LATEST,
  or TRIM_HORIZON after ``TrimmedDataAccessException``) *distrusts* the table
  once its position is fixed (when GetShardIterator returns): entries filled
  before that moment may miss a write made before it and are dropped
  (``distrust``, default :meth:`Accelerator.distrust`; with a shared tier
  every node drops them). Entries filled later are safe: every write acknowledged after
  them comes after the reader's position. Gapless starts (TRIM_HORIZON of a
  new shard, a checkpoint) distrust nothing.
- *Records* go to the ``sink`` in GetRecords batches (default: applied to this
  node's Accelerator; with a shared tier the keys are evicted there too), and the
  last sequence number handed over becomes the shard's checkpoint
  (:attr:`StreamTailer.checkpoints`). A null ``NextShardIterator`` means the
  shard is closed: the planner then starts its children. An expired iterator
  is renewed after the checkpoint (from the start position if nothing was
  read yet); trimmed data is read on from TRIM_HORIZON.
- *Fallback*: a stream that is disabled (or whose table is deleted) ends when
  its shards are read to their end; a stream that vanishes or that we may not
  read ends at once. Either way the table falls back to TTL expiry, logged and
  counted, and is looked at again later (and followed again from LATEST, which
  distrusts what was cached meanwhile). A table found deleted is flushed.

Everything with a clock or a socket is injected: ``client`` (see
:class:`StreamsUpstream`), ``sleep``, ``clock`` (monotonic) and ``wall``
(epoch seconds, to measure lag against ``ApproximateCreationDateTime``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from daxd.model.errors import DaxdError
from daxd.model.stream_records import MalformedRecord, Outcome, StreamRecord
from daxd.streams.client import StreamsClient
from daxd.streams.planner import (
    TRIM_HORIZON_POSITION,
    Position,
    Shard,
    ShardPlanner,
)
from daxd.streams.stats import StreamStats
from daxd.tasks import cancel_and_wait

if TYPE_CHECKING:
    from daxd.accelerator import Accelerator


log = logging.getLogger("daxd.streams")

TRIMMED = "TrimmedDataAccessException"
#: Errors after which a stream cannot be followed: fall back to TTL.
GONE_CODES = frozenset({"ResourceNotFoundException", "AccessDeniedException"})
#: GetRecords errors cured by a fresh iterator (DynamoDB Local says ValidationException for a bad one).
RENEW_CODES = frozenset({"ExpiredIteratorException", "ValidationException"})

RecordSink = Callable[[Sequence[StreamRecord]], Awaitable[None]]


class LeaseLost(Exception):
    """This node no longer holds the lease of the shard it was reading: the reader stops."""


class ShardLeases(Protocol):
    """Which shards this node reads when nodes share them (:class:`daxd.tier.leases.StreamLeases`).

    Without it the tailer reads every shard of its tables itself.
    """

    def listed(self, table: str, stream: str, shards: Sequence[str]) -> None:
        """A DescribeStream listed these shards (the candidates for leases)."""

    def owns(self, table: str, stream: str, shard: str) -> bool:
        """Whether this node holds the shard's lease now."""

    def position(self, table: str, stream: str, shard: str) -> Position | None:
        """Where the shard's checkpoint says to resume (None: the planner's choice)."""

    async def checkpoint(self, table: str, stream: str, shard: str, sequence: str) -> bool:
        """A batch up to ``sequence`` was applied; False: the lease is no longer ours (stop reading)."""

    async def finished(self, table: str, stream: str, shard: str, sequence: str | None) -> None:
        """A closed shard was read to its end."""
#: Told (table, stream) when a reader of that stream may have missed records (see "No gap" above).
Distrust = Callable[[str, str], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class TailerSettings:
    """Timing of the tailer, in seconds."""

    #: Wait after a GetRecords that returned nothing; one that returned records is followed at once.
    #: DynamoDB allows 5 GetRecords per second per shard; two readers at 4/s stay under it.
    poll_interval: float = 0.25
    #: Tables first read through this node are looked at at once; this catches the others
    #: (tables a peer told us of, schemas learnt by writes).
    discover_interval: float = 0.25
    #: How often an open stream is described to notice splits and reassigned shards.
    describe_interval: float = 10.0
    #: How often a table without a followed stream is described again.
    recheck_interval: float = 60.0
    max_backoff: float = 5.0
    #: Records per GetRecords (DynamoDB's maximum).
    batch_limit: int = 1000

    def __post_init__(self) -> None:
        if min(self.poll_interval, self.discover_interval, self.describe_interval, self.recheck_interval) <= 0:
            raise ValueError("tailer intervals must be > 0 seconds")
        if not 1 <= self.batch_limit <= 1000:
            raise ValueError("batch_limit must be between 1 and 1000")


class StreamGone(Exception):
    """A stream cannot be followed any more (deleted, or its data trimmed under us)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass
class _Table:
    """What the tailer knows of one table."""

    stream: str | None = None
    task: asyncio.Task[None] | None = None
    recheck_at: float = 0.0
    described: bool = False


class StreamTailer:
    """Follows the streams of the Accelerator's tables and feeds their records to ``sink``.

    Args:
        accelerator: whose tables are followed and whose cache records are applied to (default sink).
        client: DynamoDB and DynamoDB Streams calls (:class:`StreamsUpstream`).
        leases: which shards this node reads, from where, and their checkpoints (default: every
            shard of its tables, from the planner's positions).
        sink: receives each GetRecords batch (default: :meth:`apply_locally`).
        distrust: told (table, stream) when a reader may have missed records
            (default: :meth:`distrust_locally`; a shared tier tells every node).
        positions: where to start reading a shard, ``(stream, shard) -> Position``
            (a checkpoint store); None, or a hook that answers None: the planner's choice.
    """

    def __init__(self, accelerator: Accelerator, client: StreamsClient, *,
                 leases: ShardLeases | None = None, sink: RecordSink | None = None,
                 distrust: Distrust | None = None,
                 positions: Callable[[str, str], Position | None] | None = None,
                 settings: TailerSettings | None = None,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 guard: AbstractContextManager[Any] | None = None) -> None:
        self.accelerator = accelerator
        #: Held around every use of the Accelerator: its owner's lock when other
        #: threads drive it too (the in-process wrapper); nothing in the node.
        self.guard = guard or nullcontext()
        self.client = client
        self.leases = leases
        self.sink = sink or self.apply_locally
        self.distrust = distrust or self.distrust_locally
        self.positions = positions
        self.settings = settings or TailerSettings()
        self.stats = StreamStats()
        #: (stream, shard) -> sequence number of the last record handed to the sink, for the
        #: shards being read: :meth:`Position.after` of it resumes the shard without a gap.
        self.checkpoints: dict[tuple[str, str], str] = {}
        self._sleep = sleep
        self._clock = clock
        self._wall = wall
        self._tables: dict[str, _Table] = {}
        self._task: asyncio.Task[None] | None = None
        self._wakes: set[asyncio.Event] = set()
        #: Wakes set by :meth:`reassign` since their stream last planned (re-planned without a DescribeStream).
        self._leases_changed: set[asyncio.Event] = set()
        self._new_table = asyncio.Event()
        #: DescribeTable calls at once (many tables are often first read together, e.g. at start-up).
        self._describing = asyncio.Semaphore(8)

    # -- lifecycle --

    def start(self) -> None:
        """Start following streams on the running event loop (told of new tables at once)."""
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self.run(), name="daxd-streams")

            def new_table(_table: str) -> None:  # called where the Accelerator runs: maybe another thread
                loop.call_soon_threadsafe(self._new_table.set)

            with self.guard:
                self.accelerator.on_new_table = new_table

    async def stop(self) -> None:
        """Stop every reader and the discovery loop; returns when they have ended."""
        tasks = [t.task for t in self._tables.values() if t.task is not None]
        with self.guard:
            self.accelerator.on_new_table = None
        if self._task is not None:
            tasks.append(self._task)
            self._task = None
        await cancel_and_wait(tasks)
        log.info("stream tailer stopped")

    def reassign(self) -> None:
        """The leases held changed (taken or lost): re-plan every stream now."""
        for wake in self._wakes:
            self._leases_changed.add(wake)
            wake.set()

    async def run(self) -> None:
        """Discover tables and their streams, forever (until cancelled)."""
        while True:
            try:
                await self.discover()
            except Exception:  # a bug must not stop the streams of other tables
                log.exception("stream discovery failed")
            await self._nap(self._new_table, self.settings.discover_interval)

    # -- applying --

    async def apply_locally(self, records: Sequence[StreamRecord]) -> None:
        """The default sink: apply each record to this node's cache, in order, counting lag."""
        if records and not await self._ensure_schema(records[0].table, records[0].stream):
            return
        now = self._wall()
        for record in records:
            age = None if record.created is None else now - record.created
            try:
                with self.guard:
                    outcome = self.accelerator.apply_stream_record(record, age)
            except DaxdError as exc:  # keys that do not match the table's schema
                self.stats.count(self.stats.errors, record.table, exc.code)
                continue
            self.stats.count(self.stats.applied, record.table, outcome.value)
            if age is not None and outcome is not Outcome.SKIPPED:
                self.stats.observe_lag(record.table, age)

    async def distrust_locally(self, table: str, stream: str) -> None:
        """The default ``distrust``: drop this node's entries of the table (:meth:`Accelerator.distrust`)."""
        with self.guard:
            dropped = self.accelerator.distrust(table)
        log.debug("stream %s of table %s positioned: %d entries filled before it dropped", stream, table, dropped)

    async def _ensure_schema(self, table: str, stream: str) -> bool:
        """Relearn a key schema the Accelerator dropped (a flush), if ``stream`` is still the table's.

        A flush (DeleteTable, UpdateTable, a PartiQL write through daxd) drops
        the schema; a read refills the cache without one, so records must not
        be skipped for it. The stream check keeps a deleted table's last
        records out of a new table of the same name.
        """
        with self.guard:
            if table in self.accelerator.schemas:
                return True
        try:
            body = await self.client.call("DescribeTable", orjson.dumps({"TableName": table}))
        except DaxdError as exc:
            self.stats.count(self.stats.errors, table, exc.code)
            return False
        description = orjson.loads(body)["Table"]
        if description.get("LatestStreamArn") != stream:
            return False
        with self.guard:
            self.accelerator.learn_schema(description)
        return True

    # -- tables --

    async def discover(self) -> None:
        """Look at the tables the Accelerator knows: each one due gets a task that inspects it
        and follows its stream (tables first read together are positioned together)."""
        acc = self.accelerator
        with self.guard:
            tables = sorted(acc.tables_seen | set(acc.schemas))
        loop = asyncio.get_running_loop()
        now, known = self._clock(), set(tables)
        for name in [n for n, t in self._tables.items() if n not in known and t.task is None and t.recheck_at <= now]:
            del self._tables[name]  # forgotten (flushed, deleted): bounded by the tables known
        for table in tables:
            state = self._tables.setdefault(table, _Table())
            if state.task is None and self._clock() >= state.recheck_at:
                state.task = loop.create_task(self._inspect(table, state), name=f"daxd-stream-{table}")

    async def _inspect(self, table: str, state: _Table) -> None:
        """Find the table's stream and follow it until it ends; without one, look again later."""
        try:
            stream = await self._stream_of(table, state)
        except Exception:  # a bug must not stop the streams of other tables
            log.exception("looking at the stream of table %s failed", table)
            state.recheck_at = self._clock() + self.settings.recheck_interval
            stream = None
        if stream is None:
            state.task = None
            return
        await self._follow(table, stream, state)

    async def _stream_of(self, table: str, state: _Table) -> str | None:
        """The stream to follow now; None: no stream, or the table could not be described."""
        with self.guard:
            schema = self.accelerator.schemas.get(table)
        if schema is not None and not state.described:
            stream = schema.stream_arn
        else:
            try:
                async with self._describing:
                    stream = await self._describe_table(table)
            except DaxdError as exc:
                self._describe_failed(table, state, exc)
                return None
        state.described = True
        state.stream = stream
        if stream is None:
            log.debug("table %s has no stream: its entries expire by TTL", table)
            self.stats.status[table] = "no-stream"
            state.recheck_at = self._clock() + self.settings.recheck_interval
            return None
        self.stats.status[table] = "tailing"
        return stream

    async def _describe_table(self, table: str) -> str | None:
        """The table's enabled stream (None: none); learns the schema if the Accelerator has not."""
        body = await self.client.call("DescribeTable", orjson.dumps({"TableName": table}))
        description = orjson.loads(body)["Table"]
        with self.guard:
            self.accelerator.learn_schema(description)
        enabled = (description.get("StreamSpecification") or {}).get("StreamEnabled") is True
        arn = description.get("LatestStreamArn")
        return str(arn) if enabled and arn else None

    def _describe_failed(self, table: str, state: _Table, exc: DaxdError) -> None:
        if exc.code == "ResourceNotFoundException":
            with self.guard:
                flushed = self.accelerator.flush(table)
            if state.described:
                log.info("table %s no longer exists: %d cached entries flushed; no longer following its stream",
                         table, flushed)
            else:  # a read of a table that never existed (a typo): nothing to say above debug
                log.debug("table %s does not exist upstream: not following it", table)
            # Described again no sooner than max_backoff, even if a peer's ping names it again
            # meanwhile (a table re-created under the same name is then followed).
            self._tables[table] = _Table(recheck_at=self._clock() + self.settings.max_backoff)
            self.stats.status.pop(table, None)
            return
        self.stats.count(self.stats.errors, table, exc.code)
        state.recheck_at = self._clock() + self.settings.max_backoff

    # -- one stream --

    async def _follow(self, table: str, stream: str, state: _Table) -> None:
        """Read a stream's shards until it ends; then the table falls back to TTL expiry."""
        reason = "disabled"
        try:
            await self._follow_shards(table, stream)
        except StreamGone as exc:
            reason = exc.code
            log.warning("stream of table %s cannot be followed (%s): falling back to TTL expiry", table, exc)
        except Exception:
            reason = "error"
            log.exception("stream of table %s failed: falling back to TTL expiry", table)
        else:
            log.info("stream of table %s is disabled: falling back to TTL expiry", table)
        finally:
            state.task = None
            self.stats.readers.pop(table, None)
        self.stats.count(self.stats.fallbacks, table, reason)
        self.stats.status[table] = "fallback"
        state.recheck_at = self._clock() + (0.0 if reason == "disabled" else self.settings.recheck_interval)

    async def _follow_shards(self, table: str, stream: str) -> None:
        leases = self.leases
        planner = ShardPlanner((lambda s: leases.owns(table, stream, s)) if leases is not None else lambda _s: True)
        readers: dict[str, asyncio.Task[None]] = {}
        wake = asyncio.Event()
        self._wakes.add(wake)
        describe = True
        try:
            while True:
                if describe:  # not when only the leases held changed: the shard list is recent enough
                    status, shards = await self._describe_stream(table, stream)
                    if leases is not None:
                        leases.listed(table, stream, [s.id for s in shards if s.id not in planner.finished])
                self._collect(planner, readers)
                plan = planner.update(shards)
                for shard in plan.stop:
                    readers.pop(shard).cancel()
                for shard, position in plan.start:
                    position = (self.positions(stream, shard) if self.positions else None) \
                        or (leases.position(table, stream, shard) if leases is not None else None) or position
                    task = asyncio.get_running_loop().create_task(self.read_shard(table, stream, shard, position))
                    task.add_done_callback(lambda _task: wake.set())
                    readers[shard] = task
                if status == "DISABLED" and not readers:
                    return
                self._leases_changed.discard(wake)
                await self._nap(wake, self.settings.describe_interval)
                describe = self._collect(planner, readers) or wake not in self._leases_changed
        finally:
            self._leases_changed.discard(wake)
            self._wakes.discard(wake)
            for task in readers.values():
                task.cancel()
            await asyncio.gather(*readers.values(), return_exceptions=True)

    @staticmethod
    def _collect(planner: ShardPlanner, readers: dict[str, asyncio.Task[None]]) -> bool:
        """Reap ended readers: a reader that failed ends the stream (its exception propagates).
        True if a shard was read to its end (its children may be due)."""
        finished = False
        for shard, task in list(readers.items()):
            if not task.done():
                continue
            del readers[shard]
            if task.cancelled():
                planner.abandon(shard)
                continue
            error = task.exception()
            if isinstance(error, LeaseLost):
                planner.abandon(shard)
                continue
            if error is not None:
                raise error
            planner.finish(shard)
            finished = True
        return finished

    async def _describe_stream(self, table: str, stream: str) -> tuple[str, list[Shard]]:
        """DescribeStream, every page: (StreamStatus, shards)."""
        shards: list[Shard] = []
        request: dict[str, Any] = {"StreamArn": stream}
        while True:
            description = (await self._streams(table, "DescribeStream", request))["StreamDescription"]
            shards.extend(Shard.from_wire(s) for s in description.get("Shards") or ())
            last = description.get("LastEvaluatedShardId")
            if not last:
                return str(description.get("StreamStatus", "ENABLED")), shards
            request = {"StreamArn": stream, "ExclusiveStartShardId": last}

    # -- one shard --

    async def read_shard(self, table: str, stream: str, shard: str, start: Position) -> None:
        """Read one shard from ``start`` until it is closed (a null NextShardIterator), or cancelled.

        Every record is handed to the sink once, in order; :attr:`checkpoints`
        follows. Whenever the reader takes a position where records may have
        been missed (``start`` is LATEST, an expired iterator had read nothing
        from LATEST, records were trimmed) it calls ``distrust`` as soon as it
        holds the iterator: an iterator's position is fixed when
        GetShardIterator returns it.

        Raises:
            StreamGone: the stream vanished or may not be read.
            LeaseLost: the shard's lease is no longer this node's (the reader stops).
        """
        name = (stream, shard)
        last: str | None = None
        renewals = 0  # in a row: an iterator that fails at once again is renewed with backoff
        iterator, position = await self._open(table, stream, shard, start)
        self.stats.readers[table] = self.stats.readers.get(table, 0) + 1
        try:
            while iterator is not None:
                try:
                    reply = await self._streams(table, "GetRecords",
                                                {"ShardIterator": iterator, "Limit": self.settings.batch_limit},
                                                passed=RENEW_CODES | {TRIMMED})
                except DaxdError as exc:
                    trimmed = exc.code == TRIMMED
                    resume = TRIM_HORIZON_POSITION if trimmed else \
                        Position.after(last) if last is not None else position
                    log.info("reading %s %s again from %s (%s)", table, shard, resume.kind, exc.code)
                    if renewals:
                        await self._sleep(self._backoff(renewals))
                    renewals += 1
                    iterator, position = await self._open(table, stream, shard, resume, lost=trimmed)
                    continue
                renewals = 0
                raw = reply.get("Records") or []
                records = self._parse(table, stream, raw)
                if records:
                    await self.sink(records)
                if raw:
                    last = self.checkpoints[name] = str(raw[-1]["dynamodb"]["SequenceNumber"])
                    if self.leases is not None and not await self.leases.checkpoint(table, stream, shard, last):
                        raise LeaseLost(f"lease of {table} {shard} lost")
                iterator = reply.get("NextShardIterator")
                if not raw and iterator is not None:
                    await self._sleep(self.settings.poll_interval)
        finally:
            self.stats.readers[table] = self.stats.readers.get(table, 1) - 1
            self.checkpoints.pop(name, None)
        if self.leases is not None:
            await self.leases.finished(table, stream, shard, last)
        log.debug("shard %s of table %s is closed and read", shard, table)

    async def _open(self, table: str, stream: str, shard: str, position: Position, *,
                    lost: bool = False) -> tuple[str | None, Position]:
        """An iterator at ``position`` (TRIM_HORIZON if its records were trimmed) and the position it is at.

        If records may be lost before it (``lost``, LATEST, or trimmed), the
        table is distrusted once the iterator is held.
        """
        request: dict[str, Any] = {"StreamArn": stream, "ShardId": shard, **position.request()}
        try:
            reply = await self._streams(table, "GetShardIterator", request, passed=frozenset({TRIMMED}))
        except DaxdError:
            log.warning("records of %s %s were trimmed before %s: reading on from TRIM_HORIZON",
                        table, shard, position.kind)
            return await self._open(table, stream, shard, TRIM_HORIZON_POSITION, lost=True)
        if lost or not position.gapless:
            await self.distrust(table, stream)
        iterator = reply.get("ShardIterator")
        return (str(iterator) if iterator else None), position

    def _parse(self, table: str, stream: str, raw: list[Any]) -> list[StreamRecord]:
        records = []
        for item in raw:
            try:
                records.append(StreamRecord.from_wire(table, stream, item))
            except MalformedRecord as exc:
                log.warning("skipping a malformed record of table %s: %s", table, exc)
                self.stats.count(self.stats.errors, table, "MalformedRecord")
        return records

    # -- plumbing --

    async def _streams(self, table: str, operation: str, request: dict[str, Any], *,
                       passed: frozenset[str] = frozenset()) -> dict[str, Any]:
        """One Streams call, retried with backoff until it succeeds.

        Raises:
            StreamGone: the stream is gone or may not be read (:data:`GONE_CODES`).
            DaxdError: an error whose code is in ``passed`` (the caller handles it).
        """
        failures = 0
        while True:
            try:
                reply: dict[str, Any] = orjson.loads(await self.client.call_streams(operation, orjson.dumps(request)))
                return reply
            except DaxdError as exc:
                self.stats.count(self.stats.errors, table, exc.code)
                if exc.code in GONE_CODES:
                    raise StreamGone(exc.code, exc.message) from None
                if exc.code in passed:
                    raise
                failures += 1
                log.info("%s for table %s failed (%s), attempt %d", operation, table, exc.code, failures)
                await self._sleep(self._backoff(failures))

    def _backoff(self, failures: int) -> float:
        return float(min(self.settings.max_backoff, self.settings.poll_interval * 2 ** failures))

    async def _nap(self, wake: asyncio.Event, seconds: float) -> None:
        """Sleep ``seconds`` (the injected sleep) or until ``wake`` is set, whichever comes first."""
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        waiter = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waiter.cancel()
        wake.clear()
