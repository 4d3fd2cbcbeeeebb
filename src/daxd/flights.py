"""Single-flight: concurrent identical calls share one call and its answer.

The first caller of a key *leads*: it makes the call and lands its answer (or
error) on the flight; every caller of the same key meanwhile *joins* that
flight and waits on it. One registry serves both drivers, each with its own
kind of future: :class:`asyncio.Future` on the node's event loop, and
:class:`concurrent.futures.Future` in the threaded, in-process driver (whose
caller holds its lock around :meth:`Flights.join`). Schema lookups need no
registry of their own: DescribeTable is a shared call like any read.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar


class Flight(Protocol):
    """What a flight's future must do (both asyncio's and concurrent.futures' do)."""

    def set_result(self, result: bytes, /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...

    def done(self) -> bool: ...


K = TypeVar("K", bound=Hashable)
F = TypeVar("F", bound=Flight)


class Flights(Generic[K, F]):
    """The flights in the air, by key."""

    __slots__ = ("_in_air", "_new")

    def __init__(self, new: Callable[[], F]) -> None:
        self._new = new
        self._in_air: dict[K, F] = {}

    def get(self, key: K) -> F | None:
        """The flight to join for ``key``, if one is in the air."""
        return self._in_air.get(key)

    def join(self, key: K) -> tuple[F, bool]:
        """The flight for ``key`` and whether the caller leads it (no flight was in the air)."""
        flight = self._in_air.get(key)
        if flight is not None:
            return flight, False
        flight = self._in_air[key] = self._new()
        return flight, True

    def land(self, key: K, flight: F, reply: bytes | None = None, error: BaseException | None = None) -> None:
        """End the leader's flight: later callers start a new one; those who joined get its outcome."""
        if self._in_air.get(key) is flight:
            del self._in_air[key]
        if flight.done():
            return
        if error is not None:
            flight.set_exception(error)
        else:
            assert reply is not None
            flight.set_result(reply)

    def __len__(self) -> int:
        return len(self._in_air)
