"""Which shards of a stream to read, and from where: pure decisions, no I/O.

Shards open when a stream is first described are read from LATEST; shards
born later are read from TRIM_HORIZON once their parent is finished, so the
records of one key arrive in order across splits (the tailer's docstring has
the whole theory).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

LATEST = "LATEST"
TRIM_HORIZON = "TRIM_HORIZON"
AFTER_SEQUENCE_NUMBER = "AFTER_SEQUENCE_NUMBER"
AT_SEQUENCE_NUMBER = "AT_SEQUENCE_NUMBER"


@dataclass(frozen=True, slots=True)
class Shard:
    """One shard of a stream, as DescribeStream lists it."""

    id: str
    parent: str | None = None
    closed: bool = False

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> Shard:
        numbers = raw.get("SequenceNumberRange") or {}
        return cls(str(raw["ShardId"]), raw.get("ParentShardId"), "EndingSequenceNumber" in numbers)


@dataclass(frozen=True, slots=True)
class Position:
    """Where a shard reader starts: a GetShardIterator ``ShardIteratorType`` and its ``SequenceNumber``.

    Build them with :data:`LATEST_POSITION`, :data:`TRIM_HORIZON_POSITION`,
    :meth:`after` (resume after a checkpoint) or :meth:`at`.
    """

    kind: str
    sequence: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in (LATEST, TRIM_HORIZON, AFTER_SEQUENCE_NUMBER, AT_SEQUENCE_NUMBER):
            raise ValueError(f"unknown shard iterator type {self.kind!r}")
        numbered = self.kind in (AFTER_SEQUENCE_NUMBER, AT_SEQUENCE_NUMBER)
        if numbered != (self.sequence is not None):
            raise ValueError(f"{self.kind} {'needs' if numbered else 'takes no'} sequence number")
        if self.sequence is not None and not (self.sequence.isdigit() and len(self.sequence) <= 40):
            raise ValueError(f"bad sequence number {self.sequence!r}")

    @classmethod
    def after(cls, sequence: str | int) -> Position:
        """Just after a record already read (a checkpoint)."""
        return cls(AFTER_SEQUENCE_NUMBER, str(sequence))

    @classmethod
    def at(cls, sequence: str | int) -> Position:
        """At a record, which is read again."""
        return cls(AT_SEQUENCE_NUMBER, str(sequence))

    @property
    def gapless(self) -> bool:
        """False for LATEST: records written before the iterator was taken are never read."""
        return self.kind != LATEST

    def request(self) -> dict[str, str]:
        """The GetShardIterator fields naming this position."""
        if self.sequence is None:
            return {"ShardIteratorType": self.kind}
        return {"ShardIteratorType": self.kind, "SequenceNumber": self.sequence}


LATEST_POSITION = Position(LATEST)
TRIM_HORIZON_POSITION = Position(TRIM_HORIZON)


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """What to do after a DescribeStream: readers to start (shard, position) and to stop."""

    start: tuple[tuple[str, Position], ...] = ()
    stop: tuple[str, ...] = ()


class ShardPlanner:
    """Which shards of one stream this node reads, and from where. Pure: no I/O, no clock."""

    def __init__(self, owns: Callable[[str], bool]) -> None:
        self.owns = owns
        self.known: dict[str, Shard] = {}
        self.at_start: set[str] | None = None
        self.reading: set[str] = set()
        self.finished: set[str] = set()

    def update(self, shards: Sequence[Shard]) -> ShardPlan:
        """Take a fresh shard list; readers to start and stop."""
        self.known = {s.id: s for s in shards}
        if self.at_start is None:
            self.at_start = set(self.known)
            self.finished = {s.id for s in shards if s.closed}
        self.finished &= set(self.known)  # trimmed shards are forgotten
        stop = tuple(sorted(s for s in self.reading if not self.owns(s)))
        self.reading.difference_update(stop)
        start = tuple((s.id, self._position(s)) for s in shards if self._startable(s))
        self.reading.update(s for s, _ in start)
        return ShardPlan(start, stop)

    def finish(self, shard_id: str) -> None:
        """A reader reached the end of a closed shard."""
        self.reading.discard(shard_id)
        self.finished.add(shard_id)

    def abandon(self, shard_id: str) -> None:
        """A reader stopped before the end (cancelled); it may be started again."""
        self.reading.discard(shard_id)

    def _startable(self, shard: Shard) -> bool:
        if shard.id in self.reading or shard.id in self.finished or not self.owns(shard.id):
            return False
        if self.at_start is not None and shard.id in self.at_start:
            return True
        parent = self.known.get(shard.parent) if shard.parent else None
        if parent is None or parent.id in self.finished:
            return True
        return parent.closed and not self.owns(parent.id)  # another node reads it: we cannot wait for it

    def _position(self, shard: Shard) -> Position:
        """Open at our start: LATEST (the reader then distrusts older entries). Born later: all of it, in order."""
        return LATEST_POSITION if self.at_start is not None and shard.id in self.at_start else TRIM_HORIZON_POSITION


# -- statistics ------------------------------------------------------------------
