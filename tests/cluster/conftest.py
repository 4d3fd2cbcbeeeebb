"""Three daxd nodes on loopback ports in front of DynamoDB Local, one cluster per test module.

Peers must be known before any node starts, so the DAX ports are picked first
(:func:`tests.harness.free_port`) and every node gets the same ``--peers`` list.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import urllib3

from tests.harness import DaxdNode, DynamoDBLocal, free_port
from tests.integration.dax_wire import PREAMBLE, endpoints_request, read_items

#: Fast probes keep the suite short; production defaults to 1 s.
HEALTH_INTERVAL = "0.2"


class Cluster:
    """Three nodes with fixed DAX ports; a node can be killed and started again on the same ports."""

    def __init__(self, upstream: str, size: int = 3) -> None:
        self.upstream = upstream
        self.dax_ports = [free_port() for _ in range(size)]
        self.peers = ",".join(f"127.0.0.1:{p}" for p in self.dax_ports)
        self.nodes: list[DaxdNode | None] = [None] * size
        self.http_ports: list[int] = [free_port() for _ in range(size)]
        for index in range(size):
            self.start(index)

    def start(self, index: int) -> DaxdNode:
        node = DaxdNode(self.upstream, "--node-id", f"n{index + 1}", "--dax-port", str(self.dax_ports[index]),
                        "--http-port", str(self.http_ports[index]), "--peers", self.peers,
                        "--health-interval", HEALTH_INTERVAL)
        self.nodes[index] = node
        return node

    def node(self, index: int) -> DaxdNode:
        node = self.nodes[index]
        assert node is not None
        return node

    def dax(self, index: int) -> str:
        return f"127.0.0.1:{self.dax_ports[index]}"

    def stop(self) -> None:
        for node in self.nodes:
            if node is not None:
                node.stop()


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
    from tests.harness import wait_until

    def wait(port: int, count: int) -> list[dict[int, Any]]:
        wait_until(lambda: len(endpoints(port)) == count, 10, f"{count} endpoints from :{port}")
        return endpoints(port)

    return wait
