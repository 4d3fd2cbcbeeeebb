"""Write stamps shared by the worker processes of one node: read-your-writes across workers.

Workers of ``daxd serve --workers N`` share one address, so a client's next
request may land on another worker. A Valkey invalidation push reaches the
other workers asynchronously, so it cannot make a write visible to "the very
next read". This table can: it is a file of 8-byte slots mapped into every
worker (``MAP_SHARED``). A write stamps its key's slot (key hashed with CRC-32)
before the write is acknowledged; an L1 entry remembers the slot's stamp taken
before its data was read, and an L1 hit whose slot changed since is a miss.

Slots are chosen by Python's own ``hash`` (a key's bytes cache their hash, so
this costs tens of nanoseconds), which is the same in every worker only
because the supervisor gives them all one ``PYTHONHASHSEED``; a process
without one falls back to CRC-32 (a few hundred nanoseconds).

Stamps are unique, not counted: a worker writes ``(monotonic_ns << 8) | worker``
(strictly increasing per worker), so two workers stamping one slot at once can
never make it return to a value an entry recorded, without atomic
read-modify-write (Python has none across processes). A torn read of a slot
would be a value no entry recorded: a needless miss, never a stale hit. Hash
collisions only cause needless misses too.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
import zlib

#: Slots in the table (8 bytes each: 512 KiB).
DEFAULT_SLOTS = 1 << 16
_SLOT = struct.Struct("<Q")


def create(path: str, slots: int = DEFAULT_SLOTS) -> None:
    """Create the zeroed table file (the supervisor does, before starting workers)."""
    with open(path, "wb") as file:
        file.truncate(slots * _SLOT.size)


class Stamps:
    """One worker's view of the shared table."""

    def __init__(self, path: str, worker: int, *, seeded: bool | None = None) -> None:
        fd = os.open(path, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            self._map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self._slots = size // _SLOT.size
        if self._slots < 1:
            raise ValueError(f"{path}: an empty stamp table")
        self._worker = worker & 0xFF
        self._last = 0
        if seeded is None:
            seeded = os.environ.get("PYTHONHASHSEED", "random") not in ("random", "")
        if seeded:
            self._offset = self._hashed  # type: ignore[method-assign]

    def _offset(self, table: str, name: bytes) -> int:
        return (zlib.crc32(name, zlib.crc32(table.encode())) % self._slots) * 8

    def _hashed(self, table: str, name: bytes) -> int:
        return ((hash(name) ^ hash(table)) % self._slots) * 8

    def read(self, table: str, name: bytes) -> int:
        """The current stamp of ``name`` in ``table`` (a key, a partition, b"" for the whole table)."""
        value: int = _SLOT.unpack_from(self._map, self._offset(table, name))[0]
        return value

    def bump(self, table: str, name: bytes) -> None:
        """Give the slot a stamp no entry can have recorded."""
        stamp = max((time.monotonic_ns() << 8) | self._worker, self._last + 0x100)
        self._last = stamp
        _SLOT.pack_into(self._map, self._offset(table, name), stamp)

    def close(self) -> None:
        self._map.close()
