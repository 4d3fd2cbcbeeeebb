"""GetItem and BatchGetItem entries, negative entries included.

One entry per (table, canonical key, projection). The full item lives under
projection ``""``; a projected read is its own entry, and every entry of a key
goes when the key is written (``_projections`` remembers which exist). Values
are the item's DynamoDB JSON bytes (``None`` for "not found"): compact, ready to
splice into an HTTP response, and ``orjson.loads`` gives a caller a private
copy in ~2.5 µs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from daxd.cache.generations import Generations
from daxd.cache.stamps import Stamps
from daxd.cache.store import Store
from daxd.cache.ttl import TableTtl
from daxd.model.keys import compact

#: (flush generation of the table, generation of the key[, shared write stamp of the key]).
Token = tuple[int, ...]


class CachedItem:
    """A cached GetItem answer. ``extra`` holds front-end encodings (see :meth:`ItemCache.attach`)."""

    __slots__ = ("extra", "item", "key", "stamp")

    def __init__(self, item: bytes | None, key: tuple[Any, ...], stamp: int = 0) -> None:
        self.item = item
        self.key = key
        self.extra: dict[str, Any] | None = None
        #: The key's shared write stamp when its data was read (workers; see daxd/cache/stamps.py).
        self.stamp = stamp


class ItemCache(TableTtl):
    def __init__(self, store: Store[tuple[Any, ...], Any], *, ttl: float, flushes: Generations,
                 timer: Callable[[], float], ttl_of: Callable[[str], float] | None = None) -> None:
        super().__init__(ttl, ttl_of)
        self.store = store
        self.flushes = flushes
        self.timer = timer
        self.keys = Generations()
        #: Write stamps shared with the node's other worker processes (None: a single process).
        self.stamps: Stamps | None = None
        self._projections: dict[tuple[str, bytes], set[str]] = {}

    def get(self, table: str, key: bytes, projection: str = "") -> CachedItem | None:
        value: CachedItem | None = self.store.get(("i", table, key, projection))
        if value is not None and self.stamps is not None and value.stamp != self.stamps.read(table, key):
            self.store.pop(value.key)  # another worker wrote the key since this copy was read
            return None
        return value

    def token(self, table: str, key: bytes) -> Token:
        """Taken before a miss goes upstream; :meth:`fill` checks it is still current."""
        if self.stamps is not None:
            return (self.flushes.current(table), self.keys.current((table, key)), self.stamps.read(table, key))
        return (self.flushes.current(table), self.keys.current((table, key)))

    def fill(self, table: str, key: bytes, projection: str, item: bytes | None, token: Token) -> bool:
        """Store a miss's answer unless the key changed since ``token`` was taken."""
        if token != self.token(table, key):
            return False
        if projection:
            self._projections.setdefault((table, key), set()).add(projection)
        return self._put(table, key, projection, item)

    def put_image(self, table: str, key: bytes, item: bytes | None, token: Token) -> None:
        """After an acknowledged write: the new full image (None: deleted).

        ``token`` was taken before the write was sent. If the key changed since
        (another write through this node was acknowledged meanwhile), the two
        acknowledgements may have arrived in the opposite order to the one
        DynamoDB applied, so neither image can be trusted: the key is evicted.
        """
        stale = token != self.token(table, key)
        self.evict(table, key)
        if not stale:
            self._put(table, key, "", item)

    def evict(self, table: str, key: bytes, *, share: bool = True) -> None:
        """Forget every entry of a key and make in-flight fills of it stale.

        With ``share`` (a write, or anything only this process learnt) the
        other workers' copies go too; an invalidation every worker hears
        itself (a Valkey push) passes ``share=False``.
        """
        self.keys.bump((table, key), self.timer())
        if share and self.stamps is not None:
            self.stamps.bump(table, key)
        self.store.pop(("i", table, key, ""))
        for projection in self._projections.pop((table, key), ()):
            self.store.pop(("i", table, key, projection))

    def attach(self, entry: CachedItem, name: str, value: Any, size: int) -> None:
        """Keep a front end's encoding of a cached item with it (the DAX value bytes, a boto3-shaped copy).

        It is charged to the entry, so the cache size bound still holds, and it
        goes when the entry goes.
        """
        if entry.extra is None:
            entry.extra = {}
        entry.extra[name] = value
        self.store.charge(entry.key, size)

    def changed_since(self, table: str, key: bytes, since: float) -> bool:
        return self.keys.bumped_since((table, key), since)

    def _put(self, table: str, key: bytes, projection: str, item: bytes | None) -> bool:
        if item is not None:
            item = compact(item)
        size = len(key) + len(projection) + (len(item) if item is not None else 0)
        store_key = ("i", table, key, projection)
        ttl = self.ttl_for(table)
        stamp = self.stamps.read(table, key) if self.stamps is not None else 0
        return self.store.put(store_key, CachedItem(item, store_key, stamp), size, ttl)
