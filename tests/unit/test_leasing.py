"""Stream-shard leases: the pure decisions, and the tailer following what a lease keeper says."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from daxd.accelerator import Accelerator
from daxd.streams.leasing import Checkpoint, LeasePlan, ShardRef, decode_checkpoint, encode_checkpoint, fair_share, plan
from daxd.streams.planner import Position
from tests.unit.test_streams_tailer import ARN, TABLE, FakeStreams, Journal, tailer, until

SHARDS = [ShardRef("t", "arn", f"s{i}") for i in range(6)]


def test_a_node_alone_takes_every_free_shard() -> None:
    assert set(plan("a", SHARDS, {}, live=1).acquire) == set(SHARDS)


def test_with_others_live_a_node_takes_its_fair_share_and_no_more() -> None:
    assert fair_share(6, 3) == 2 and fair_share(7, 3) == 3 and fair_share(0, 3) == 0 and fair_share(2, 0) == 2
    assert len(plan("a", SHARDS, {}, live=3).acquire) == 2
    held = {SHARDS[0]: "a", SHARDS[1]: "b"}
    assert len(plan("a", SHARDS, held, live=3).acquire) == 1  # holds one of its two
    full = {s: "a" for s in SHARDS[:2]}
    assert plan("a", SHARDS, full, live=3) == LeasePlan()


def test_nodes_racing_for_free_shards_mostly_want_different_ones() -> None:
    wants = [set(plan(n, SHARDS, {}, live=3).acquire) for n in ("a", "b", "c")]
    assert len(wants[0] | wants[1] | wants[2]) > 2


def test_a_node_holding_more_than_its_share_gives_one_back_per_round() -> None:
    held = {s: "a" for s in SHARDS}
    decision = plan("a", SHARDS, held, live=2)
    assert len(decision.release) == 1 and decision.acquire == ()


def test_a_dead_nodes_shards_are_taken_once_its_leases_expired() -> None:
    held = {s: ("a" if i < 3 else "b") for i, s in enumerate(SHARDS)}
    assert plan("a", SHARDS, held, live=2) == LeasePlan()  # b's leases are still live
    expired = {s: h for s, h in held.items() if h == "a"}
    assert set(plan("a", SHARDS, expired, live=1).acquire) == set(SHARDS[3:])


def test_shards_read_to_their_end_are_not_leased() -> None:
    assert set(plan("a", SHARDS, {}, live=1, ended=SHARDS[:5]).acquire) == {SHARDS[5]}


def test_checkpoints_round_trip_and_resume_only_on_their_stream() -> None:
    assert decode_checkpoint(encode_checkpoint("arn1", "0042")) == Checkpoint("arn1", "0042")
    assert decode_checkpoint(encode_checkpoint("arn1", "7", ended=True)) == Checkpoint("arn1", "7", True)
    checkpoint = Checkpoint("arn1", "0042")
    assert checkpoint.resume("arn1") == Position.after("0042")
    assert checkpoint.resume("arn2") is None  # the table was re-created: a new stream
    for garbage in (None, b"", b"arn", b"arn\nx", b"arn\n1\n2\n3", b"arn\n" + b"1" * 41):
        assert decode_checkpoint(garbage) is None


@pytest.fixture
def acc() -> Accelerator:
    accelerator = Accelerator()
    accelerator.tables_seen.add(TABLE)  # as a GetItem miss would
    return accelerator


class Keeper:
    """A lease keeper the test drives: which shards are held, and whether checkpoints still succeed."""

    def __init__(self, held: set[str], start: Position | None = None) -> None:
        self.held = held
        self.start = start
        self.listed_shards: list[str] = []
        self.checkpoints: list[str] = []
        self.accept = True
        self.ended: list[str] = []

    def listed(self, table: str, stream: str, shards: Sequence[str]) -> None:
        self.listed_shards = list(shards)

    def owns(self, table: str, stream: str, shard: str) -> bool:
        return shard in self.held

    def position(self, table: str, stream: str, shard: str) -> Position | None:
        return self.start

    async def checkpoint(self, table: str, stream: str, shard: str, sequence: str) -> bool:
        if self.accept:
            self.checkpoints.append(sequence)
        return self.accept

    async def finished(self, table: str, stream: str, shard: str, sequence: str | None) -> None:
        self.ended.append(shard)


async def test_a_leased_shard_resumes_after_its_checkpoint_and_checkpoints_each_batch(acc: Accelerator) -> None:
    fake, journal = FakeStreams(), Journal()
    for sequence in (1, 2, 3):
        fake.write("s1", "MODIFY", str(sequence), sequence)
    keeper = Keeper({"s1"}, Position.after(f"{1:021d}"))
    tail = tailer(acc, fake, sink=journal.sink, distrust=journal.distrust, leases=keeper)
    tail.start()
    await until(lambda: journal.events == [2, 3])
    assert keeper.listed_shards == ["s1"] and keeper.checkpoints == [f"{3:021d}"]
    await tail.stop()


async def test_an_unleased_shard_is_not_read_and_a_lost_lease_stops_its_reader(acc: Accelerator) -> None:
    fake, journal = FakeStreams(), Journal()
    keeper = Keeper(set())
    tail = tailer(acc, fake, sink=journal.sink, distrust=journal.distrust, leases=keeper)
    tail.start()
    await until(lambda: keeper.listed_shards == ["s1"])
    fake.write("s1", "INSERT", "a", 1)
    for _ in range(200):
        await until(lambda: True)
    assert journal.events == [] and tail.stats.readers.get(TABLE, 0) == 0
    keeper.held.add("s1")
    tail.reassign()
    await until(lambda: tail.stats.readers.get(TABLE) == 1 and journal.events == ["distrust"])
    keeper.accept = False  # another node took the lease
    fake.write("s1", "MODIFY", "b", 2)
    await until(lambda: tail.stats.readers.get(TABLE) == 0)
    assert journal.events == ["distrust", 2] and keeper.ended == []  # applied once, then stopped, not "finished"
    assert (ARN, "s1") not in tail.checkpoints
    await tail.stop()
