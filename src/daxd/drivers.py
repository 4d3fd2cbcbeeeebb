"""Drivers run the Accelerator's plans: they do the I/O the plans ask for.

:class:`AsyncDriver` serves the node (asyncio). Concurrent identical reads
(``Call.shared``) share one upstream call (:class:`daxd.flights.Flights`),
so a hot key that expires costs DynamoDB one request, not one per client.
A :class:`~daxd.tier.shared.TierCall` goes to the shared tier (Valkey) instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, Protocol, TypeVar

from daxd.accelerator import Accelerator, Plan
from daxd.flights import Flights
from daxd.messages import Call, Response
from daxd.model.errors import DaxdError
from daxd.model.keys import TableSchema
from daxd.tier.shared import TierCall
from daxd.upstream.client import Sent


class TierPerformer(Protocol):
    async def perform(self, call: TierCall) -> bytes: ...


class AsyncUpstream(Protocol):
    async def call(self, operation: str, body: bytes) -> bytes: ...

    def send_now(self, operation: str, body: bytes) -> Sent | None: ...

    async def finish(self, sent: Sent) -> bytes: ...


T = TypeVar("T")

class AsyncDriver:
    """Runs plans on an event loop against an async upstream."""

    def __init__(self, accelerator: Accelerator, upstream: AsyncUpstream, tier: TierPerformer | None = None) -> None:
        self.accelerator = accelerator
        self.upstream = upstream
        self.tier = tier
        self._flights: Flights[tuple[str, bytes], asyncio.Future[bytes]] = Flights(self._new_flight)
        self._loop: asyncio.AbstractEventLoop | None = None
        accelerator.fill_later = self._later

    def _new_flight(self) -> asyncio.Future[bytes]:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()  # once: on Python 3.11 each call costs a getpid()
        return self._loop.create_future()

    def _later(self, fill: Callable[[], None]) -> None:
        """Run a cache fill once the answer has gone out: callbacks run in order, after the reply's write."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._loop.call_soon(fill)

    def begin(self, operation: str, request: dict[str, Any],
              raw: bytes | None = None) -> Response | Coroutine[Any, Any, Response]:
        """Start an operation: its Response now if it needs no I/O (a hit), else a coroutine.

        Answering hits synchronously lets a front end skip creating a task.
        Raises the DaxdError the client should see.
        """
        return self.begin_plan(self.accelerator.plan(operation, request, raw))

    def begin_plan(self, plan: Plan) -> Response | Coroutine[Any, Any, Response]:
        """:meth:`begin` for a plan the caller already has (:meth:`Accelerator.get_item_at`)."""
        outcome = step(plan)
        if isinstance(outcome, Response):
            return outcome
        if isinstance(outcome, TierCall):
            return self._finish(plan, outcome)
        return self._finish(plan, outcome, self._send_now(outcome))

    async def answer(self, operation: str, request: dict[str, Any], raw: bytes | None = None) -> Response:
        """Answer one operation; raises the DaxdError the client should see."""
        outcome = self.begin(operation, request, raw)
        return outcome if isinstance(outcome, Response) else await outcome

    async def table_schema(self, table: str) -> TableSchema:
        """The table's key schema (:meth:`Accelerator.table_schema`): concurrent lookups share one DescribeTable."""
        plan = self.accelerator.table_schema(table)
        return await self._finish(plan, step(plan))

    def _send_now(self, call: Call) -> Awaitable[bytes] | None:
        """Put a plan's first call on the wire before any coroutine or task exists for it: its answer, to await.

        The front end's set-up then overlaps the upstream's work instead of
        delaying the request (the miss path's latency is mostly CPU here). An
        identical shared call already in the air is joined instead. None: no
        idle upstream connection; :meth:`_finish` sends it as usual.
        """
        key = (call.operation, call.body)
        if call.shared and (flight := self._flights.get(key)) is not None:
            return asyncio.shield(flight)
        sent = self.upstream.send_now(call.operation, call.body)
        if sent is None:
            return None
        if not call.shared:
            return self.upstream.finish(sent)
        flight, _ = self._flights.join(key)
        return self._settle(key, flight, self.upstream.finish(sent))

    async def _finish(self, plan: Generator[Call, bytes, T], outcome: Call | T,
                      first: Awaitable[bytes] | None = None) -> T:
        """Drive the rest of a plan; ``first`` is the answer of its first call if already sent."""
        while isinstance(outcome, Call):
            pending, first = (self._perform(outcome) if first is None else first), None
            try:
                reply = await pending
            except DaxdError as exc:
                outcome = step(plan, error=exc)
                continue
            outcome = step(plan, reply)
        return outcome

    def _perform(self, call: Call) -> Awaitable[bytes]:
        """One upstream call; a shared one joins an identical call already in flight.

        (The upstream client records each attempt's latency itself.)
        """
        if isinstance(call, TierCall):
            assert self.tier is not None, "a plan asked for the shared tier, but this driver has none"
            return self.tier.perform(call)
        if not call.shared:
            return self.upstream.call(call.operation, call.body)
        key = (call.operation, call.body)
        flight, leading = self._flights.join(key)
        if not leading:
            return asyncio.shield(flight)
        return self._settle(key, flight, self.upstream.call(call.operation, call.body))

    async def _settle(self, key: tuple[str, bytes], flight: asyncio.Future[bytes], reply: Awaitable[bytes]) -> bytes:
        """Await a shared call's reply and hand it (or its failure) to everyone who joined."""
        try:
            result = await reply
        except BaseException as exc:
            self._flights.land(key, flight, error=exc)
            if not flight.cancelled():
                flight.exception()  # mark retrieved: waiters may be none
            raise
        self._flights.land(key, flight, result)
        return result


def step(plan: Generator[Call, bytes, T], reply: bytes | None = None, error: DaxdError | None = None) -> Call | T:
    """Advance a plan by one call: the next Call it needs, or its result (a Response, for an operation)."""
    try:
        return plan.throw(error) if error is not None else plan.send(reply)  # type: ignore[arg-type]
    except StopIteration as done:
        result: T = done.value
        return result


def run_plan_sync(plan: Plan, perform: Callable[[Call], bytes]) -> Response:
    """Drive a plan synchronously: ``perform(call) -> bytes`` does each call."""
    outcome = step(plan)
    while isinstance(outcome, Call):
        try:
            reply = perform(outcome)
        except DaxdError as exc:
            outcome = step(plan, error=exc)
            continue
        outcome = step(plan, reply)
    return outcome
