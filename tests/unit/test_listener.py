"""The listener base's pure parts: the request budget and HTTP body inflation."""

from __future__ import annotations

import asyncio
import gzip
import zlib

import pytest

from daxd.frontends.httpserver import RequestRefused, inflate
from daxd.frontends.listener import RequestBudget


def test_budget_grants_in_order_and_never_deadlocks_on_a_large_body() -> None:
    budget = RequestBudget(100)
    granted: list[str] = []
    assert budget.reserve(60, lambda: granted.append("a"))
    assert not budget.reserve(60, lambda: granted.append("b"))
    assert not budget.reserve(10, lambda: granted.append("c"))  # fits, but waits behind b: arrival order
    budget.release(60)
    assert granted == ["b", "c"] and budget.used == 70
    budget.release(60)
    budget.release(10)
    assert budget.used == 0
    assert budget.reserve(500, lambda: None)  # larger than the budget: granted when nothing else is held


def test_a_cancelled_waiter_is_never_granted() -> None:
    budget = RequestBudget(10)
    granted: list[str] = []
    assert budget.reserve(10, lambda: None)

    def waiter() -> None:
        granted.append("w")
    assert not budget.reserve(5, waiter)
    budget.cancel(waiter)
    budget.release(10)
    assert granted == [] and budget.used == 0


def test_inflate_bounds_the_output_and_names_what_is_wrong() -> None:
    data = b'{"TableName": "t"}'
    assert inflate(gzip.compress(data), b"gzip", 1000) == data
    assert inflate(zlib.compress(data), b"deflate", 1000) == data
    assert inflate(zlib.compress(data)[2:-4], b"deflate", 1000) == data  # raw deflate
    assert inflate(b"", b"gzip", 1000) == b""
    with pytest.raises(RequestRefused) as bomb:
        inflate(gzip.compress(b"a" * 10_000), b"gzip", 1000)
    assert bomb.value.status == 413
    with pytest.raises(RequestRefused) as truncated:
        inflate(gzip.compress(data)[:-5], b"gzip", 1000)
    assert truncated.value.status == 400
    with pytest.raises(RequestRefused) as trailing:
        inflate(gzip.compress(data) + b"junk", b"gzip", 1000)
    assert trailing.value.status == 400
    with pytest.raises(RequestRefused) as unknown:
        inflate(data, b"br", 1000)
    assert unknown.value.status == 415


async def test_large_requests_take_turns_with_the_loop_polling_between_them() -> None:
    budget = RequestBudget(100)
    loop = asyncio.get_running_loop()
    order: list[str] = []

    def large(name: str) -> None:
        order.append(name)
        loop.call_soon(order.append, f"small after {name}")  # stands for a socket that became ready meanwhile

    for name in ("a", "b", "c"):
        budget.take_turn(lambda name=name: large(name))
    for _ in range(10):
        await asyncio.sleep(0)
    assert order == ["a", "small after a", "b", "small after b", "c", "small after c"]
