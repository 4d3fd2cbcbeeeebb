"""Query and Scan entries, invalidated by generation.

A Query of a base table pins one partition key value, so a write to that
partition makes its entries stale and nothing else. A Scan, or a Query of an
index (whose key the write may have changed), depends on the whole table. So
each entry records the generations it was filled under and a lookup compares
them with the current ones; a write bumps its partition's and its table's
generation, which is O(1) however many entries it invalidates.

Tokens: a base-table Query (``partition`` given) records
``(flush gen of the table, partition gen)``; anything else records
``(flush gen of the table, write gen of the table)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from daxd.cache.generations import Generations
from daxd.cache.stamps import Stamps
from daxd.cache.store import Store
from daxd.cache.ttl import TableTtl
from daxd.model.keys import compact

#: (flush generation of the table, generation of the partition or table[, its shared write stamp]).
Token = tuple[int, ...]


class CachedPage:
    """One cached Query/Scan response page."""

    __slots__ = ("body", "extra", "token")

    def __init__(self, body: bytes, token: Token) -> None:
        self.body = body
        self.token = token
        self.extra: dict[str, Any] | None = None


class QueryCache(TableTtl):
    def __init__(self, store: Store[tuple[Any, ...], Any], *, ttl: float, flushes: Generations,
                 timer: Callable[[], float], ttl_of: Callable[[str], float] | None = None) -> None:
        super().__init__(ttl, ttl_of)
        self.store = store
        self.flushes = flushes
        self.timer = timer
        self.partitions = Generations()
        self.tables = Generations()
        #: Write stamps shared with the node's other worker processes (None: a single process).
        self.stamps: Stamps | None = None

    @property
    def enabled(self) -> bool:
        """A query TTL of 0 turns the query cache off, as in DAX."""
        return self.ttl > 0

    def token(self, table: str, partition: bytes | None) -> Token:
        if partition is None:
            token = (self.flushes.current(table), self.tables.current(table))
        else:
            token = (self.flushes.current(table), self.partitions.current((table, partition)))
        if self.stamps is not None:
            return (*token, self.stamps.read(table, b"\x00q" + (partition or b"")))
        return token

    def get(self, table: str, request: bytes, partition: bytes | None) -> CachedPage | None:
        key = ("q", table, request)
        page: CachedPage | None = self.store.get(key)
        if page is not None and page.token != self.token(table, partition):
            self.store.pop(key)
            return None
        return page

    def fill(self, table: str, request: bytes, partition: bytes | None, body: bytes, token: Token) -> bool:
        if token != self.token(table, partition):
            return False
        request, page = compact(request), CachedPage(compact(body), token)
        ttl = self.ttl_for(table)
        return self.store.put(("q", table, request), page, len(request) + len(body), ttl)

    def invalidate(self, table: str, partition: bytes | None, *, share: bool = True) -> None:
        """A write to ``partition`` of ``table`` (None: unknown, the whole table).

        ``share``: the other workers' pages go too (see :meth:`ItemCache.evict`).
        """
        now = self.timer()
        if share and self.stamps is not None:
            self.stamps.bump(table, b"\x00q")
            if partition is not None:
                self.stamps.bump(table, b"\x00q" + partition)
        self.tables.bump(table, now)
        if partition is None:
            self.flushes.bump(table, now)
        else:
            self.partitions.bump((table, partition), now)

    def changed_since(self, table: str, partition: bytes | None, since: float) -> bool:
        if partition is None:
            return self.tables.bumped_since(table, since)
        return self.partitions.bumped_since((table, partition), since)
