"""A memory-bounded LRU map with per-entry expiry and byte accounting.

Theory of operation: a plain ``dict`` keeps insertion order, so "least recently
used" is its first key once every hit re-inserts its key at the end (pop and
re-insert costs ~0.3 µs, as cheap as ``OrderedDict.move_to_end``). Each entry
records the bytes it is charged and the monotonic time it expires; a lookup of
an expired entry removes it and misses. Inserting past ``max_bytes`` evicts from
the front until the new entry fits; an entry larger than the whole budget is
refused. The timer is injected so tests can move time.

Single-owner, like cachetools: one event loop or one lock around it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: What one entry costs beyond the bytes of its value: the dict slot, the key
#: tuple and the entry object (measured with tracemalloc on CPython 3.11).
ENTRY_OVERHEAD = 240


class _Entry(Generic[V]):
    __slots__ = ("expires", "size", "value")

    def __init__(self, value: V, size: int, expires: float) -> None:
        self.value = value
        self.size = size
        self.expires = expires


class Store(Generic[K, V]):
    """LRU by bytes with per-entry TTL. ``ttl=None`` (or 0) means no expiry."""

    def __init__(self, max_bytes: int, *, timer: Callable[[], float] = time.monotonic,
                 on_evict: Callable[[K, V], None] | None = None) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self.timer = timer
        self.on_evict = on_evict
        self.bytes = 0
        #: Bytes removed to make room (LRU), not by expiry or invalidation: DAX's EvictedSize.
        self.evicted_bytes = 0
        self._data: dict[K, _Entry[V]] = {}

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[K]:
        """The keys, as a snapshot: the store may change while the caller walks them."""
        return iter(list(self._data))

    def get(self, key: K) -> V | None:
        """The live value for ``key`` (and mark it recently used), or None."""
        data = self._data
        entry = data.pop(key, None)
        if entry is None:
            return None
        if entry.expires and entry.expires <= self.timer():
            self.bytes -= entry.size
            return None
        data[key] = entry
        return entry.value

    def put(self, key: K, value: V, size: int, ttl: float | None) -> bool:
        """Store ``value`` charged ``size`` bytes; False if it can never fit."""
        size += ENTRY_OVERHEAD
        self.pop(key)
        if size > self.max_bytes:
            return False
        self._make_room(size)
        expires = self.timer() + ttl if ttl else 0.0
        self._data[key] = _Entry(value, size, expires)
        self.bytes += size
        return True

    def charge(self, key: K, size: int) -> bool:
        """Charge a live entry ``size`` more bytes (what a front end attached to it); False if it is gone."""
        entry = self._data.get(key)
        if entry is None:
            return False
        entry.size += size
        self.bytes += size
        if self.bytes > self.max_bytes:
            self._make_room(0)
        return True

    def pop(self, key: K) -> V | None:
        """Remove ``key``; its value, or None."""
        entry = self._data.pop(key, None)
        if entry is None:
            return None
        self.bytes -= entry.size
        return entry.value

    def remove_where(self, predicate: Callable[[K], bool]) -> int:
        """Remove every entry whose key matches; how many were removed."""
        doomed = [key for key in self._data if predicate(key)]
        for key in doomed:
            self.pop(key)
        return len(doomed)

    def clear(self) -> None:
        self._data.clear()
        self.bytes = 0

    def expire(self) -> int:
        """Drop every expired entry now (lookups do it lazily); how many."""
        now = self.timer()
        return self.remove_where(lambda k: 0 < self._data[k].expires <= now)

    def _make_room(self, size: int) -> None:
        data = self._data
        while self.bytes + size > self.max_bytes and data:
            key = next(iter(data))
            entry = data.pop(key)
            self.bytes -= entry.size
            self.evicted_bytes += entry.size
            if self.on_evict is not None:
                self.on_evict(key, entry.value)
