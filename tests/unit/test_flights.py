"""Single-flight, with both kinds of future the drivers use."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future

import pytest

from daxd.flights import Flights


def test_the_first_caller_leads_and_later_ones_join_until_it_lands() -> None:
    flights: Flights[str, Future[bytes]] = Flights(Future)
    lead, leading = flights.join("k")
    joined, joining_leads = flights.join("k")
    assert leading and not joining_leads and joined is lead and len(flights) == 1
    flights.land("k", lead, b"answer")
    assert joined.result() == b"answer" and len(flights) == 0
    again, leads_again = flights.join("k")
    assert leads_again and again is not lead  # a landed flight is never joined


def test_an_error_reaches_everyone_who_joined() -> None:
    flights: Flights[str, Future[bytes]] = Flights(Future)
    lead, _ = flights.join("k")
    joined, _ = flights.join("k")
    flights.land("k", lead, error=TimeoutError("slow"))
    with pytest.raises(TimeoutError):
        joined.result()


async def test_asyncio_futures_share_one_call() -> None:
    loop = asyncio.get_running_loop()
    flights: Flights[str, asyncio.Future[bytes]] = Flights(loop.create_future)
    calls = 0

    async def fetch() -> bytes:
        nonlocal calls
        flight, leading = flights.join("k")
        if not leading:
            return await flight
        calls += 1
        await asyncio.sleep(0)
        flights.land("k", flight, b"v")
        return b"v"

    assert await asyncio.gather(*(fetch() for _ in range(5))) == [b"v"] * 5
    assert calls == 1
