"""Names kept in a Valkey sorted set, so that listing them never walks the keyspace.

Membership (``dx:nodes``) and the processes' status reports (``dx:reports``)
each keep the keys they write in such a registry, scored by the time of the
last write (epoch ms). Listing is one ``ZRANGE`` and one ``MGET``, however many
keys the shared tier holds; a ``SCAN`` for a prefix would visit every key, every
time. The keys themselves expire and stay the truth: a name whose key is gone
is skipped, and forgotten after :data:`FORGET_MS`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

#: A registered name not renewed for this long is dropped from its registry.
FORGET_MS = 60_000


async def register(client: Any, registry: bytes, name: bytes | str) -> None:
    await client.zadd(registry, {name: int(time.time() * 1000)})


async def unregister(client: Any, registry: bytes, name: bytes | str) -> None:
    await client.zrem(registry, name)


async def registered_values(client: Any, registry: bytes, prefix: bytes = b"") -> list[tuple[bytes, bytes]]:
    """``(prefix + name, value)`` of every registered name whose key still exists."""
    await client.zremrangebyscore(registry, "-inf", int(time.time() * 1000) - FORGET_MS)
    keys = [prefix + name for name in await client.zrange(registry, 0, -1)]
    values = await mget_across_slots(client, keys)
    return [(key, value) for key, value in zip(keys, values, strict=True) if value is not None]


async def mget_across_slots(client: Any, keys: Sequence[bytes]) -> list[Any]:
    """``MGET`` of keys that may live in different slots of a cluster (one ``MGET`` on a single server)."""
    if not keys:
        return []
    mget = getattr(client, "mget_nonatomic", client.mget)
    return list(await mget(keys))
