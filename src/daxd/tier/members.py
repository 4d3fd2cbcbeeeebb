"""Membership in Valkey: nodes sharing a Valkey find each other there.

Each node keeps ``dx:n:<name>`` set to its registration (name, wire id,
advertised host name, IP, DAX port) with a 3 s expiry, renewed every second,
and lists the live registrations at the same pace. The DAX ``endpoints``
answer is this node plus every live one, each a leader (any node forwards any
write to DynamoDB). A node that dies drops out when its key expires (≤ 3 s
plus one refresh); a node that stops deletes its key first. When Valkey cannot
be reached the answer is this node alone. The workers of one node register
the same key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any

import orjson

from daxd.cluster.membership import node_id_of
from daxd.frontends.dax.events import PeerMessage
from daxd.frontends.dax.responses import Endpoint, encode_endpoints
from daxd.frontends.dax.service import PeerHandler

log = logging.getLogger("daxd.tier")

PREFIX = b"dx:n:"
HEARTBEAT = 1.0
EXPIRY_MS = 3000


class ValkeyMembers:
    """The node's :class:`PeerHandler` when nodes share a Valkey (``handle`` stays the local cluster's)."""

    def __init__(self, client: Any, *, name: str, host: str, ip: str, port: int, local: PeerHandler) -> None:
        self.client = client
        self.name = name
        self.node_id = node_id_of(name)
        self.ip, self.port = ip, port
        self.me = {"name": name, "id": self.node_id, "host": host, "ip": ip, "port": port}
        self.local = local
        #: The other live nodes' registrations, as last listed.
        self.others: list[dict[str, Any]] = []
        self._cache: tuple[tuple[Any, ...], bytes] | None = None
        self._task: asyncio.Task[None] | None = None

    def endpoints_reply(self, hostname: str, availability_zone: str) -> bytes | None:
        if not self.others:
            return None  # answer as a single node
        state = (hostname, availability_zone, tuple((o["id"], o["host"], o["ip"], o["port"]) for o in self.others))
        if self._cache is None or self._cache[0] != state:
            nodes = [Endpoint(self.node_id, hostname, self.ip, self.port, role=1,
                              availability_zone=availability_zone, leader_session_id=1)]
            nodes += [Endpoint(o["id"], o["host"], o["ip"], o["port"], role=1, availability_zone=availability_zone,
                               leader_session_id=1) for o in self.others]
            self._cache = (state, encode_endpoints(nodes))
        return self._cache[1]

    def handle(self, message: PeerMessage) -> bytes | Awaitable[bytes]:
        return self.local.handle(message)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="daxd-tier-members")

    async def leave(self) -> None:
        """Stop heartbeating and deregister (a stopping node leaves ``endpoints`` at once)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.client.delete(PREFIX + self.name.encode())

    async def _run(self) -> None:
        registration = orjson.dumps(self.me)
        while True:
            try:
                await self.client.set(PREFIX + self.name.encode(), registration, px=EXPIRY_MS)
                names = [name async for name in self.client.scan_iter(match=PREFIX + b"*", count=1000)]
                mget = getattr(self.client, "mget_nonatomic", self.client.mget)  # a cluster: names span slots
                values = await mget(names) if names else []
                self.others = sorted((_parse(v) for v in values if v is not None), key=lambda o: o["name"])
                self.others = [o for o in self.others if o and o["name"] != self.name]
            except Exception as exc:  # Valkey down: answer as a single node until it is back
                if self.others:
                    log.warning("membership: cannot reach Valkey (%s): advertising this node only", exc)
                self.others = []
            await asyncio.sleep(HEARTBEAT)


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
        Endpoint(int(value["id"]), str(value["host"]), str(value["ip"]), int(value["port"]))
        return {"name": str(value["name"]), "id": int(value["id"]), "host": str(value["host"]),
                "ip": str(value["ip"]), "port": int(value["port"])}
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return {}
