"""Every process's figures in Valkey, and the cluster overview built from them (``daxd status``).

Nodes that share a Valkey know each other only through it (no node-to-node
calls), so each process of each node — every worker of ``--workers N`` —
keeps a short report of its own figures there: ``dx:r:<node> NUL <worker>``,
JSON, expiring after 3 s and renewed every second (one ``SET`` a second per
process). :func:`overview` reads the membership (``dx:n:*``, see
:mod:`daxd.tier.members`), the reports and Valkey's own ``INFO``, and answers
``GET /cluster``: every node, each node's workers, the shared tier and, where
the deployment has them, the stream leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from daxd.tasks import cancel_and_wait
from daxd.tier.members import PREFIX as MEMBER_PREFIX
from daxd.tier.members import REGISTRY as MEMBER_REGISTRY
from daxd.tier.registry import register, registered_values, unregister

if TYPE_CHECKING:
    from daxd.nodeview import NodeView

log = logging.getLogger("daxd.tier")

PREFIX = b"dx:r:"
#: The report keys written (:mod:`daxd.tier.registry`: listing them never walks the keyspace).
REGISTRY = b"dx:reports"
EVERY = 1.0
EXPIRY_MS = 3000
#: Figures of Valkey's INFO shown for the shared tier.
_INFO = ("used_memory", "used_memory_human", "maxmemory", "maxmemory_policy", "keyspace_hits", "keyspace_misses",
         "evicted_keys", "expired_keys", "connected_clients", "instantaneous_ops_per_sec",
         "total_commands_processed", "valkey_version", "redis_version", "uptime_in_seconds", "role")
_SUMMED = ("used_memory", "maxmemory", "keyspace_hits", "keyspace_misses", "evicted_keys", "expired_keys",
           "connected_clients", "instantaneous_ops_per_sec", "total_commands_processed")


def report_key(node: str, worker: int) -> bytes:
    return PREFIX + node.encode() + b"\x00" + str(worker).encode()


class Reporter:
    """Keeps this process's report in Valkey while it runs; deletes it when stopped."""

    def __init__(self, client: Any, node: str, worker: int, figures: Callable[[], dict[str, Any]]) -> None:
        self.client = client
        self.key = report_key(node, worker)
        self.figures = figures
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="daxd-tier-report")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait([task])
        with contextlib.suppress(Exception):
            await self.client.delete(self.key)
            await unregister(self.client, REGISTRY, self.key)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # Valkey down: the report expires, status shows the node without
                await self.client.set(self.key, orjson.dumps(self.figures()), px=EXPIRY_MS)
                await register(self.client, REGISTRY, self.key)
            await asyncio.sleep(EVERY)


async def _values(client: Any, registry: bytes, prefix: bytes = b"") -> list[tuple[bytes, Any]]:
    """The live keys a registry names (``prefix`` + each member), with their JSON values."""
    found = []
    for name, raw in await registered_values(client, registry, prefix):
        with contextlib.suppress(orjson.JSONDecodeError):
            found.append((name, orjson.loads(raw)))
    return found


def tier_figures(info: Mapping[str, Any], keys: int | None) -> dict[str, Any]:
    """The shared tier's figures from ``INFO`` (one server, or ``{node: info}`` of a cluster's shards)."""
    shards = [v for v in info.values() if isinstance(v, Mapping)] if info and all(
        isinstance(v, Mapping) for v in info.values()) else [info]
    figures: dict[str, Any] = {name: shards[0].get(name) for name in _INFO if name in shards[0]}
    for name in _SUMMED:
        numbers = [s.get(name) for s in shards if isinstance(s.get(name), int | float)]
        if numbers:
            figures[name] = sum(numbers)
    hits, misses = figures.get("keyspace_hits"), figures.get("keyspace_misses")
    if isinstance(hits, int | float) and isinstance(misses, int | float) and hits + misses:
        figures["keyspace_hit_ratio"] = round(hits / (hits + misses), 4)
    figures["shards"] = len(shards)
    figures["keys"] = keys
    return figures


async def leases_of(client: Any) -> list[dict[str, Any]] | None:
    """Stream leases, from ``daxd.tier.leases.leases(client)`` when that module exists (None: it does not)."""
    try:
        module = importlib.import_module("daxd.tier.leases")
    except ImportError:
        return None
    reader = getattr(module, "leases", None)
    if reader is None:
        return None
    found = reader(client)
    if inspect.isawaitable(found):
        found = await found
    return [dict(lease) for lease in found]


async def overview(client: Any, *, me: str, url: str, up: bool, reason: str) -> dict[str, Any]:
    """Every node (membership), its workers (reports), the shared tier (INFO) and the stream leases."""
    view: dict[str, Any] = {"node": me, "tier": {"url": url, "connected": up, "reason": reason}}
    try:
        members = await _values(client, MEMBER_REGISTRY, MEMBER_PREFIX)
        reports = await _values(client, REGISTRY)
        info = await client.info()
        keys = int(await client.dbsize())
        view["tier"].update(tier_figures(info, keys))
    except Exception as exc:  # the overview of a node cut off from Valkey: say so, show what is known
        view["tier"].update(connected=False, reason=f"{type(exc).__name__}: {exc}")
        return view | {"nodes": [], "leases": None}
    try:
        view["leases"] = await leases_of(client)
    except Exception as exc:  # the lease module's trouble is not the tier's
        log.warning("cluster overview: reading the stream leases failed: %s", exc)
        view["leases"], view["leases_error"] = None, f"{type(exc).__name__}: {exc}"
    workers: dict[str, list[dict[str, Any]]] = {}
    for _, report in reports:
        if isinstance(report, dict) and isinstance(report.get("node"), str):
            workers.setdefault(report["node"], []).append(report)
    nodes = []
    registered = {str(m.get("name")): m for _, m in members if isinstance(m, dict)}
    for name in sorted(registered.keys() | workers.keys()):
        member = registered.get(name) or {}
        rows = sorted(workers.get(name, []), key=lambda r: int(r.get("worker") or 0))
        nodes.append({"node": name, "address": f"{member.get('host', '?')}:{member.get('port', '?')}"
                      if member else (rows[0].get("address") if rows else "?"),
                      "member": bool(member), "self": name == me, "workers": rows, **totals(rows)})
    view["nodes"] = nodes
    return view


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A node's figures summed over its workers."""
    def total(name: str) -> float:
        return sum(float(r.get(name) or 0) for r in rows)

    hits, misses = total("hits"), total("misses")
    return {"hits": int(hits), "misses": int(misses), "hit_ratio": round(hits / (hits + misses), 4)
            if hits + misses else None, "l2_hits": int(total("l2_hits")), "l2_misses": int(total("l2_misses")),
            "cache_bytes": int(total("cache_bytes")), "cache_entries": int(total("cache_entries")),
            "rps": round(total("rps"), 1), "tier_up": all(r.get("tier_up") for r in rows) if rows else None}


_HITS = ("daxd_item_cache_hits", "daxd_query_cache_hits", "daxd_scan_cache_hits")
_MISSES = ("daxd_item_cache_misses", "daxd_query_cache_misses", "daxd_scan_cache_misses")


def process_figures(node: NodeView, name: str) -> dict[str, Any]:
    """This process's report: what ``daxd status`` shows of one worker."""
    metrics, store = node.metrics, node.accelerator.store
    hits = sum(metrics.total(n) for n in _HITS)
    misses = sum(metrics.total(n) for n in _MISSES)
    samples = node.sampler.samples
    rps = None
    if len(samples) >= 2 and samples[-1].at > samples[-2].at:
        rps = round((samples[-1].requests - samples[-2].requests) / (samples[-1].at - samples[-2].at), 1)
    stats = node.tailer.stats if node.tailer is not None else None
    health = node.upstream.health if node.upstream is not None else None
    host = node.settings.advertise or node.settings.host
    return {
        "node": name, "worker": node.worker.index if node.worker is not None else 0, "pid": os.getpid(),
        "address": f"{host}:{node.dax_port}", "http_port": node.http_port, "started_at": node.started_at,
        "at": time.time(), "hits": int(hits), "misses": int(misses),
        "hit_ratio": round(hits / (hits + misses), 4) if hits + misses else None,
        "l2_hits": int(metrics.total("daxd_shared_tier_hits")),
        "l2_misses": int(metrics.total("daxd_shared_tier_misses")),
        "cache_bytes": store.bytes, "cache_capacity": node.settings.cache_size, "cache_entries": len(store), "rps": rps,
        "tier_up": node.tier.up if node.tier is not None else None,
        "tier_reason": node.tier.reason if node.tier is not None else None,
        "upstream_up": health.up if health is not None else None,
        "streams": {} if stats is None else {t: {"status": s, "readers": stats.readers.get(t, 0),
                                                  "lag": stats.last_lag.get(t)} for t, s in stats.status.items()},
    }
