"""The item-size floor refuses only items DynamoDB certainly refuses (over 400 KB)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from daxd.model.errors import ValidationException
from daxd.model.values import ITEM_SIZE_MAX, check_item_size

KEY = {"pk": {"S": "k"}, "sk": {"N": "1"}}


def item_with(value: dict[str, Any]) -> dict[str, Any]:
    return {**KEY, "v": value}


@pytest.mark.parametrize("value", [
    {"S": "x" * (ITEM_SIZE_MAX + 1)},
    {"S": "é" * (ITEM_SIZE_MAX // 2 + 1)},                       # 2 UTF-8 bytes each
    {"B": base64.b64encode(b"\0" * (ITEM_SIZE_MAX + 8)).decode()},
    {"SS": ["a" * 300_000, "b" * 300_000]},
    {"L": [{"S": "x" * 250_000}, {"M": {"n": {"S": "y" * 250_000}}}]},
])
def test_an_item_over_400_kb_is_refused(value: dict[str, Any]) -> None:
    with pytest.raises(ValidationException, match="Item size has exceeded the maximum allowed size"):
        check_item_size(item_with(value))


@pytest.mark.parametrize("value", [
    {"S": "x" * (ITEM_SIZE_MAX - 100)},
    {"B": base64.b64encode(b"\0" * (ITEM_SIZE_MAX - 100)).decode()},
    {"N": "1" * 38},
    {"NS": ["1"] * 10_000},                                     # numbers are not counted: a floor only
    {"S": "x" * 10, "N": "not even valid"},                      # shapes are checked elsewhere
])
def test_an_item_at_most_400_kb_or_of_unknown_size_passes(value: dict[str, Any]) -> None:
    check_item_size(item_with(value))


@pytest.mark.parametrize("item", [None, "text", [1, 2], {"a": None}, {"a": {"L": "not a list"}}, {1: {"S": 2}}])
def test_malformed_items_are_left_to_the_model_checks(item: Any) -> None:
    check_item_size(item)


def test_large_bodies_are_not_remembered_by_the_checked_memo() -> None:
    import orjson

    from daxd.accelerator import Accelerator, CacheSettings
    from daxd.messages import MEMO_BODY_MAX
    accelerator = Accelerator(CacheSettings(item_ttl=60, query_ttl=60))
    for size in (10, MEMO_BODY_MAX):
        request = {"TableName": "t", "Key": {"pk": {"S": "x" * size}}}
        accelerator.plan("GetItem", request, orjson.dumps(request))
    assert len(accelerator._checked) == 1  # the small body only
