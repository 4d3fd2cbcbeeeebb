"""Session fixtures: DynamoDB Local, started once; daxd nodes, started per test or module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.harness import DaxdNode, DynamoDBLocal, client, create_table

# Property tests check correctness, not speed: a per-example deadline only
# measures how loaded the (two-core, shared) machine is at that moment.
settings.register_profile("daxd", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("daxd")


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[DynamoDBLocal]:
    ddl = DynamoDBLocal()
    yield ddl
    ddl.stop()


@pytest.fixture(scope="session")
def ddb(dynamodb_local: DynamoDBLocal) -> Any:
    """A boto3 client straight to DynamoDB Local (bypassing daxd)."""
    return client(dynamodb_local.endpoint)


@pytest.fixture(scope="module")
def node(dynamodb_local: DynamoDBLocal) -> Iterator[DaxdNode]:
    """One daxd node in front of DynamoDB Local, shared by a test module."""
    daxd = DaxdNode(dynamodb_local.endpoint)
    yield daxd
    daxd.stop()


@pytest.fixture
def start_node(dynamodb_local: DynamoDBLocal) -> Iterator[Callable[..., DaxdNode]]:
    """Start daxd nodes with extra flags; each is stopped when the test ends."""
    nodes: list[DaxdNode] = []

    def start(*args: str, upstream: str | None = None) -> DaxdNode:
        daxd = DaxdNode(upstream or dynamodb_local.endpoint, *args)
        nodes.append(daxd)
        return daxd

    yield start
    for daxd in nodes:
        daxd.stop()


@pytest.fixture
def table(ddb: Any) -> str:
    """A fresh table (pk S, sk N) for one test."""
    return create_table(ddb)
