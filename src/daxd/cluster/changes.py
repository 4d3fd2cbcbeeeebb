"""What an acknowledged write changed, told to peers, and how a peer applies it.

A node that performed a write sends each peer one :class:`Change` per key:
the new image when it has one (PutItem, DeleteItem as a negative image,
UpdateItem's ALL_NEW), otherwise only the key and partition (``evicted``:
UpdateItem with other ReturnValues, transactional updates, failed writes).
Keys and partitions travel as the canonical bytes :mod:`daxd.model.keys`
computes, the same on every node, so a peer needs no key schema to apply them.

Applying (:func:`apply_change`) follows the rule the stream applier uses: an
image is stored only if nothing touched the key in the last ``quiet``
seconds. Two nodes' writes to one key can reach a third node in either
order, so a key written twice in quick succession is evicted instead, which
is always safe. Eviction bumps the key's generation, so the next miss
refills it with ``ConsistentRead`` for ``--consistent-window`` seconds and
cannot bring back the pre-write value from a lagging replica.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daxd.accelerator import Accelerator

#: Wire field names (short: a batch of invalidations is sent per write).
_TABLE, _KEY, _PARTITION, _IMAGE, _EVICTED = "t", "k", "p", "i", "e"


class BadChange(ValueError):
    """A peer sent an invalidation this node cannot read."""


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

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {_TABLE: self.table, _KEY: self.key, _PARTITION: self.partition}
        if self.evicted:
            wire[_EVICTED] = True
        else:
            wire[_IMAGE] = self.image
        return wire

    @classmethod
    def from_wire(cls, raw: Any) -> Change:
        """Raises BadChange for anything but the shape :meth:`to_wire` makes."""
        if not isinstance(raw, Mapping):
            raise BadChange("a change must be a map")
        table, key, partition, image = raw.get(_TABLE), raw.get(_KEY), raw.get(_PARTITION), raw.get(_IMAGE)
        if not isinstance(table, str) or not isinstance(key, bytes):
            raise BadChange("a change needs a table name and key bytes")
        if partition is not None and not isinstance(partition, bytes):
            raise BadChange("a change's partition must be bytes or null")
        if image is not None and not isinstance(image, bytes):
            raise BadChange("a change's image must be bytes or null")
        return cls(table, key, partition, image, raw.get(_EVICTED) is True)


def apply_change(accelerator: Accelerator, change: Change, quiet: float) -> str:
    """Apply a peer's change to this node's cache; returns what was done ("put" or "evicted")."""
    items = accelerator.items
    recent = items.changed_since(change.table, change.key, accelerator.timer() - quiet)
    if change.evicted or recent:
        items.evict(change.table, change.key)
        outcome = "evicted"
    else:
        items.put_image(change.table, change.key, change.image, items.token(change.table, change.key))
        outcome = "put"
    if change.partition is not None:
        accelerator.queries.invalidate(change.table, change.partition)
    return outcome


def apply_changes(accelerator: Accelerator, changes: Sequence[Change], quiet: float) -> int:
    """Apply a batch in order; the number applied."""
    for change in changes:
        apply_change(accelerator, change, quiet)
    return len(changes)
