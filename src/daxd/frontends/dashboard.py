"""The admin port's live page: ``GET /`` and the ``/stats.json`` it polls.

The page (``assets/dashboard.html``, ``.js``, ``.css``, shipped as package
data) is self-contained: no CDN, no build step, charts drawn on ``<canvas>``
by a few hundred lines of plain JavaScript. Everything it shows comes from
:func:`stats_document`, built from the node's own figures: the
:class:`daxd.stats.Sampler` ring buffer (rates and percentiles over the last
minutes), the cache store, the upstream's health and the cluster view. No
Prometheus server is needed.
"""

from __future__ import annotations

import time
from collections import Counter
from importlib import resources
from typing import TYPE_CHECKING, Any

from daxd import __version__

if TYPE_CHECKING:
    from daxd.nodeview import NodeView

#: file name -> content type; nothing else under assets/ is served.
ASSETS = {"dashboard.html": b"text/html; charset=utf-8", "dashboard.js": b"text/javascript; charset=utf-8",
          "dashboard.css": b"text/css; charset=utf-8"}
#: Counting entries per table walks the whole store: at most this often, however many pages poll.
ENTRIES_EVERY = 5.0
_HITS = ("daxd_item_cache_hits", "daxd_query_cache_hits", "daxd_scan_cache_hits")
_MISSES = ("daxd_item_cache_misses", "daxd_query_cache_misses", "daxd_scan_cache_misses")


def asset(name: str) -> bytes | None:
    """A packaged asset's bytes (None: not one of :data:`ASSETS`)."""
    if name not in ASSETS:
        return None
    return resources.files("daxd.frontends").joinpath("assets", name).read_bytes()


class Dashboard:
    """Builds the stats document of one node (and remembers the last per-table entry count)."""

    def __init__(self, node: NodeView, *, clock: Any = time.monotonic) -> None:
        self.node = node
        self.clock = clock
        self._entries: tuple[float, Counter[str]] | None = None

    def _table_entries(self) -> Counter[str]:
        now = self.clock()
        if self._entries is None or now - self._entries[0] >= ENTRIES_EVERY:
            self._entries = (now, Counter(key[1] for key in list(self.node.accelerator.store)))
        return self._entries[1]

    def document(self) -> dict[str, Any]:
        node = self.node
        metrics = node.metrics
        store = node.accelerator.store
        summary = node.cluster.summary()
        health = node.upstream.health if node.upstream is not None else None
        return {
            "node": summary["node"], "version": __version__, "now": time.time(),
            "started_at": node.started_at, "interval": node.sample_interval,
            "series": node.sampler.series(), "latency": node.sampler.latency(),
            "cache": {"bytes": store.bytes, "capacity": node.settings.cache_size, "entries": len(store),
                      "evicted_bytes": store.evicted_bytes, "hit_ratio": summary["hit_ratio"]},
            "upstream": None if health is None else {
                "endpoint": health.label, "up": health.up, "since": health.since, "outages": health.outages,
                "last_error": health.last_error, "last_error_at": health.last_error_at},
            "tables": self._tables(summary["streams"]),
            "cluster": {"clustered": node.cluster.clustered, "nodes": self._nodes(summary)},
            "requests": {op: int(n) for op, n in sorted(metrics.counts["daxd_total_request_count"].items())},
        }

    def _tables(self, streams: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        counts = self.node.metrics.counts
        entries = self._table_entries()
        names = set(entries) | set(streams)
        for name in (*_HITS, *_MISSES):
            names |= set(counts[name])
        rows = []
        for table in sorted(names):
            stream = streams.get(table) or {}
            rows.append({"table": table,
                         "hits": int(sum(counts[name].get(table, 0) for name in _HITS)),
                         "misses": int(sum(counts[name].get(table, 0) for name in _MISSES)),
                         "entries": entries.get(table, 0),
                         "stream": stream.get("status", "off"), "stream_lag": stream.get("lag"),
                         "stream_readers": stream.get("readers", 0),
                         "policy": self.node.accelerator.policy(table).describe()})
        return rows

    def _nodes(self, summary: dict[str, Any]) -> list[dict[str, Any]]:
        rows = []
        for node in self.node.cluster.nodes():
            figures = summary if node.get("health") == "self" else node.get("status") or {}
            streams = figures.get("streams") or {}
            rows.append({"node": node.get("node"), "address": node.get("address"), "health": node.get("health"),
                         "role": node.get("role"), "last_error": node.get("last_error"),
                         "hit_ratio": figures.get("hit_ratio"), "cache_bytes": figures.get("cache_bytes"),
                         "entries": figures.get("cache_entries"),
                         "stream_readers": sum(int(s.get("readers") or 0) for s in streams.values()
                                               if isinstance(s, dict))})
        return rows
