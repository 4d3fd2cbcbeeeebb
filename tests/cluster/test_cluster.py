"""Three nodes sharing one Valkey, DynamoDB Local and the official Python DAX client.

Discovery through any node; a write through one node served by the others; a
write that bypasses daxd reaching every node through the stream, read by one
lease holder; the holder killed while such a write is made; every node
restarted while one is made. Reads that must hit one particular node go
through that node's DynamoDB API (boto3): the official DAX client spreads
requests over every node it discovered, so it cannot be pinned to one.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from amazondax import AmazonDaxClient

from tests.cluster.conftest import Cluster, admin_json, endpoints
from tests.compat.conftest import DAX_CREDENTIALS
from tests.harness import create_table, wait_until


def _value(node_client: Any, table: str, key: str = "k") -> str | None:
    item = node_client.get_item(TableName=table, Key={"pk": {"S": key}}).get("Item")
    return None if item is None else str(item["v"]["S"])


def _put(client: Any, table: str, value: str, key: str = "k") -> None:
    client.put_item(TableName=table, Item={"pk": {"S": key}, "v": {"S": value}})


def test_every_node_advertises_every_node_as_leader(cluster: Cluster,
                                                    wait_for_members: Callable[..., Any]) -> None:
    answers = [wait_for_members(port, 3) for port in cluster.dax_ports]
    for answer in answers:
        assert sorted(e[3] for e in answer) == sorted(cluster.dax_ports)
        assert {e[4] for e in answer} == {1}  # every node a leader
        assert {e[2] for e in answer} == {bytes([127, 0, 0, 1])}  # 4 address bytes
    ids = {e[3]: e[0] for e in answers[0]}
    assert len(set(ids.values())) == 3
    for answer in answers[1:]:
        assert {e[3]: e[0] for e in answer} == ids  # one id per node, the same from every node


def test_the_official_client_discovers_every_node_from_any_one(cluster: Cluster, ddb: Any,
                                                               wait_for_members: Callable[..., Any]) -> None:
    table = create_table(ddb, range_key=None)
    wait_for_members(cluster.dax_ports[1], 3)
    client = AmazonDaxClient(endpoints=[cluster.dax(1)], **DAX_CREDENTIALS)
    try:
        for i in range(60):
            _put(client, table, "x", f"k{i}")
            assert client.get_item(TableName=table, Key={"pk": {"S": f"k{i}"}})["Item"]["v"] == {"S": "x"}
    finally:
        client.close()
    for index in range(3):
        served = admin_json(cluster.node(index), "/cluster")["self"]
        assert served["hits"] + served["misses"] > 0, f"node {index + 1} served nothing"


def test_a_write_through_node_1_is_served_by_nodes_2_and_3(cluster: Cluster, ddb: Any) -> None:
    table = create_table(ddb, range_key=None)
    clients = [cluster.node(i).client() for i in range(3)]
    _put(ddb, table, "v0")
    assert [_value(c, table) for c in clients] == ["v0"] * 3  # cached in the shared tier and every L1
    _put(ddb, table, "bypass")  # no stream: no node can know
    assert [_value(c, table) for c in clients] == ["v0"] * 3
    _put(clients[0], table, "v1")
    wait_until(lambda: [_value(c, table) for c in clients[1:]] == ["v1", "v1"], 10, "nodes 2 and 3 to serve v1")
    # An update whose new image the writer does not learn (ReturnValues=ALL_OLD) evicts everywhere.
    clients[0].update_item(TableName=table, Key={"pk": {"S": "k"}}, UpdateExpression="SET v = :v",
                           ExpressionAttributeValues={":v": {"S": "v2"}}, ReturnValues="ALL_OLD")
    wait_until(lambda: [_value(c, table) for c in clients] == ["v2"] * 3, 10, "the eviction everywhere")
    clients[2].delete_item(TableName=table, Key={"pk": {"S": "k"}})
    wait_until(lambda: [_value(c, table) for c in clients] == [None] * 3, 10, "the delete everywhere")


def _streamed_table(cluster: Cluster, ddb: Any) -> tuple[str, list[Any], dict[str, Any]]:
    """A table with a stream, cached on every node, its shard leased by one node which has applied a
    bypass write already (so the shard has a checkpoint)."""
    table = create_table(ddb, range_key=None, stream=True)
    clients = [cluster.node(i).client() for i in range(3)]
    _put(ddb, table, "v0")
    assert [_value(c, table) for c in clients] == ["v0"] * 3
    cluster.wait_for_lease(table)
    written = ["v0"]

    def bypass_write_seen() -> bool:
        """Write around daxd until every node shows it (a write made before the holder positioned its
        reader is not in what it reads; the holder then drops the table's entries everywhere)."""
        written.append(f"v{len(written)}")
        _put(ddb, table, written[-1])
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            if [_value(c, table) for c in clients] == [written[-1]] * 3:
                return cluster.wait_for_lease(table)["checkpoint"] is not None  # read from the stream
            time.sleep(0.1)
        return False

    wait_until(bypass_write_seen, 30, "the stream to deliver a write made around daxd")
    return table, clients, cluster.wait_for_lease(table)


def test_a_bypass_write_reaches_every_node_through_one_lease_holder(cluster: Cluster, ddb: Any) -> None:
    table, clients, lease = _streamed_table(cluster, ddb)
    readers = [admin_json(cluster.node(i), "/cluster")["self"]["streams"].get(table, {}).get("readers", 0)
               for i in range(3)]
    assert sum(readers) == 1 and readers[int(lease["holder"][1:]) - 1] == 1  # the holder alone reads the shard
    _put(ddb, table, "last")
    wait_until(lambda: [_value(c, table) for c in clients] == ["last"] * 3, 10, "the stream to deliver")
    wait_until(lambda: cluster.wait_for_lease(table)["checkpoint"] > lease["checkpoint"], 10, "the checkpoint")


def test_a_bypass_write_made_while_the_lease_holder_is_killed_arrives(cluster: Cluster, ddb: Any) -> None:
    table, clients, lease = _streamed_table(cluster, ddb)
    holder = int(lease["holder"][1:]) - 1
    survivors = [c for i, c in enumerate(clients) if i != holder]
    killer = threading.Thread(target=cluster.node(holder).stop, args=(signal.SIGKILL,))
    try:
        killer.start()
        _put(ddb, table, "during the kill")
        killer.join(20)
        # The lease expires (3 s), a survivor takes it and resumes after the checkpoint: the record arrives.
        wait_until(lambda: [_value(c, table) for c in survivors] == ["during the kill"] * 2, 20,
                   "the write to reach the survivors")
        taken = cluster.wait_for_lease(table)
        assert taken["holder"] != lease["holder"]
        assert int(taken["checkpoint"]) > int(lease["checkpoint"])  # read from the stream, not dropped wholesale
    finally:
        cluster.start(holder)


def test_checkpoints_survive_a_restart_of_every_node(cluster: Cluster, ddb: Any) -> None:
    table, clients, lease = _streamed_table(cluster, ddb)
    before = [_value(c, table) for c in clients]
    cluster.stop_nodes()
    _put(ddb, table, "while every node was down")  # the shared tier still holds the older value
    cluster.start_nodes()
    clients = [cluster.node(i).client() for i in range(3)]
    wait_until(lambda: [_value(c, table) for c in clients] == ["while every node was down"] * 3, 30,
               "the write made while every node was down")
    assert before[0] != "while every node was down"
    # The record was read after the checkpoint (not skipped by a reader starting at LATEST).
    assert int(cluster.wait_for_lease(table)["checkpoint"]) > int(lease["checkpoint"])


def test_endpoints_answer_after_the_restarts(cluster: Cluster, wait_for_members: Callable[..., Any]) -> None:
    for port in cluster.dax_ports:
        assert sorted(e[3] for e in wait_for_members(port, 3)) == sorted(cluster.dax_ports)
    assert endpoints(cluster.dax_ports[2])
