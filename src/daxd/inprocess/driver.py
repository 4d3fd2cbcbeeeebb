"""The synchronous, thread-safe driver of the Accelerator's plans.

The Accelerator is single-owner, and a boto3 client is shared between
threads, so every step of a plan runs under one lock; the upstream calls a
plan asks for run outside it, so a slow miss never blocks a hit. Concurrent
identical reads (``Call.shared``) share one upstream call (:class:`daxd.flights.Flights`):
the first caller performs it, the others wait for its answer or its error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from daxd.accelerator import Accelerator, Plan
from daxd.drivers import run_plan_sync, step
from daxd.flights import Flights
from daxd.messages import Call, Response
from daxd.model.errors import DaxdError

Perform = Callable[[Call], bytes]


class ThreadedDriver:
    """Runs plans from any number of threads against a blocking ``perform``."""

    def __init__(self, accelerator: Accelerator) -> None:
        self.accelerator = accelerator
        self.lock = threading.Lock()
        self._flights: Flights[tuple[str, bytes], Future[bytes]] = Flights(Future)
        #: Entries evicted to stay under the cache size (the store counts only their bytes).
        self.evictions = 0
        if accelerator.store.on_evict is None:
            accelerator.store.on_evict = self._evicted

    def run(self, operation: str, request: dict[str, Any], raw: bytes | None, perform: Perform) -> Response:
        """Answer one operation; raises whatever the plan raises (a DaxdError, usually)."""
        with self.lock:
            plan = self.accelerator.plan(operation, request, raw)
            outcome = step(plan)
        if isinstance(outcome, Response):  # a hit: no I/O, no generator to drive
            return outcome
        return run_plan_sync(self._guarded(plan, outcome), lambda call: self._perform(call, perform))

    def locked(self, action: Callable[[Accelerator], Any]) -> Any:
        """Run ``action`` on the Accelerator under the lock (flushes, stream records, stats)."""
        with self.lock:
            return action(self.accelerator)

    def _evicted(self, key: Any, value: Any) -> None:
        self.evictions += 1  # called by the store, under the lock

    def _guarded(self, plan: Plan, outcome: Call | Response) -> Plan:
        """The rest of a started plan, each of its steps taken under the lock."""
        while isinstance(outcome, Call):
            try:
                reply = yield outcome
            except DaxdError as exc:
                with self.lock:
                    outcome = step(plan, error=exc)
                continue
            with self.lock:
                outcome = step(plan, reply)
        return outcome

    def _perform(self, call: Call, perform: Perform) -> bytes:
        if not call.shared:
            return perform(call)
        key = (call.operation, call.body)
        with self.lock:
            flight, leading = self._flights.join(key)
        if not leading:
            return flight.result()
        try:
            reply = perform(call)
        except BaseException as exc:
            with self.lock:
                self._flights.land(key, flight, error=exc)
            raise
        with self.lock:
            self._flights.land(key, flight, reply)
        return reply
