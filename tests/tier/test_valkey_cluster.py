"""Two daxd nodes on a cluster-mode Valkey: three primaries on loopback ports, slots assigned by the test."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import valkey

from daxd.tier.server import EmbeddedValkey
from tests.cluster.conftest import endpoints
from tests.harness import DaxdNode, free_port, wait_until
from tests.tier.test_shared_tier import put, query_values, tier_hits, value_of

SLOTS = ((0, 5460), (5461, 10922), (10923, 16383))


def start_cluster(servers: list[EmbeddedValkey], spares: int = 0) -> None:
    """Three primaries with the slots split between them, and ``spares`` nodes without slots, all met."""
    for _ in range(len(SLOTS) + spares):
        bus = free_port()
        servers.append(EmbeddedValkey(port=free_port(), extra_args=[
            "--cluster-enabled", "yes", "--cluster-port", str(bus), "--cluster-node-timeout", "3000",
            "--cluster-config-file", "nodes.conf"]))
        servers[-1].bus = bus  # type: ignore[attr-defined]
    clients = [valkey.Valkey(port=server.port) for server in servers]
    try:
        for client, (first, last) in zip(clients, SLOTS, strict=False):
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        for client in clients[1:]:
            client.execute_command("CLUSTER", "MEET", "127.0.0.1", servers[0].port, servers[0].bus)  # type: ignore[attr-defined]

        def ok() -> bool:
            return all(b"cluster_state:ok" in client.execute_command("CLUSTER", "INFO")
                       and f"cluster_known_nodes:{len(servers)}".encode() in client.execute_command("CLUSTER", "INFO")
                       for client in clients)

        wait_until(ok, 30, "the Valkey cluster to be ok")
    finally:
        for client in clients:
            client.close()


@pytest.fixture
def valkey_cluster() -> Iterator[list[EmbeddedValkey]]:
    servers: list[EmbeddedValkey] = []
    try:
        start_cluster(servers, spares=1)
        yield servers
    finally:
        for server in servers:
            server.stop()


def gauge(node: DaxdNode, name: str) -> float:
    with urllib.request.urlopen(node.admin + "/metrics", timeout=5) as answer:
        found = re.search(r"^" + name + r" (\S+)$", answer.read().decode(), re.MULTILINE)
    return -1.0 if found is None else float(found.group(1))


def test_two_nodes_share_a_cluster_mode_valkey(
        start_node: Callable[..., DaxdNode], valkey_cluster: list[EmbeddedValkey], table: str, ddb: Any) -> None:
    url = f"redis://127.0.0.1:{valkey_cluster[1].port}"   # any node of the cluster (the spare, last, has no slots)
    n1, n2 = start_node("--valkey", url, "--valkey-cluster"), start_node("--valkey", url, "--valkey-cluster")
    assert any("shared tier up" in line and "(3 primaries)" in line for line in n1.output)  # tracked on each
    c1, c2 = n1.client(), n2.client()
    keys = range(12)
    for sk in keys:
        put(ddb, table, "v1", sk=sk)
        assert value_of(c1, table, sk=sk) == "v1"           # node 1 fills L2 (and its L1)
    shards = [valkey.Valkey(port=server.port) for server in valkey_cluster]
    try:
        held = [shard.dbsize() for shard in shards]
    finally:
        for shard in shards:
            shard.close()
    assert sum(1 for count in held[:3] if count) >= 2, f"items should spread over the shards: {held}"
    for sk in keys:
        put(ddb, table, "bypass", sk=sk)                    # around daxd: only a cached copy answers v1
    for sk in keys:
        assert value_of(c2, table, sk=sk) == "v1"           # node 2: L2 hits, from every shard
    assert tier_hits(n2, "GetItem") == len(keys)
    for sk in keys:
        assert value_of(c2, table, sk=sk) == "v1"           # now node 2's L1
    assert tier_hits(n2, "GetItem") == len(keys)
    for sk in keys:
        put(c1, table, "v2", sk=sk)                         # through node 1: every primary pushes to node 2
    for sk in keys:
        wait_until(lambda sk=sk: value_of(c2, table, sk=sk) == "v2", 10,  # type: ignore[misc]
                   f"node 2 to see node 1's write of key {sk}")
    assert query_values(c2, table, "Query") == ["v2"] * len(keys)
    put(c1, table, "v3", sk=0)
    wait_until(lambda: query_values(c2, table, "Query") == ["v2"] * (len(keys) - 1) + ["v3"], 10,
               "node 2's cached Query to see node 1's write")

    def advertised(node: DaxdNode) -> set[int]:
        return {entry[3] for entry in endpoints(node.ports["dax"])}

    wait_until(lambda: advertised(n1) == advertised(n2) == {n1.ports["dax"], n2.ports["dax"]}, 10,
               "both nodes to find each other through the cluster")


def test_a_failover_is_followed_and_the_new_primary_pushes_invalidations(
        start_node: Callable[..., DaxdNode], valkey_cluster: list[EmbeddedValkey], table: str, ddb: Any) -> None:
    url = f"redis://127.0.0.1:{valkey_cluster[0].port}"
    n1, n2 = start_node("--valkey", url, "--valkey-cluster"), start_node("--valkey", url, "--valkey-cluster")
    c1, c2 = n1.client(), n2.client()
    keys = range(12)
    for sk in keys:
        put(c1, table, "v1", sk=sk)
    old, spare = (valkey.Valkey(port=server.port) for server in (valkey_cluster[0], valkey_cluster[3]))
    try:
        assert old.dbsize() > 0                              # the first shard holds some of the items
        before = [gauge(n, "daxd_shared_tier_connects") for n in (n1, n2)]
        spare.execute_command("CLUSTER", "REPLICATE", old.execute_command("CLUSTER", "MYID"))
        wait_until(lambda: spare.info("replication").get("master_link_status") == "up", 30,
                   "the spare to replicate the first primary")
        spare.execute_command("CLUSTER", "FAILOVER")        # the spare becomes the primary of the first shard
        wait_until(lambda: spare.info("replication").get("role") == "master", 30, "the failover")
    finally:
        old.close()
        spare.close()
    wait_until(lambda: all(gauge(n, "daxd_shared_tier_connects") > b and gauge(n, "daxd_shared_tier_up") == 1
                           for n, b in zip((n1, n2), before, strict=True)), 30,
               "both nodes to notice the new primary and track it")
    assert gauge(n2, "daxd_shared_tier_tracked_servers") == 3
    for sk in keys:
        assert value_of(c2, table, sk=sk) == "v1"           # into node 2's L1 again
    for sk in keys:
        put(c1, table, "v2", sk=sk)
    for sk in keys:
        wait_until(lambda sk=sk: value_of(c2, table, sk=sk) == "v2", 10,  # type: ignore[misc]
                   f"node 2 to hear node 1's write of key {sk}, also from the new primary")
