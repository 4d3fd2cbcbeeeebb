"""A node's place in the cluster as others see it: who it is, who else is live, its figures.

A cluster is the nodes sharing one Valkey (docs/cluster.md): membership is
:class:`daxd.tier.members.ValkeyMembers`, stream shards are leased through
:mod:`daxd.tier.leases`, coherence is Valkey's tracking. Nodes never talk to
each other. :class:`Cluster` gathers what an operator asks a node for:

* :meth:`summary` - this node's figures (hits, cache, streams);
* :meth:`nodes` - every live node, for the dashboard and ``GET /cluster``;
* :meth:`live_nodes` - the nodes the DAX ``endpoints`` answer names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from daxd.cluster.membership import LiveNode, node_id_of

if TYPE_CHECKING:
    from daxd.accelerator import Accelerator
    from daxd.streams.tailer import StreamTailer
    from daxd.tier.leases import StreamLeases
    from daxd.tier.members import ValkeyMembers

#: Tables listed in a status answer.
MAX_TABLES_SHOWN = 1000


class Cluster:
    """This node's identity, its membership (None: a node of one) and its status answers.

    Args:
        name: the node's name (``--node-id``).
        address: its advertised DAX address, ``host:port``.
        accelerator: whose figures are reported.
    """

    def __init__(self, name: str, address: str, accelerator: Accelerator) -> None:
        self.name = name
        self.node_id = node_id_of(name)
        self.address = address
        self.accelerator = accelerator
        self.members: ValkeyMembers | None = None
        self.tailer: StreamTailer | None = None
        self.leases: StreamLeases | None = None

    def name_as(self, name: str, address: str) -> None:
        """The node's final name and address (known once its DAX port is bound)."""
        self.name, self.node_id, self.address = name, node_id_of(name), address

    @property
    def clustered(self) -> bool:
        """Whether this node shares a Valkey with others (and so may have company)."""
        return self.members is not None

    def live(self) -> int:
        """Live nodes, this one included."""
        return 1 + (len(self.members.others) if self.members is not None else 0)

    def live_nodes(self, hostname: str) -> tuple[LiveNode, ...] | None:
        """The nodes ``endpoints`` names (None: answer as a single node)."""
        return None if self.members is None else self.members.live_nodes(hostname)

    def nodes(self) -> list[dict[str, Any]]:
        """Every live node: this one first, then the others as their registrations in Valkey say."""
        rows: list[dict[str, Any]] = [{"node": self.name, "id": self.node_id, "address": self.address,
                                       "role": "leader", "health": "self"}]
        for other in self.members.others if self.members is not None else []:
            rows.append({"node": other["name"], "id": other["id"], "address": f"{other['host']}:{other['port']}",
                         "role": "leader", "health": "live"})
        return rows

    def _tables(self) -> list[str]:
        acc = self.accelerator
        return sorted(acc.tables_seen | set(acc.schemas))[:MAX_TABLES_SHOWN]

    def summary(self) -> dict[str, Any]:
        """This node's own figures."""
        metrics = self.accelerator.metrics
        hits = metrics.total("daxd_item_cache_hits") + metrics.total("daxd_query_cache_hits") \
            + metrics.total("daxd_scan_cache_hits")
        misses = metrics.total("daxd_item_cache_misses") + metrics.total("daxd_query_cache_misses") \
            + metrics.total("daxd_scan_cache_misses")
        store = self.accelerator.store
        return {
            "node": self.name, "id": self.node_id, "address": self.address,
            "hits": int(hits), "misses": int(misses),
            "hit_ratio": round(hits / (hits + misses), 4) if hits + misses else None,
            "cache_bytes": store.bytes, "cache_entries": len(store),
            "streams": self._streams(), "tables": self._tables(),
            "leases": sorted(f"{r.table}/{r.shard}" for r in self.leases.held) if self.leases is not None else [],
        }

    def _streams(self) -> dict[str, dict[str, Any]]:
        stats = self.tailer.stats if self.tailer is not None else None
        if stats is None:
            return {}
        return {t: {"status": stats.status.get(t, "-"), "readers": stats.readers.get(t, 0),
                    "lag": round(stats.last_lag[t], 3) if t in stats.last_lag else None}
                for t in sorted(stats.status)}

    def view(self) -> dict[str, Any]:
        """Everything ``GET /cluster`` shows."""
        return {"self": self.summary(), "nodes": self.nodes()}
