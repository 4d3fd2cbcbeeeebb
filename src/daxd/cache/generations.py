"""Generation counters: the guard against fill-after-invalidate.

A miss reads the generation of what it is about to fill (a key, a partition, a
table) before it goes to DynamoDB, and stores its answer only if that
generation is still current when the answer arrives. Every write, invalidation
or flush bumps the generation, so an eventually consistent read that started
before a write can never put the pre-write value back.

Generations come from one global counter, so a bumped name never returns to an
older value. The map is bounded: when it is full it is cleared and ``floor``
moves to the current counter, which makes every outstanding token stale (a few
needless misses, never a stale fill). Each bump also records its time, which
answers "was this written in the last few seconds?" for consistent refills.
"""

from __future__ import annotations

from collections.abc import Hashable


class Generations:
    """Bounded name -> (generation, bumped_at) map with a floor."""

    def __init__(self, max_names: int = 100_000) -> None:
        self.max_names = max_names
        self._counter = 0
        self._floor = 0
        self._floor_time = float("-inf")
        self._names: dict[Hashable, tuple[int, float]] = {}

    def current(self, name: Hashable) -> int:
        entry = self._names.get(name)
        return self._floor if entry is None else entry[0]

    def bump(self, name: Hashable, now: float) -> int:
        if len(self._names) >= self.max_names and name not in self._names:
            self._names.clear()
            self._floor = self._counter + 1
            self._floor_time = now
            self._counter += 1
        self._counter += 1
        self._names.pop(name, None)
        self._names[name] = (self._counter, now)
        return self._counter

    def bumped_since(self, name: Hashable, since: float) -> bool:
        """True if ``name`` changed at or after ``since`` (conservatively, after a reset too)."""
        entry = self._names.get(name)
        if entry is None:
            return self._floor_time >= since
        return entry[1] >= since
