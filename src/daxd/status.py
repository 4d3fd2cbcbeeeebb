"""``daxd status HOST:ADMIN-PORT``: ask one node for the cluster overview and print it.

The node is asked on its admin port (``GET /cluster``): over a shared Valkey it
answers with every node of the membership, each node's workers, the shared
tier (Valkey's memory, keys, hits and misses, whether each process is
connected) and the stream leases (:mod:`daxd.tier.reports`); a node alone
answers with itself. Behind ``--workers N`` the supervisor passes the question
to a worker. :func:`status_rows` and friends (pure) turn the answer into rows.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from daxd.config import ConfigError

#: The nodes table's columns; with rich's compact box it fits 80 columns for the usual addresses.
COLUMNS = ("node", "address", "workers", "hit %", "L1 cache", "entries", "req/s", "stream lag")
WORKER_COLUMNS = ("node", "worker", "pid", "hit %", "L2 hits", "L1 cache", "entries", "req/s", "shared tier")
#: The admin port when the address names none.
DEFAULT_ADMIN_PORT = 8113


def admin_url(address: str) -> str:
    """``host[:port]``, ``[v6]:port`` or an ``http(s)://`` URL -> the admin base URL (port 8113 if none).

    Raises:
        ConfigError: not an address.
    """
    if "://" in address:
        if not address.startswith(("http://", "https://")):
            raise ConfigError(f"{address!r}: give the admin port's host:port or http:// URL")
        return address.rstrip("/")
    if address.startswith("["):
        inside, _, rest = address[1:].partition("]")
        host, port = f"[{inside}]", rest[1:] if rest.startswith(":") else rest
    elif address.count(":") == 1:
        host, port = address.split(":")
    elif ":" in address:
        host, port = f"[{address}]", ""
    else:
        host, port = address, ""
    if host in ("", "[]") or (port and not port.isdigit()):
        raise ConfigError(f"{address!r} is not host:admin-port (e.g. 10.0.0.1:{DEFAULT_ADMIN_PORT})")
    return f"http://{host}:{port or DEFAULT_ADMIN_PORT}"


def fetch_status(address: str, timeout: float) -> dict[str, Any]:
    """The node's ``GET /cluster`` answer.

    Raises:
        ConfigError: a bad address.
        OSError: the node cannot be reached, or what answered is not a daxd admin port.
    """
    url = admin_url(address) + "/cluster"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            body = answer.read()
    except urllib.error.HTTPError as exc:
        raise OSError(f"{url} answered {exc.code}") from None
    except urllib.error.URLError as exc:
        raise OSError(f"{url}: {exc.reason}") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:  # e.g. a DAX port given: not HTTP
        raise OSError(f"{url}: not a daxd admin port ({type(exc).__name__}); give host:admin-port") from None
    try:
        view = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise OSError(f"{url}: the answer is not a cluster overview") from None
    if not isinstance(view, dict):
        raise OSError(f"{url}: the answer is not a cluster overview")
    return view


def _size(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return "-"


def _lag(streams: Any) -> str:
    if not isinstance(streams, Mapping) or not streams:
        return "-"
    parts = []
    for table, info in sorted(streams.items()):
        lag = info.get("lag") if isinstance(info, Mapping) else None
        status = info.get("status", "?") if isinstance(info, Mapping) else "?"
        parts.append(f"{table}: {lag:.2f}s" if isinstance(lag, int | float) else f"{table}: {status}")
    return ", ".join(parts)


def _ratio(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) else "-"


def _number(value: Any) -> str:
    return f"{value:,.0f}" if isinstance(value, int | float) else "-"


def _nodes(view: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [n for n in view.get("nodes") or [] if isinstance(n, Mapping)]


def _workers(node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [w for w in node.get("workers") or [] if isinstance(w, Mapping)]


def status_rows(view: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """One row per node, its figures summed over its workers."""
    rows: list[tuple[str, ...]] = []
    for node in _nodes(view):
        workers = _workers(node)
        streams: dict[str, Any] = {}
        for worker in workers:
            streams.update(worker.get("streams") or {})
        name = str(node.get("node", "?")) + (" (this)" if node.get("self") else "")
        if not node.get("member", True):
            name += " (leaving)"
        rows.append((name, str(node.get("address", "?")), str(len(workers)) if workers else "no report",
                     _ratio(node.get("hit_ratio")), _size(node.get("cache_bytes")), _number(node.get("cache_entries")),
                     _number(node.get("rps")), _lag(streams)))
    return rows


def worker_rows(view: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """One row per worker of every node."""
    rows: list[tuple[str, ...]] = []
    for node in _nodes(view):
        for worker in _workers(node):
            tier = worker.get("tier_up")
            tier_text = "-" if tier is None else "connected" if tier else f"down: {worker.get('tier_reason')}"
            hits, misses = worker.get("l2_hits"), worker.get("l2_misses")
            l2_text = f"{hits:,}/{hits + misses:,}" if isinstance(hits, int) and isinstance(misses, int) \
                and tier is not None else "-"
            rows.append((str(node.get("node", "?")), str(worker.get("worker", "?")), str(worker.get("pid", "?")),
                         _ratio(worker.get("hit_ratio")), l2_text, _size(worker.get("cache_bytes")),
                         _number(worker.get("cache_entries")), _number(worker.get("rps")), tier_text))
    return rows


def tier_lines(view: Mapping[str, Any]) -> list[str]:
    """The shared tier in a few lines (none for a node without one)."""
    tier = view.get("tier")
    if not isinstance(tier, Mapping):
        return []
    version = tier.get("valkey_version") or tier.get("redis_version") or "?"
    state = "connected" if tier.get("connected") else f"NOT connected: {tier.get('reason')}"
    lines = [f"shared tier {tier.get('url')} (valkey {version}, {tier.get('shards', 1)} shard(s)): {state}"]
    if "used_memory" in tier:
        limit = tier.get("maxmemory")
        lines.append(f"  memory {_size(tier.get('used_memory'))}"
                     + (f" of {_size(limit)} ({tier.get('maxmemory_policy')})" if limit else " (no maxmemory)")
                     + f", {_number(tier.get('keys'))} keys, {_number(tier.get('evicted_keys'))} evicted, "
                     f"{_number(tier.get('expired_keys'))} expired")
        lines.append(f"  lookups {_number(tier.get('keyspace_hits'))} hits / {_number(tier.get('keyspace_misses'))} "
                     f"misses ({_ratio(tier.get('keyspace_hit_ratio'))}), "
                     f"{_number(tier.get('instantaneous_ops_per_sec'))} ops/s, "
                     f"{_number(tier.get('connected_clients'))} clients")
    return lines


def lease_rows(view: Mapping[str, Any]) -> tuple[list[str], list[tuple[str, ...]]]:
    """The stream leases as (columns, rows), whatever fields the lease module reports."""
    leases = [lease for lease in view.get("leases") or [] if isinstance(lease, Mapping)]
    columns: list[str] = []
    for lease in leases:
        columns += [str(k) for k in lease if str(k) not in columns]
    return columns, [tuple("-" if lease.get(c) is None else str(lease.get(c)) for c in columns) for lease in leases]


POLICY_COLUMNS = ("table", "cached", "item ttl", "query cache", "query ttl", "from")


def policy_rows(view: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """One row per table the node knows, with its effective cache policy, then the defaults (``*``)."""
    policies = view.get("table_policies")
    if not isinstance(policies, Mapping):
        return []

    def row(name: str, policy: Any, source: str) -> tuple[str, ...]:
        if not isinstance(policy, Mapping):
            return (name, "?", "?", "?", "?", source)
        cached = bool(policy.get("cache"))
        return (name, "yes" if cached else "no", _ttl(policy.get("item_ttl")) if cached else "-",
                "yes" if policy.get("query_cache") else "no",
                _ttl(policy.get("query_ttl")) if policy.get("query_cache") else "-", source)

    tables = policies.get("tables")
    if not isinstance(tables, Mapping):
        tables = {}
    rows = [row(str(name), policy, str(policy.get("rule") or "flags") if isinstance(policy, Mapping) else "?")
            for name, policy in sorted(tables.items())]
    rows.append(row("(other tables)", policies.get("default"), "flags"))
    return rows


def _ttl(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    return "until evicted" if value == 0 else f"{value:g}s"


def _table(title: str, columns: tuple[str, ...] | list[str], rows: list[tuple[str, ...]]) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns:
        if column == "address":
            table.add_column(column, no_wrap=True, min_width=len(column))
        elif column in ("node", "stream lag", "shared tier"):
            table.add_column(column, overflow="fold")
        else:
            table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table


def status_table(view: Mapping[str, Any]) -> Any:
    """Everything but the policies, as one rich renderable: nodes, workers, the shared tier, leases."""
    from rich.console import Group
    from rich.text import Text

    parts: list[Any] = [_table(f"daxd cluster as seen by {view.get('node', '?')}", COLUMNS, status_rows(view))]
    workers = worker_rows(view)
    if any(len(_workers(n)) > 1 for n in _nodes(view)) or view.get("tier"):
        parts.append(_table("workers", WORKER_COLUMNS, workers))
    parts += [Text(line) for line in tier_lines(view)]
    columns, leases = lease_rows(view)
    if leases:
        parts.append(_table("stream leases", columns, leases))
    elif view.get("tier") and view.get("leases") is None:
        parts.append(Text("stream leases: not reported by this version"))
    return Group(*parts)


def policy_table(view: Mapping[str, Any]) -> Any:
    """The rich table of each table's effective cache policy (None when the view has none)."""
    from rich import box
    from rich.table import Table

    rows = policy_rows(view)
    if not rows:
        return None
    policies = Table(title=f"cache policy per table on {view.get('node', '?')}", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in POLICY_COLUMNS:
        policies.add_column(column, overflow="fold" if column == "table" else "ellipsis")
    for row in rows:
        policies.add_row(*row)
    return policies


def render_status(view: Mapping[str, Any], console: Any = None) -> None:
    """Print the tables with rich."""
    from rich.console import Console

    console = console or Console()
    console.print(status_table(view))
    policies = policy_table(view)
    if policies is not None:
        console.print(policies)


def _console() -> Any:
    from rich.console import Console

    return Console()


def watch_status(fetch: Callable[[], Mapping[str, Any]], interval: float) -> None:
    """Redraw the table every ``interval`` seconds until Ctrl-C; a failed fetch is shown, not fatal."""
    import time

    from rich.live import Live
    from rich.text import Text

    def frame() -> Any:
        try:
            return status_table(fetch())
        except OSError as exc:
            return Text(f"daxd status: {exc} (retrying every {interval:g} s)", style="red")

    try:
        with Live(frame(), auto_refresh=False, console=_console()) as live:
            while True:
                time.sleep(interval)
                live.update(frame(), refresh=True)
    except KeyboardInterrupt:
        pass
