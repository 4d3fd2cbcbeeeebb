"""The order stream records are applied in, per key (bounded).

:class:`KeyOrder` remembers, per key, the sequence number of the last record
applied and the key's generation right after it. It lets the Accelerator drop
a record older than one already applied (a duplicate, e.g. a batch read again after a lease moved)
and tell whether anything but the stream touched the key since. It is bounded:
a key it forgot is handled by the Accelerator's slower, conservative rule
(see :meth:`daxd.accelerator.Accelerator.apply_stream_record`), never wrongly.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import NamedTuple


class Applied(NamedTuple):
    """What :class:`KeyOrder` remembers of the last record applied to a key."""

    stream: str
    sequence: int
    generation: int


class KeyOrder:
    """Bounded, least-recently-applied-first map: key -> :class:`Applied`.

    Sequence numbers only compare within one stream; a record of another
    stream of the same table (the stream was disabled and re-enabled) is
    treated as if the key had been forgotten.
    """

    def __init__(self, max_keys: int = 100_000) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be >= 1")
        self.max_keys = max_keys
        self._applied: dict[Hashable, Applied] = {}

    def __len__(self) -> int:
        return len(self._applied)

    def last(self, name: Hashable, stream: str) -> Applied | None:
        """The last record applied to ``name`` from ``stream``, if remembered."""
        applied = self._applied.get(name)
        return applied if applied is not None and applied.stream == stream else None

    def remember(self, name: Hashable, applied: Applied) -> None:
        self._applied.pop(name, None)
        if len(self._applied) >= self.max_keys:
            del self._applied[next(iter(self._applied))]
        self._applied[name] = applied
