"""What an acknowledged write (or a stream record) changed: what the shared tier commits.

The Accelerator reports one :class:`Change` per key through its ``on_write``
hook: the new image when it has one (PutItem, DeleteItem as a negative image,
UpdateItem's ALL_NEW), otherwise only the key and partition (``evicted``:
UpdateItem with other ReturnValues, transactional updates, failed writes,
stream records). Keys and partitions are the canonical bytes
:mod:`daxd.model.keys` computes, the same on every node.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Change:
    """One key an acknowledged (or failed) write touched.

    ``image`` is the item's DynamoDB JSON after the write (None: deleted);
    ``evicted`` means the writer does not know the new state. ``partition``
    None means no query depends on the change (a failed transaction's
    ConditionCheck key): only the item is evicted, as on the writing node.
    """

    table: str
    key: bytes
    partition: bytes | None
    image: bytes | None = None
    evicted: bool = False
