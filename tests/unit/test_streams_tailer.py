"""The stream tailer: shard decisions (pure), then its asyncio loop against a scripted Streams service."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from daxd.accelerator import Accelerator
from daxd.drivers import step
from daxd.messages import Call
from daxd.model.errors import DaxdError, from_code
from daxd.model.keys import canonical_key
from daxd.streams.planner import LATEST_POSITION, TRIM_HORIZON_POSITION, Position, Shard, ShardPlan, ShardPlanner
from daxd.streams.stats import StreamCollector
from daxd.streams.tailer import StreamTailer, TailerSettings

# -- the planner ------------------------------------------------------------------


def test_shards_open_at_start_are_read_from_latest_and_closed_ones_skipped() -> None:
    planner = ShardPlanner(lambda _: True)
    plan = planner.update([Shard("a", closed=True), Shard("b", "a"), Shard("c")])
    assert plan == ShardPlan(start=(("b", LATEST_POSITION), ("c", LATEST_POSITION)))


def test_a_child_waits_for_its_parent_then_reads_from_trim_horizon() -> None:
    planner = ShardPlanner(lambda _: True)
    planner.update([Shard("a")])
    assert planner.update([Shard("a", closed=True), Shard("b", "a")]).start == ()
    planner.finish("a")
    assert planner.update([Shard("a", closed=True), Shard("b", "a")]).start == (("b", TRIM_HORIZON_POSITION),)
    assert planner.update([Shard("b", "a")]).start == ()  # the parent trimmed away: nothing new


def test_a_child_whose_parent_is_unknown_starts_at_once() -> None:
    planner = ShardPlanner(lambda _: True)
    planner.update([])
    assert planner.update([Shard("b", "gone")]).start == (("b", TRIM_HORIZON_POSITION),)


def test_only_owned_shards_are_read_and_lost_ones_stopped() -> None:
    owned = {"a", "b"}
    planner = ShardPlanner(owned.__contains__)
    assert planner.update([Shard("a"), Shard("b"), Shard("c")]).start == (("a", LATEST_POSITION), ("b", LATEST_POSITION))
    owned.discard("b")
    owned.add("c")
    assert planner.update([Shard("a"), Shard("b"), Shard("c")]) == ShardPlan(start=(("c", LATEST_POSITION),), stop=("b",))


def test_a_child_of_another_nodes_closed_shard_does_not_wait_for_it() -> None:
    planner = ShardPlanner(lambda shard: shard != "a")
    planner.update([Shard("a")])
    assert planner.update([Shard("a"), Shard("b", "a")]).start == ()  # parent still open
    assert planner.update([Shard("a", closed=True), Shard("b", "a")]).start == (("b", TRIM_HORIZON_POSITION),)


def test_an_abandoned_shard_can_be_started_again() -> None:
    planner = ShardPlanner(lambda _: True)
    planner.update([Shard("a")])
    planner.abandon("a")
    assert planner.update([Shard("a")]).start == (("a", LATEST_POSITION),)


# -- the loop against a scripted service -------------------------------------------

TABLE = "t"
ARN = "arn:stream/t/1"
KEY = {"pk": {"S": "a"}}


class FakeStreams:
    """DynamoDB + DynamoDB Streams for one table, in memory. Iterators are ``shard|position``."""

    def __init__(self, stream: str | None = ARN) -> None:
        self.stream = stream
        self.table_exists = True
        self.status = "ENABLED"
        self.shards: dict[str, dict[str, Any]] = {"s1": self.shard()}
        self.errors: dict[str, list[DaxdError]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    @staticmethod
    def shard(parent: str | None = None) -> dict[str, Any]:
        """A shard's state: its records, of which the first ``trimmed`` are gone (older than 24 h)."""
        return {"records": [], "parent": parent, "closed": False, "trimmed": 0}

    def write(self, shard: str, event: str, value: str | None, sequence: int) -> None:
        body: dict[str, Any] = {"Keys": KEY, "SequenceNumber": f"{sequence:021d}",
                                "ApproximateCreationDateTime": 1000.0}
        if value is not None:
            body["NewImage"] = {**KEY, "v": {"S": value}}
        self.shards[shard]["records"].append({"eventName": event, "dynamodb": body})

    async def call(self, operation: str, body: bytes) -> bytes:
        assert operation == "DescribeTable"
        if not self.table_exists:
            raise from_code("ResourceNotFoundException", "Requested resource not found")
        table: dict[str, Any] = {"TableName": TABLE, "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                                 "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}]}
        if self.stream:
            table.update(LatestStreamArn=self.stream, StreamSpecification={"StreamEnabled": self.status == "ENABLED"})
        return orjson.dumps({"Table": table})

    async def call_streams(self, operation: str, body: bytes) -> bytes:
        request = orjson.loads(body)
        self.calls.append((operation, request))
        scripted = self.errors.get(operation)
        if scripted:
            raise scripted.pop(0)
        return orjson.dumps(getattr(self, operation)(request))

    def DescribeStream(self, request: dict[str, Any]) -> dict[str, Any]:
        shards = [{"ShardId": name, "SequenceNumberRange": {"StartingSequenceNumber": "1",
                                                            **({"EndingSequenceNumber": "9"} if s["closed"] else {})},
                   **({"ParentShardId": s["parent"]} if s["parent"] else {})} for name, s in self.shards.items()]
        return {"StreamDescription": {"StreamArn": ARN, "StreamStatus": self.status, "Shards": shards}}

    def GetShardIterator(self, request: dict[str, Any]) -> dict[str, Any]:
        shard, kind = request["ShardId"], request["ShardIteratorType"]
        records, trimmed = self.shards[shard]["records"], self.shards[shard]["trimmed"]
        if kind == "LATEST":
            position = len(records)
        elif kind == "TRIM_HORIZON":
            position = trimmed
        else:
            at = next(i for i, r in enumerate(records) if r["dynamodb"]["SequenceNumber"] == request["SequenceNumber"])
            position = at + 1 if kind == "AFTER_SEQUENCE_NUMBER" else at
            if position < trimmed:
                raise from_code("TrimmedDataAccessException", "the records were trimmed")
        return {"ShardIterator": f"{shard}|{position}"}

    def GetRecords(self, request: dict[str, Any]) -> dict[str, Any]:
        shard, position = request["ShardIterator"].split("|")
        if int(position) < self.shards[shard]["trimmed"]:
            raise from_code("TrimmedDataAccessException", "the records were trimmed")
        records = self.shards[shard]["records"][int(position):]
        end = int(position) + len(records)
        if self.shards[shard]["closed"] and not records:
            return {"Records": []}
        return {"Records": records, "NextShardIterator": f"{shard}|{end}"}


async def until(predicate: Callable[[], bool], steps: int = 2000) -> None:
    for _ in range(steps):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def no_wait(_seconds: float) -> None:
    await asyncio.sleep(0)


def cached(acc: Accelerator) -> Any:
    entry = acc.items.get(TABLE, canonical_key(KEY))
    return "miss" if entry is None else (None if entry.item is None else orjson.loads(entry.item)["v"]["S"])


@pytest.fixture
def acc() -> Accelerator:
    accelerator = Accelerator()
    accelerator.tables_seen.add(TABLE)  # as a GetItem miss would
    return accelerator


def tailer(acc: Accelerator, fake: FakeStreams, **kwargs: Any) -> StreamTailer:
    return StreamTailer(acc, fake, sleep=no_wait, wall=lambda: 1000.5, settings=TailerSettings(), **kwargs)


async def test_records_written_after_the_start_reach_the_cache(acc: Accelerator) -> None:
    fake = FakeStreams()
    fake.write("s1", "INSERT", "before-start", 1)
    tail = tailer(acc, fake)
    tail.start()
    await until(lambda: tail.stats.readers.get(TABLE) == 1)
    fake.write("s1", "MODIFY", "x", 2)
    await until(lambda: cached(acc) == "x")
    fake.write("s1", "REMOVE", None, 3)
    await until(lambda: cached(acc) is None)
    await tail.stop()
    assert tail.stats.applied == {(TABLE, "put"): 1, (TABLE, "negative"): 1}
    assert tail.stats.lag[TABLE].count == 2


async def test_a_split_is_followed_in_order(acc: Accelerator) -> None:
    fake = FakeStreams()
    tail = tailer(acc, fake)
    tail.start()
    await until(lambda: tail.stats.readers.get(TABLE) == 1)
    fake.write("s1", "MODIFY", "parent", 1)
    fake.shards["s2"] = fake.shard("s1")
    fake.write("s2", "MODIFY", "child", 2)
    fake.shards["s1"]["closed"] = True
    await until(lambda: cached(acc) == "child")
    assert ("GetShardIterator", {"StreamArn": ARN, "ShardId": "s2", "ShardIteratorType": "TRIM_HORIZON"}) in fake.calls
    await tail.stop()


async def test_an_expired_iterator_is_renewed_after_the_last_record(acc: Accelerator) -> None:
    fake = FakeStreams()
    tail = tailer(acc, fake)
    tail.start()
    await until(lambda: tail.stats.readers.get(TABLE) == 1)
    fake.write("s1", "MODIFY", "a", 1)
    await until(lambda: cached(acc) == "a")
    fake.errors["GetRecords"] = [from_code("ExpiredIteratorException", "Iterator expired")]
    fake.write("s1", "MODIFY", "b", 2)
    await until(lambda: cached(acc) == "b")
    renewals = [r for op, r in fake.calls if op == "GetShardIterator"]
    assert renewals[-1] == {"StreamArn": ARN, "ShardId": "s1", "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                            "SequenceNumber": f"{1:021d}"}
    await tail.stop()


async def test_transient_errors_are_retried(acc: Accelerator) -> None:
    fake = FakeStreams()
    fake.errors["DescribeStream"] = [from_code("InternalServerError", "boom", status=500)]
    fake.errors["GetShardIterator"] = [from_code("LimitExceededException", "slow down")]
    tail = tailer(acc, fake)
    tail.start()
    await until(lambda: tail.stats.readers.get(TABLE) == 1)
    assert tail.stats.errors == {(TABLE, "InternalServerError"): 1, (TABLE, "LimitExceededException"): 1}
    await tail.stop()


async def test_a_stream_we_may_not_read_falls_back_to_ttl(acc: Accelerator) -> None:
    fake = FakeStreams()
    fake.errors["GetRecords"] = [from_code("AccessDeniedException", "no", status=400)]
    tail = tailer(acc, fake)
    tail.start()
    await until(lambda: tail.stats.status.get(TABLE) == "fallback")
    assert tail.stats.fallbacks == {(TABLE, "AccessDeniedException"): 1}
    await tail.stop()


class Journal:
    """A sink and a distrust hook that write down what they were given, in order."""

    def __init__(self) -> None:
        self.events: list[int | str] = []

    async def sink(self, records: Any) -> None:
        self.events.extend(r.sequence for r in records)

    async def distrust(self, table: str, stream: str) -> None:
        assert (table, stream) == (TABLE, ARN)
        self.events.append("distrust")

    @property
    def applied(self) -> list[int]:
        return [e for e in self.events if isinstance(e, int)]


async def test_splits_expiry_and_trimming_lose_no_record_and_repeat_none(acc: Accelerator) -> None:
    """A scripted stream through all three: every record still in the stream is handed over once, in order."""
    fake, journal = FakeStreams(), Journal()
    tail = tailer(acc, fake, sink=journal.sink, distrust=journal.distrust)
    tail.start()
    await until(lambda: journal.events == ["distrust"])  # read from LATEST: older entries are distrusted
    fake.write("s1", "INSERT", "a", 1)
    fake.write("s1", "MODIFY", "b", 2)
    await until(lambda: journal.applied == [1, 2])
    assert tail.checkpoints == {(ARN, "s1"): f"{2:021d}"}

    fake.errors["GetRecords"] = [from_code("ExpiredIteratorException", "Iterator expired")]
    fake.write("s1", "MODIFY", "c", 3)
    await until(lambda: journal.applied == [1, 2, 3])
    assert [r for op, r in fake.calls if op == "GetShardIterator"][-1]["SequenceNumber"] == f"{2:021d}"

    fake.write("s1", "MODIFY", "d", 4)  # the last record of the parent, then the split
    fake.shards["s2"], fake.shards["s3"] = fake.shard("s1"), fake.shard("s1")
    fake.write("s2", "MODIFY", "e", 5)
    fake.write("s3", "MODIFY", "f", 6)
    fake.shards["s1"]["closed"] = True
    await until(lambda: sorted(journal.applied) == [1, 2, 3, 4, 5, 6])
    assert journal.applied[:4] == [1, 2, 3, 4]  # the parent's records before any child's

    fake.write("s2", "MODIFY", "g", 7)
    fake.write("s2", "MODIFY", "h", 8)
    fake.shards["s2"]["trimmed"] = 2  # 5 and 7 are gone before the reader got to 7
    await until(lambda: journal.applied[-1] == 8)
    assert sorted(journal.applied) == [1, 2, 3, 4, 5, 6, 8]  # nothing twice; only the trimmed record missing
    assert journal.events.count("distrust") == 2  # 7 was lost: what was cached before is dropped again
    assert journal.events[-2:] == ["distrust", 8]  # as soon as the new position holds
    assert (ARN, "s1") not in tail.checkpoints and tail.checkpoints[(ARN, "s2")] == f"{8:021d}"
    await tail.stop()


async def test_an_iterator_that_expires_before_any_record_distrusts_again(acc: Accelerator) -> None:
    fake, journal = FakeStreams(), Journal()
    fake.errors["GetRecords"] = [from_code("ExpiredIteratorException", "Iterator expired")]
    tail = tailer(acc, fake, sink=journal.sink, distrust=journal.distrust)
    tail.start()
    await until(lambda: journal.events == ["distrust", "distrust"])
    fake.write("s1", "INSERT", "a", 1)
    await until(lambda: journal.applied == [1])
    assert journal.events == ["distrust", "distrust", 1]
    kinds = [r["ShardIteratorType"] for op, r in fake.calls if op == "GetShardIterator"]
    assert kinds == ["LATEST", "LATEST"]  # no checkpoint to resume from: LATEST again, and distrusted once it holds
    await tail.stop()


async def test_a_reader_starts_at_a_checkpoint_without_distrusting(acc: Accelerator) -> None:
    fake, journal = FakeStreams(), Journal()
    for sequence in (1, 2, 3):
        fake.write("s1", "MODIFY", str(sequence), sequence)
    tail = tailer(acc, fake, sink=journal.sink, distrust=journal.distrust,
                  positions=lambda stream, shard: Position.after(f"{1:021d}") if shard == "s1" else None)
    tail.start()
    await until(lambda: journal.applied == [2, 3])
    fake.write("s1", "MODIFY", "4", 4)
    await until(lambda: journal.applied == [2, 3, 4])
    assert "distrust" not in journal.events
    await tail.stop()


async def test_a_trimmed_checkpoint_reads_on_from_trim_horizon_and_distrusts(acc: Accelerator) -> None:
    fake, journal = FakeStreams(), Journal()
    for sequence in (1, 2, 3):
        fake.write("s1", "MODIFY", str(sequence), sequence)
    fake.shards["s1"]["trimmed"] = 2
    tail = tailer(acc, fake, sink=journal.sink, distrust=journal.distrust,
                  positions=lambda stream, shard: Position.after(f"{1:021d}"))
    tail.start()
    await until(lambda: journal.events == ["distrust", 3])
    await tail.stop()


def test_positions_are_checked() -> None:
    assert Position.after(12).request() == {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": "12"}
    assert Position.at("7").gapless and not LATEST_POSITION.gapless and TRIM_HORIZON_POSITION.gapless
    for bad in (lambda: Position("AT_TIMESTAMP"), lambda: Position("LATEST", "1"),
                lambda: Position("AFTER_SEQUENCE_NUMBER"), lambda: Position.after("12a")):
        with pytest.raises(ValueError):
            bad()


async def test_a_table_without_a_stream_is_left_alone(acc: Accelerator) -> None:
    fake = FakeStreams(stream=None)
    tail = tailer(acc, fake)
    await tail.discover()
    await until(lambda: tail.stats.status == {TABLE: "no-stream"})
    assert fake.calls == []
    await tail.stop()


async def test_a_deleted_tables_stream_ends_and_the_table_is_flushed(acc: Accelerator) -> None:
    fake = FakeStreams()
    tail = tailer(acc, fake)
    tail.start()
    await until(lambda: tail.stats.readers.get(TABLE) == 1)
    fake.write("s1", "MODIFY", "a", 1)
    await until(lambda: cached(acc) == "a")
    fake.table_exists, fake.status, fake.shards["s1"]["closed"] = False, "DISABLED", True
    await until(lambda: TABLE not in acc.schemas and TABLE not in tail.stats.status)
    assert cached(acc) == "miss"
    assert tail.stats.fallbacks == {(TABLE, "disabled"): 1}
    await tail.stop()


async def test_a_custom_sink_gets_the_batches(acc: Accelerator) -> None:
    fake = FakeStreams()
    batches: list[list[int]] = []

    async def sink(records: Any) -> None:
        batches.append([r.sequence for r in records])

    tail = tailer(acc, fake, sink=sink)
    tail.start()
    await until(lambda: tail.stats.readers.get(TABLE) == 1)
    fake.write("s1", "INSERT", "a", 1)
    fake.write("s1", "MODIFY", "b", 2)
    await until(lambda: batches == [[1, 2]])
    assert cached(acc) == "miss"
    await tail.stop()


async def test_the_collector_exports_the_stats(acc: Accelerator) -> None:
    fake = FakeStreams()
    tail = tailer(acc, fake)
    tail.start()
    await until(lambda: tail.stats.readers.get(TABLE) == 1)
    fake.write("s1", "INSERT", "a", 1)
    await until(lambda: cached(acc) == "a")
    await tail.stop()
    registry = CollectorRegistry()
    registry.register(StreamCollector(tail.stats))
    assert registry.get_sample_value("daxd_stream_records_total", {"table": TABLE, "outcome": "put"}) == 1
    assert registry.get_sample_value("daxd_stream_lag_seconds_count", {"table": TABLE}) == 1
    assert registry.get_sample_value("daxd_stream_tailed", {"table": TABLE}) == 1


async def test_a_flushed_schema_is_relearned_from_the_same_stream_only(acc: Accelerator) -> None:
    fake = FakeStreams()
    tail = tailer(acc, fake)
    tail.start()
    await until(lambda: tail.stats.readers.get(TABLE) == 1)
    acc.flush(TABLE)  # e.g. a PartiQL write through daxd: the schema is dropped
    fake.write("s1", "MODIFY", "a", 1)
    await until(lambda: cached(acc) == "a")
    acc.flush(TABLE)
    fake.stream = "arn:stream/t/2"  # the table was deleted and created again
    fake.write("s1", "MODIFY", "old-table", 2)
    polls = sum(op == "GetRecords" for op, _ in fake.calls)
    await until(lambda: sum(op == "GetRecords" for op, _ in fake.calls) >= polls + 2)  # the batch was handled
    assert cached(acc) == "miss" and TABLE not in acc.schemas
    await tail.stop()


async def test_a_table_that_never_existed_is_not_said_to_be_gone(acc: Accelerator,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeStreams()
    fake.table_exists = False  # a GetItem on a misspelled table name put it in tables_seen
    tail = tailer(acc, fake)
    with caplog.at_level(logging.INFO, logger="daxd.streams"):
        await tail.discover()
        assert TABLE not in tail.stats.status
        assert not [r for r in caplog.records if r.levelno >= logging.INFO]
        fake.table_exists = True
        acc.tables_seen.add(TABLE)
        tail.start()
        await until(lambda: tail.stats.readers.get(TABLE) == 1)
        fake.table_exists, fake.status, fake.shards["s1"]["closed"] = False, "DISABLED", True
        await until(lambda: TABLE not in tail.stats.status)
    assert any("no longer exists" in r.getMessage() for r in caplog.records)


async def test_a_tables_first_miss_starts_following_it_without_waiting_for_discovery() -> None:
    acc, fake = Accelerator(), FakeStreams()
    tail = StreamTailer(acc, fake, settings=TailerSettings(discover_interval=3600), wall=lambda: 1000.5)
    tail.start()
    await asyncio.sleep(0.05)  # the first discovery round found nothing; the next is an hour away
    assert isinstance(step(acc.plan("GetItem", {"TableName": TABLE, "Key": KEY})), Call)  # a miss, in flight
    await until(lambda: tail.stats.readers.get(TABLE) == 1)
    await tail.stop()
    assert acc.on_new_table is None


async def test_an_iterator_failing_again_at_once_is_renewed_with_backoff(acc: Accelerator) -> None:
    """A stream that answers every GetRecords with an iterator error must not spin (nor distrust in a loop)."""
    fake, journal, slept = FakeStreams(), Journal(), []
    fake.errors["GetRecords"] = [from_code("ValidationException", "bad iterator") for _ in range(4)]

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(0)

    tail = StreamTailer(acc, fake, sleep=sleep, wall=lambda: 1000.5, sink=journal.sink, distrust=journal.distrust)
    tail.start()
    await until(lambda: not fake.errors["GetRecords"] and journal.events.count("distrust") == 5)
    fake.write("s1", "INSERT", "a", 1)
    await until(lambda: journal.applied == [1])
    timing = TailerSettings()
    naps = (timing.poll_interval, timing.discover_interval, timing.describe_interval)
    assert [s for s in slept if s not in naps] == [0.5, 1.0, 2.0]  # before the 2nd, 3rd and 4th renewal
    assert journal.events == ["distrust"] * 5 + [1]  # once per new LATEST position, not in a loop
    await tail.stop()
