"""daxd.cache.ttl: the TTL rule the item and query caches share."""

from __future__ import annotations

from typing import Any

from daxd.cache.generations import Generations
from daxd.cache.item_cache import ItemCache
from daxd.cache.query_cache import QueryCache
from daxd.cache.store import Store
from daxd.cache.ttl import TableTtl, capped


def test_capped() -> None:
    assert capped(300, None) == 300
    assert capped(0, None) == 0          # no expiry stays no expiry without a cap
    assert capped(300, 5) == 5
    assert capped(2, 5) == 2
    assert capped(0, 5) == 5             # a cap replaces "no expiry"


def test_a_tables_own_ttl_then_the_cap() -> None:
    rule = TableTtl(300, lambda table: 0 if table == "forever" else 60)
    assert (rule.ttl_for("forever"), rule.ttl_for("t")) == (0, 60)
    rule.ttl_cap = 5
    assert (rule.ttl_for("forever"), rule.ttl_for("t")) == (5, 5)
    assert TableTtl(300).ttl_for("t") == 300


def test_both_caches_store_entries_with_the_rule() -> None:
    now = [0.0]
    store: Store[tuple[Any, ...], Any] = Store(1 << 20, timer=lambda: now[0])
    flushes = Generations()
    items = ItemCache(store, ttl=300, flushes=flushes, timer=lambda: now[0], ttl_of=lambda table: 10)
    queries = QueryCache(store, ttl=300, flushes=flushes, timer=lambda: now[0])
    queries.ttl_cap = 20
    assert items.fill("t", b"k", "", b'{"a":{"S":"x"}}', items.token("t", b"k"))
    assert queries.fill("t", b"{}", None, b"{}", queries.token("t", None))
    now[0] = 15
    assert items.get("t", b"k") is None and queries.get("t", b"{}", None) is not None
    now[0] = 25
    assert queries.get("t", b"{}", None) is None
