"""Fixtures for the official DAX clients against a daxd node backed by DynamoDB Local.

One node serves a whole test module (clients discover it over ``endpoints``
like a real cluster). Tables are created straight in DynamoDB Local; daxd
learns their key schemas through DescribeTable on first use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from amazondax import AmazonDaxClient

from tests.harness import CREDENTIALS, DaxdNode, DynamoDBLocal, create_table

DAX_CREDENTIALS = {"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "secret",
                   "region_name": "us-east-1"}


_SETUP_STARTED = pytest.StashKey[float]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_SETUP_STARTED] = time.monotonic()


@pytest.fixture
def seconds_left(request: pytest.FixtureRequest) -> Callable[[], float]:
    """Seconds until the per-test timeout, which also counts the fixtures' set-up (DynamoDB Local, a node)."""
    started = request.node.stash.get(_SETUP_STARTED, time.monotonic())
    timeout = float(request.config.getini("timeout") or 0) or float("inf")
    return lambda: started + timeout - time.monotonic()


def dax_url(node: DaxdNode, scheme: str = "dax", port_name: str = "dax") -> str:
    return f"{scheme}://127.0.0.1:{node.ports[port_name]}"


@pytest.fixture(scope="module")
def dax_node(dynamodb_local: DynamoDBLocal) -> Iterator[DaxdNode]:
    node = DaxdNode(dynamodb_local.endpoint)
    yield node
    node.stop()


@pytest.fixture
def open_dax() -> Iterator[Callable[..., Any]]:
    """Open AmazonDaxClient clients (or resources); each is closed when the test ends."""
    opened: list[Any] = []

    def open_client(endpoint: str, *, resource: bool = False, **overrides: Any) -> Any:
        kwargs = {**DAX_CREDENTIALS, **overrides}
        if resource:
            made = AmazonDaxClient.resource(endpoint_url=endpoint, **kwargs)
            opened.append(made.meta.client)
            return made
        client = AmazonDaxClient(endpoint_url=endpoint, **kwargs)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()


@pytest.fixture
def dax(dax_node: DaxdNode, open_dax: Callable[..., Any]) -> Any:
    """The official Python client, connected to the module's node."""
    return open_dax(dax_url(dax_node))


@pytest.fixture(scope="module")
def tables(ddb: Any) -> dict[str, str]:
    """One table per key shape: pk S + sk N (with a GSI on g), pk S only, pk N only."""
    return {
        "range": create_table(ddb, gsi=True),
        "hash": create_table(ddb, range_key=None),
        "string_range": create_table(ddb, range_key="sk", range_type="S"),
    }


__all__ = ["CREDENTIALS", "DAX_CREDENTIALS", "dax_url"]
