"""Which stream shards this node should lease, and what a checkpoint means. Pure: no I/O, no clock.

Nodes sharing a Valkey read each DynamoDB Streams shard exactly once across
the cluster: the reader of a shard holds its lease (:mod:`daxd.tier.leases`
performs the Valkey side). Every node knows every shard of every followed
table, and each round (about once a second) decides with :func:`plan`:

* *Fair share.* With ``n`` shards known and ``live`` nodes, a node holds at
  most ``ceil(n / live)`` leases: alone it holds all of them; with others live
  it takes its share, so the reading spreads out. A node holding more than its
  share (a node joined) releases one lease per round; the new holder resumes
  after the checkpoint, so nothing is skipped.
* *Which ones.* A free shard (no holder, lease expired or released) is taken
  in the order of a rendezvous weight of (node, shard), so nodes racing for
  free shards mostly want different ones; the Valkey ``SET NX`` settles the
  rest. A shard whose checkpoint says it was read to its end is not leased.
* *Lease loss* (renewal found another holder or none): the shard's reader
  stops at once (:class:`~daxd.streams.tailer.LeaseLost` at its next checkpoint, or a re-plan of
  its stream); records it applied after the last checkpoint are applied again
  by the next holder, which is harmless (applying a record evicts its key).

A checkpoint is the stream ARN and the sequence number of the last record
applied (:func:`encode_checkpoint`); a new holder resumes
:meth:`~daxd.streams.tailer.Position.after` it when the ARN is the shard's
current stream (a table re-created under the same name has a new one).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from daxd.streams.planner import Position

#: Marks a checkpoint of a closed shard read to its end: nobody needs to lease it again.
END = "end"


@dataclass(frozen=True, slots=True, order=True)
class ShardRef:
    """One shard of one table's stream."""

    table: str
    stream: str
    shard: str


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What a shard's checkpoint key holds: the stream it belongs to, the last sequence number applied."""

    stream: str
    sequence: str
    ended: bool = False

    def resume(self, stream: str) -> Position | None:
        """Where a new holder of a shard of ``stream`` starts (None: no usable checkpoint)."""
        return Position.after(self.sequence) if stream == self.stream and self.sequence.isdigit() else None


def encode_checkpoint(stream: str, sequence: str, ended: bool = False) -> bytes:
    return f"{stream}\n{sequence}{chr(10) + END if ended else ''}".encode()


def decode_checkpoint(raw: bytes | None) -> Checkpoint | None:
    """None for a missing or unreadable checkpoint (the planner's start position is used then)."""
    if raw is None:
        return None
    parts = raw.decode(errors="replace").split("\n")
    if len(parts) not in (2, 3) or not parts[1].isdigit() or len(parts[1]) > 40:
        return None
    return Checkpoint(parts[0], parts[1], len(parts) == 3 and parts[2] == END)


def fair_share(shards: int, live: int) -> int:
    """How many of ``shards`` one of ``live`` nodes may hold."""
    return math.ceil(shards / max(1, live))


def weight(node: str, shard: ShardRef) -> int:
    """The rendezvous weight of ``node`` for ``shard``: the order in which a node tries free shards."""
    text = f"{node}\0{shard.table}\0{shard.shard}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big")


@dataclass(frozen=True, slots=True)
class LeasePlan:
    """One round's decision: leases to try to take, and leases to give back."""

    acquire: tuple[ShardRef, ...] = ()
    release: tuple[ShardRef, ...] = ()


def plan(me: str, known: Iterable[ShardRef], holders: Mapping[ShardRef, str | None], live: int,
         ended: Iterable[ShardRef] = ()) -> LeasePlan:
    """This node's round.

    Args:
        me: this node's name (a lease's value).
        known: every shard of every followed stream this node has seen listed.
        holders: the current holder of each known shard (None: free), as just read from Valkey.
        live: live nodes sharing the Valkey, this one included.
        ended: shards read to their end (never leased again).
    """
    done = set(ended)
    active = sorted(set(known) - done)
    share = fair_share(len(active), live)
    held = [s for s in active if holders.get(s) == me]
    if len(held) > share:
        return LeasePlan(release=(min(held, key=lambda s: weight(me, s)),))
    free = [s for s in active if holders.get(s) is None]
    free.sort(key=lambda s: weight(me, s), reverse=True)
    return LeasePlan(acquire=tuple(free[:share - len(held)]))
