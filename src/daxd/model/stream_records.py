"""DynamoDB Streams records, parsed once where they are read, and what applying one did.

A record is parsed once, where it is read (the tailer), into a small frozen
:class:`StreamRecord` (with the table and stream it came from), which the
Accelerator applies; :class:`Outcome` is what it did with it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: GetRecords' ``eventName`` values.
EVENTS = frozenset({"INSERT", "MODIFY", "REMOVE"})
#: ``userIdentity.principalId`` of deletes made by DynamoDB's TTL process.
TTL_PRINCIPAL = "dynamodb.amazonaws.com"


class MalformedRecord(ValueError):
    """A stream record without the fields every DynamoDB Streams record has."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamRecord:
    """One change to one item, as DynamoDB Streams reports it.

    ``new_image`` is the whole item after the change, or None for a REMOVE and
    for streams that do not carry new images (KEYS_ONLY, OLD_IMAGE).
    ``created`` is ``ApproximateCreationDateTime`` (epoch seconds, rounded
    down to the second by DynamoDB, to the minute by DynamoDB Local).
    """

    table: str
    stream: str
    event: str
    keys: Mapping[str, Any]
    sequence: int
    new_image: Mapping[str, Any] | None = None
    created: float | None = None
    by_ttl: bool = False

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise MalformedRecord(f"unknown eventName {self.event!r}")
        if not isinstance(self.keys, Mapping) or not self.keys:
            raise MalformedRecord("record without dynamodb.Keys")
        if self.new_image is not None and not isinstance(self.new_image, Mapping):
            raise MalformedRecord("dynamodb.NewImage is not a map")

    @property
    def removed(self) -> bool:
        return self.event == "REMOVE"

    @classmethod
    def from_wire(cls, table: str, stream: str, raw: Any) -> StreamRecord:
        """Parse one element of GetRecords' ``Records``.

        Raises:
            MalformedRecord: a field every record has is missing or of the wrong type.
        """
        if not isinstance(raw, Mapping) or not isinstance(raw.get("dynamodb"), Mapping):
            raise MalformedRecord("record without a dynamodb object")
        body = raw["dynamodb"]
        identity = raw.get("userIdentity")
        principal = identity.get("PrincipalId") if isinstance(identity, Mapping) else None
        return cls(table=table, stream=stream, event=str(raw.get("eventName")), keys=body.get("Keys"),
                   sequence=_sequence(body.get("SequenceNumber")), new_image=body.get("NewImage"),
                   created=_epoch(body.get("ApproximateCreationDateTime")), by_ttl=principal == TTL_PRINCIPAL)


def _sequence(value: Any) -> int:
    """Sequence numbers are decimal strings of up to 40 digits: compare them as integers."""
    if not isinstance(value, str) or not value.isdigit():
        raise MalformedRecord(f"bad SequenceNumber {value!r}")
    return int(value)


def _epoch(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class Outcome(enum.Enum):
    """What applying one record did to the item cache."""

    PUT = "put"  # the new image is cached
    NEGATIVE = "negative"  # a REMOVE: cached as not found
    EVICTED = "evicted"  # no image, or one that might be older than the cache: the key is forgotten
    STALE = "stale"  # a record older than (or the same as) one already applied: ignored
    SKIPPED = "skipped"  # the table is not cached or its key schema is unknown
