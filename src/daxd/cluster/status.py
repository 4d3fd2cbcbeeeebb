"""``daxd status HOST:PORT``: ask one node for its view of the cluster and print it.

The node is asked over its DAX port with ``daxd.ping`` (body ``{"view": true}``),
signed with the first key of ``--auth-keys`` when given, so an operator needs
no other port. :func:`status_rows` (pure) turns the answer into table rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from daxd.auth import load_key_file
from daxd.cluster.connection import NodeCallError, NodeConnection
from daxd.cluster.membership import Address, AddressError
from daxd.config import ConfigError
from daxd.upstream.sigv4 import Credentials

#: The table's columns; with rich's compact box it fits 80 columns for the usual addresses.
COLUMNS = ("node", "address", "health", "hit %", "cache", "entries", "stream lag")


def fetch_status(address: str, auth_keys: str | None, region: str, timeout: float) -> dict[str, Any]:
    """The node's ``daxd.ping`` view.

    Raises:
        ConfigError: a bad address or key file.
        OSError: the node cannot be reached or answered badly.
    """
    try:
        target = Address.parse(address)
    except AddressError as exc:
        raise ConfigError(str(exc)) from None
    credentials = None
    if auth_keys:  # daxd's method needs a key without permission rules: the first such key is used
        keys = load_key_file(auth_keys)
        full = [(k, v) for k, v in keys.secrets.items() if keys.permissions.full_access(k)]
        credentials = Credentials(*full[0]) if full else None

    async def ask() -> Any:
        connection = NodeConnection(target, credentials=credentials, region=region, timeout=timeout)
        try:
            return await connection.call("daxd.ping", {"view": True})
        finally:
            await connection.close()

    try:
        view = asyncio.run(ask())
    except NodeCallError as exc:
        raise OSError(str(exc)) from None
    if not isinstance(view, dict):
        raise OSError("the node's answer is not a status")
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


def status_rows(view: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """One row per node: the answering node's own figures, then every other live node (its name and address)."""
    rows: list[tuple[str, ...]] = []
    for node in view.get("nodes") or []:
        figures = view if node.get("health") == "self" else node.get("status") or {}
        rows.append((str(node.get("node", "?")), str(node.get("address", "?")), str(node.get("health", "?")),
                     _ratio(figures.get("hit_ratio")), _size(figures.get("cache_bytes")),
                     str(figures.get("cache_entries", "-")), _lag(figures.get("streams"))))
    return rows


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


def status_table(view: Mapping[str, Any]) -> Any:
    """The rich table: addresses never wrap or get cut; names and stream lags fold if the terminal is narrow."""
    from rich import box
    from rich.table import Table

    table = Table(title=f"daxd cluster as seen by {view.get('node', '?')}", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in COLUMNS:
        if column == "address":
            table.add_column(column, no_wrap=True, min_width=len(column))
        elif column in ("node", "stream lag"):
            table.add_column(column, overflow="fold")
        else:
            table.add_column(column, no_wrap=True)
    for row in status_rows(view):
        table.add_row(*row)
    return table


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
