"""What passes between front ends, the Accelerator and its drivers, and what the Accelerator reports.

Front ends speak bytes (HTTP JSON) or dicts (DAX, in-process); converting
between the two costs microseconds on the hot path, so a :class:`Response`
holds whichever it was made from and converts lazily, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from daxd.model.errors import SerializationException


class Call:
    """One request the Accelerator needs sent upstream.

    ``shared`` calls are idempotent reads: drivers let concurrent identical
    calls (same operation and body) share one upstream round trip. (A plain
    class: one is built per miss, and a frozen dataclass's ``__init__`` costs
    three ``object.__setattr__`` calls.)
    """

    __slots__ = ("body", "operation", "shared")

    def __init__(self, operation: str, body: bytes, shared: bool = False) -> None:
        self.operation = operation
        self.body = body
        self.shared = shared

    def __repr__(self) -> str:
        return f"Call({self.operation!r}, {self.body!r}, shared={self.shared})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Call) and (self.operation, self.body, self.shared) == \
            (other.operation, other.body, other.shared)

    def __hash__(self) -> int:
        return hash((self.operation, self.body, self.shared))


class Response:
    """A DynamoDB JSON response, as bytes, as a dict, or both."""

    __slots__ = ("_body", "_data")

    def __init__(self, body: bytes | None = None, data: dict[str, Any] | None = None) -> None:
        if body is None and data is None:
            raise ValueError("a Response needs a body or data")
        self._body = body
        self._data = data

    @property
    def body(self) -> bytes:
        if self._body is None:
            self._body = orjson.dumps(self._data)
        return self._body

    @property
    def data(self) -> dict[str, Any]:
        """A dict the caller may keep or change: it shares nothing with the cache."""
        if self._data is None:
            assert self._body is not None
            self._data = orjson.loads(self._body)
        return self._data


#: Request bodies at most this long may be remembered by the memos that skip re-parsing or
#: re-checking repeated requests; a memo of larger ones would hold megabytes per entry.
MEMO_BODY_MAX = 4096


def parse_body(body: bytes) -> dict[str, Any]:
    """Decode a request body, with DynamoDB's answer for bad JSON.

    Raises:
        SerializationException: not JSON, or not a JSON object.
    """
    try:
        data = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        raise SerializationException("Start of structure or map found where not expected.") from None
    if not isinstance(data, dict):
        raise SerializationException("Unexpected value type in payload")
    return data


@dataclass(frozen=True, slots=True)
class Change:
    """One key an acknowledged (or failed) write touched.

    ``image`` is the item's DynamoDB JSON after the write (None: deleted);
    ``unknown`` means the writer does not know the new state (the key's copies must go). ``partition``
    None means no query depends on the change (a failed transaction's
    ConditionCheck key): only the item is evicted, as on the writing node.
    """

    table: str
    key: bytes
    partition: bytes | None
    image: bytes | None = None
    unknown: bool = False
