"""The TTL rule the item and query caches share: a table's own TTL, capped while the shared tier is down."""

from __future__ import annotations

from collections.abc import Callable


class TableTtl:
    """``ttl``, ``ttl_of`` and ``ttl_cap`` of a cache, and the TTL an entry of a table is stored with.

    Args:
        ttl: seconds an entry lives (0: no expiry) for every table, unless ``ttl_of`` is given.
        ttl_of: a table's own TTL (the Accelerator's per-table policy); None: ``ttl`` for every table.
    """

    def __init__(self, ttl: float, ttl_of: Callable[[str], float] | None = None) -> None:
        self.ttl = ttl
        #: A table's own TTL (the Accelerator's per-table policy); None: ``ttl`` for every table.
        self.ttl_of = ttl_of
        #: While set, no entry lives longer than this many seconds (the shared tier is down: L1 can
        #: hear no invalidations, so it caches only briefly; see daxd.tier.client).
        self.ttl_cap: float | None = None

    def ttl_for(self, table: str) -> float:
        """The TTL a new entry of ``table`` is stored with."""
        return capped(self.ttl if self.ttl_of is None else self.ttl_of(table), self.ttl_cap)


def capped(ttl: float, cap: float | None) -> float:
    """A TTL no longer than ``cap`` (None: no cap); 0 means no expiry, so a cap replaces it."""
    if cap is None:
        return ttl
    return min(ttl, cap) if ttl else cap
