"""Who is in the cluster, who is healthy, and who reads which stream shard.

Theory of operation. Every node is started with the same ``--peers`` list of
DAX addresses (``host:port``) and finds itself in it by its advertised address
and DAX port. There is no consensus: DynamoDB is the only source of truth and
any node may forward any write, so membership only has to answer three
questions, each a pure function of what the probes reported:

* *Who is healthy?* A peer is healthy after a successful ``daxd.ping`` and
  until ``max_failures`` probes in a row fail or ``stale_after`` seconds pass
  without a success (a peer that hangs is as dead as one that refuses). This
  node is always healthy to itself.
* *What does ``endpoints`` answer?* Every healthy node, each a leader (role 1):
  the official Python client sends writes only to leaders, and every daxd node
  accepts writes.
* *Who reads a shard?* Rendezvous (highest random weight) hashing over the
  healthy nodes: when a node dies only its shards move, and every node with
  the same view picks the same owner without talking to the others.

Node ids on the wire are integers derived from ``--node-id`` (:func:`node_id_of`);
a peer's id is learnt from its ping reply. The clock is injected.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from daxd.frontends.dax.responses import Endpoint

#: Probes in a row that must fail before a peer is dropped (one lost probe is noise).
DEFAULT_MAX_FAILURES = 2
#: The DAX clients' own health check gives up after ~3 s (§7.2); we drop a silent peer after 3 s too.
DEFAULT_STALE_AFTER = 3.0
#: Positive and inside a signed 64-bit CBOR integer, which every DAX client decodes.
_NODE_ID_MASK = (1 << 63) - 1
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class PeerListError(ValueError):
    """``--peers`` or ``--advertise`` cannot be used; the message says which entry."""


def node_id_of(name: str) -> int:
    """A stable positive integer for a ``--node-id``: the first 8 bytes of its SHA-256."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") & _NODE_ID_MASK


@dataclass(frozen=True, slots=True, order=True)
class Address:
    """A node's DAX address, as written in ``--peers`` (``host:port``, IPv6 as ``[::1]:8111``)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``host:port``.

        Raises:
            PeerListError: no port, or a port that is not a TCP port.
        """
        text = text.strip()
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise PeerListError(f"peers: {text!r} is not host:port")
        return cls(host.strip("[]"), int(port))

    def same_node(self, other: Address) -> bool:
        """Equal, counting ``localhost``, ``127.0.0.1`` and ``::1`` as one host."""
        if self.port != other.port:
            return False
        return self.host == other.host or {self.host, other.host} <= _LOOPBACK_NAMES


def parse_peers(text: str | Iterable[str] | None) -> list[Address]:
    """``"a:1,b:2"`` (or a list of such entries) -> addresses, duplicates dropped, order kept."""
    if text is None:
        return []
    entries = text.split(",") if isinstance(text, str) else list(text)
    found: list[Address] = []
    for entry in entries:
        if entry.strip():
            address = Address.parse(entry)
            if not any(address.same_node(a) for a in found):
                found.append(address)
    return found


def find_self(peers: list[Address], me: Address) -> list[Address]:
    """The peers other than ``me``.

    Raises:
        PeerListError: ``me`` is not in a non-empty list (every node gets the same list).
    """
    if not peers:
        return []
    others = [p for p in peers if not p.same_node(me)]
    if len(others) == len(peers):
        raise PeerListError(f"peers: this node's advertised address {me} is not in the list "
                            f"{', '.join(map(str, peers))} (set --advertise and --dax-port to match an entry)")
    return others


def shard_weight(node: str, shard: str) -> int:
    """The rendezvous weight of ``node`` for ``shard``."""
    return int.from_bytes(hashlib.sha256(f"{node}\0{shard}".encode()).digest()[:8], "big")


def owner(shard: str, nodes: Iterable[str]) -> str | None:
    """The node that reads ``shard``: the highest weight, ties broken by name (None: no nodes)."""
    return max(nodes, key=lambda n: (shard_weight(n, shard), n), default=None)


@dataclass
class PeerState:
    """What the probes told us about one peer."""

    address: Address
    ip: str
    node_id: int | None = None
    name: str | None = None
    failures: int = 0
    last_success: float | None = None
    last_error: str | None = None
    #: The peer's own status summary from its last ping reply.
    status: Mapping[str, Any] = field(default_factory=dict)


class Membership:
    """This node's view of the cluster. Single-owner; no I/O.

    Args:
        me: this node's advertised DAX address; ``my_ip`` is its IP literal.
        name: this node's ``--node-id``.
        peers: the other nodes' addresses with their IP literals (resolved by the caller).
        timer: monotonic seconds.
    """

    def __init__(self, me: Address, my_ip: str, name: str, peers: Mapping[Address, str], *,
                 timer: Callable[[], float], max_failures: int = DEFAULT_MAX_FAILURES,
                 stale_after: float = DEFAULT_STALE_AFTER) -> None:
        for ip in (my_ip, *peers.values()):
            ipaddress.ip_address(ip)  # ValueError: the caller must resolve names first
        self.me = me
        self.my_ip = my_ip
        self.name = name
        self.node_id = node_id_of(name)
        self.peers = {a: PeerState(a, ip) for a, ip in peers.items()}
        self.timer = timer
        self.max_failures = max_failures
        self.stale_after = stale_after
        #: Bumped whenever the healthy set changes: callers cache what they derive from it.
        self.version = 0
        self._healthy = frozenset[Address]()

    @property
    def clustered(self) -> bool:
        return bool(self.peers)

    # -- what the probes report --

    def succeeded(self, address: Address, reply: Mapping[str, Any]) -> None:
        """A ping of ``address`` was answered with ``reply`` (its status summary)."""
        peer = self.peers[address]
        node_id, name = reply.get("id"), reply.get("node")
        peer.node_id = node_id if isinstance(node_id, int) and node_id >= 0 else node_id_of(str(address))
        peer.name = name if isinstance(name, str) else str(address)
        peer.failures, peer.last_success, peer.last_error = 0, self.timer(), None
        peer.status = reply
        self.refresh()

    def failed(self, address: Address, error: str) -> None:
        """A ping of (or a push to) ``address`` failed."""
        peer = self.peers[address]
        peer.failures += 1
        peer.last_error = error
        self.refresh()

    def refresh(self) -> bool:
        """Recompute the healthy set (also as time passes); True if it changed."""
        healthy = frozenset(a for a, p in self.peers.items() if self._is_healthy(p))
        if healthy == self._healthy:
            return False
        self._healthy = healthy
        self.version += 1
        return True

    def _is_healthy(self, peer: PeerState) -> bool:
        if peer.last_success is None or peer.failures >= self.max_failures:
            return False
        return self.timer() - peer.last_success <= self.stale_after

    # -- decisions --

    def healthy_peers(self) -> list[Address]:
        return sorted(self._healthy)

    def healthy_names(self) -> list[str]:
        """Every healthy node, this one included, by DAX address (the shard-owner namespace)."""
        return sorted([str(self.me), *map(str, self._healthy)])

    def owns(self, shard: str) -> bool:
        """Whether this node reads ``shard`` of a stream."""
        return owner(shard, self.healthy_names()) == str(self.me)

    def endpoints(self, hostname: str, availability_zone: str) -> list[Endpoint]:
        """The ``endpoints`` answer: this node and every healthy peer, all leaders."""
        nodes = [Endpoint(self.node_id, hostname, self.my_ip, self.me.port, role=1,
                          availability_zone=availability_zone, leader_session_id=1)]
        for address in self.healthy_peers():
            peer = self.peers[address]
            nodes.append(Endpoint(peer.node_id or node_id_of(str(address)), address.host, peer.ip, address.port,
                                  role=1, availability_zone=availability_zone, leader_session_id=1))
        return nodes

    def view(self) -> list[dict[str, Any]]:
        """Every node as this one sees it, for ``daxd status`` and ``GET /cluster``."""
        now = self.timer()
        rows: list[dict[str, Any]] = [{"node": self.name, "id": self.node_id, "address": str(self.me),
                                       "role": "leader", "health": "self"}]
        for address, peer in sorted(self.peers.items()):
            healthy = address in self._healthy
            rows.append({
                "node": peer.name or str(address), "id": peer.node_id, "address": str(address),
                "role": "leader" if healthy else "-", "health": "healthy" if healthy else "unhealthy",
                "failures": peer.failures, "last_error": peer.last_error,
                "seen_ago": None if peer.last_success is None else round(now - peer.last_success, 3),
                "status": dict(peer.status)})
        return rows
