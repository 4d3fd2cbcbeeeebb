"""Fixtures for the in-process accelerator: boto3 clients and resources against DynamoDB Local."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

import daxd
from tests.harness import CLIENT_CONFIG, CREDENTIALS, DynamoDBLocal, client


@pytest.fixture
def accelerate(dynamodb_local: DynamoDBLocal) -> Iterator[Callable[..., Any]]:
    """``accelerate(**settings)``: an accelerated client of its own (own cache) per call."""
    made: list[Any] = []

    def make(**settings: Any) -> Any:
        accelerated = daxd.accelerate(client(dynamodb_local.endpoint), **settings)
        made.append(accelerated)
        return accelerated

    yield make
    for accelerated in made:
        accelerated.close()


@pytest.fixture
def api(accelerate: Callable[..., Any]) -> Any:
    """An accelerated client with the default settings."""
    return accelerate()


@pytest.fixture
def resource(dynamodb_local: DynamoDBLocal) -> Any:
    """An accelerated boto3 resource."""
    return daxd.accelerate(boto3.resource("dynamodb", endpoint_url=dynamodb_local.endpoint,
                                          config=CLIENT_CONFIG, **CREDENTIALS))


def key(pk: str = "a", sk: int = 1) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": str(sk)}}


def strip(response: dict[str, Any]) -> dict[str, Any]:
    """A response without its ResponseMetadata, for comparisons."""
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


def canon(value: Any) -> Any:
    """A response made comparable: no ResponseMetadata, sets sorted (DynamoDB promises no set order)."""
    if isinstance(value, dict):
        return {k: sorted(v) if k in ("SS", "NS", "BS") else canon(v)
                for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [canon(v) for v in value]
    return value
