"""Membership in Valkey: nodes sharing a Valkey find each other there.

Each node keeps ``dx:n:<name>`` set to its registration (name, wire id,
advertised host name, IP, DAX port) with a 3 s expiry, renewed every second,
and lists the live registrations at the same pace. The DAX ``endpoints``
answer is every live node, each a leader (any node forwards any write to
DynamoDB). A node that dies drops out when its key expires (≤ 3 s plus one
refresh). When Valkey cannot be reached the answer is this node alone. The
workers of one node register the same key.

A node is *advertised* only between :meth:`ValkeyMembers.join` (the node is
ready: connected to Valkey, the upstream answered) and
:meth:`ValkeyMembers.leave` (it was asked to stop). Outside that span it
lists the others from the start and answers ``endpoints`` with them alone,
so a client that asks a node which is starting or leaving is sent elsewhere;
only with no other node known does it answer with itself (a lone node has
nowhere else to send anyone). Registration and deregistration go through one
lock, so a heartbeat already on its way never re-registers a node that left.
See docs/cluster.md, "Leaving and joining".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson

from daxd.cluster.membership import LiveNode, node_id_of
from daxd.tier.registry import register, registered_values, unregister

log = logging.getLogger("daxd.tier")

PREFIX = b"dx:n:"
#: The names of the registered nodes (:mod:`daxd.tier.registry`: listing them never walks the keyspace).
REGISTRY = b"dx:nodes"
HEARTBEAT = 1.0
EXPIRY_MS = 3000
#: Seconds :meth:`ValkeyMembers.stop` waits for the loop's last Valkey call (its client times out in 1 s).
STOP_WAIT = 2.0


class ValkeyMembers:
    """This node's registration in Valkey and its list of the others."""

    def __init__(self, client: Any, *, name: str, host: str, ip: str, port: int) -> None:
        self.client = client
        self.host, self.ip = host, ip
        self.bind(name, port)
        #: The other live nodes' registrations, as last listed.
        self.others: list[dict[str, Any]] = []
        #: Whether this node is registered (between :meth:`join` and :meth:`leave`).
        self.advertised = False
        #: Whether this node was ever advertised (a node that never was has no clients to wait for).
        self.joined_once = False
        #: Set by :meth:`leave`: the node never registers again (it is stopping).
        self.left = False
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def bind(self, name: str, port: int) -> None:
        """This node's name and DAX port (known once the listener is bound, with ``--dax-port 0``)."""
        self.name, self.port = name, port
        self.key = PREFIX + name.encode()
        self.node_id = node_id_of(name)
        self.me = {"name": name, "id": self.node_id, "host": self.host, "ip": self.ip, "port": port}

    def live_nodes(self, hostname: str) -> tuple[LiveNode, ...] | None:
        """The nodes ``endpoints`` names (this one as ``hostname``, only while advertised); None: answer
        as a single node (no other node known)."""
        if not self.others:
            return None
        me = (LiveNode(self.node_id, hostname, self.ip, self.port),) if self.advertised else ()
        return me + tuple(LiveNode(o["id"], o["host"], o["ip"], o["port"]) for o in self.others)

    async def list_once(self, timeout: float = 2.0) -> None:
        """List the other nodes now (before the DAX listener opens: a starting node never answers alone
        when others are known); Valkey not answering within ``timeout`` leaves the list empty."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._list(), timeout)

    def start(self) -> None:
        """Keep listing the others (and heartbeating once joined) until :meth:`stop`."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="daxd-tier-members")

    async def join(self) -> None:
        """Register this node: from now on every node's ``endpoints`` lists it."""
        async with self._lock:
            if self.left:
                return
            await self._register()
            self.advertised = self.joined_once = True
        log.info("membership: joined as %s (%s:%d)", self.name, self.ip, self.port)
        self._wake.set()

    async def leave(self) -> None:
        """Deregister at once (every node's next listing drops this one); keep listing the others."""
        async with self._lock:
            self.advertised, self.left = False, True
            with contextlib.suppress(Exception):
                await self.client.delete(self.key)
                await unregister(self.client, REGISTRY, self.name)

    async def stop(self) -> None:
        """Stop listing and heartbeating (deregistering first if still registered).

        The loop is asked to end and given a bounded time; it is cancelled only
        if it does not (a cancellation racing ``wait_for``'s timeout or a
        client call can be lost on Python 3.11, and a stop must never hang).
        """
        if self.advertised:
            await self.leave()
        self._closing = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            _done, pending = await asyncio.wait({task}, timeout=STOP_WAIT)
            for late in pending:
                late.cancel()

    async def _register(self) -> None:
        await self.client.set(self.key, orjson.dumps(self.me), px=EXPIRY_MS)
        await register(self.client, REGISTRY, self.name)

    async def _heartbeat(self) -> None:
        async with self._lock:
            if self.advertised:
                await self._register()

    async def _list(self) -> None:
        values = await registered_values(self.client, REGISTRY, PREFIX)
        others = sorted((_parse(v) for _, v in values), key=lambda o: o.get("name", ""))
        self.others = [o for o in others if o and o["name"] != self.name]

    async def _run(self) -> None:
        while not self._closing:
            try:
                await self._heartbeat()
                await self._list()
            except Exception as exc:  # Valkey down: answer as a single node until it is back
                if self.others:
                    log.warning("membership: cannot reach Valkey (%s): advertising this node only", exc)
                self.others = []
            if self._closing:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HEARTBEAT):
                    await self._wake.wait()


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
        LiveNode(int(value["id"]), str(value["host"]), str(value["ip"]), int(value["port"]))
        return {"name": str(value["name"]), "id": int(value["id"]), "host": str(value["host"]),
                "ip": str(value["ip"]), "port": int(value["port"])}
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return {}
