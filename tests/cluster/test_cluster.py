"""Three nodes on loopback and DynamoDB Local: discovery, roles, coherence, failover.

Reads that must hit one particular node go through that node's DynamoDB API
(boto3): the official DAX client spreads requests over every node it
discovered, so it cannot be pinned to one.
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


def _value(node_client: Any, table: str, key: str) -> str | None:
    item = node_client.get_item(TableName=table, Key={"pk": {"S": key}}).get("Item")
    return None if item is None else str(item["v"]["S"])


def _put(client: Any, table: str, key: str, value: str) -> None:
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
            _put(client, table, f"k{i}", "x")
            client.get_item(TableName=table, Key={"pk": {"S": f"k{i}"}})
    finally:
        client.close()
    for index in range(3):
        served = admin_json(cluster.node(index), "/cluster")["self"]
        assert served["hits"] + served["misses"] > 0, f"node {index + 1} served nothing"


def test_a_write_through_one_node_reaches_the_others_without_a_stream(cluster: Cluster, ddb: Any) -> None:
    table = create_table(ddb, range_key=None)
    clients = [cluster.node(i).client() for i in range(3)]
    _put(ddb, table, "k", "v0")
    assert [_value(c, table, "k") for c in clients] == ["v0"] * 3  # cached everywhere
    _put(ddb, table, "k", "bypass")  # no stream: no node can know
    time.sleep(0.3)
    assert [_value(c, table, "k") for c in clients[1:]] == ["v0", "v0"]
    _put(clients[0], table, "k", "v1")
    started = time.monotonic()
    wait_until(lambda: [_value(c, table, "k") for c in clients[1:]] == ["v1", "v1"], 2, "peer invalidation")
    assert time.monotonic() - started < 1.0
    # An update whose new image the writer does not learn (ReturnValues=ALL_OLD) evicts on the peers.
    clients[0].update_item(TableName=table, Key={"pk": {"S": "k"}}, UpdateExpression="SET v = :v",
                           ExpressionAttributeValues={":v": {"S": "v2"}}, ReturnValues="ALL_OLD")
    wait_until(lambda: [_value(c, table, "k") for c in clients] == ["v2"] * 3, 2, "peer eviction")
    clients[2].delete_item(TableName=table, Key={"pk": {"S": "k"}})
    wait_until(lambda: [_value(c, table, "k") for c in clients] == [None] * 3, 2, "peer delete")


def test_a_bypass_write_reaches_every_node_through_the_stream(cluster: Cluster, ddb: Any) -> None:
    table = create_table(ddb, range_key=None, stream=True)
    clients = [cluster.node(i).client() for i in range(3)]
    _put(ddb, table, "k", "v0")
    assert [_value(c, table, "k") for c in clients] == ["v0"] * 3

    def one_reader_per_shard() -> bool:
        views = [admin_json(cluster.node(i), "/cluster")["self"]["streams"].get(table) for i in range(3)]
        return all(v and v["status"] == "tailing" for v in views) and sum(v["readers"] for v in views) == 1

    wait_until(one_reader_per_shard, 15, "one node to read the stream's shard")
    _put(ddb, table, "k", "v1")
    wait_until(lambda: [_value(c, table, "k") for c in clients] == ["v1"] * 3, 10, "the stream to deliver")


def test_a_dead_node_drops_out_and_comes_back(cluster: Cluster, ddb: Any,
                                              wait_for_members: Callable[..., Any]) -> None:
    table = create_table(ddb, range_key=None)
    wait_for_members(cluster.dax_ports[0], 3)
    client = AmazonDaxClient(endpoints=[cluster.dax(0)], **DAX_CREDENTIALS)
    acknowledged: dict[str, str] = {}
    completed = [0]  # put+get pairs that succeeded
    errors: list[tuple[float, BaseException]] = []
    stop = threading.Event()

    def loop() -> None:
        i = 0
        while not stop.is_set():
            key, value = f"k{i % 20}", f"v{i}"
            try:
                _put(client, table, key, value)
                acknowledged[key] = value
                client.get_item(TableName=table, Key={"pk": {"S": key}})
                completed[0] += 1
            except Exception as exc:  # a short burst of retried failures is allowed
                errors.append((time.monotonic(), exc))
            i += 1

    worker = threading.Thread(target=loop)
    worker.start()
    try:
        time.sleep(0.5)
        cluster.node(1).stop(signal.SIGKILL)
        killed = time.monotonic()
        survivors = wait_for_members(cluster.dax_ports[0], 2)
        assert cluster.dax_ports[1] not in {e[3] for e in survivors}
        time.sleep(1.0)
        before = completed[0]
        wait_until(lambda: completed[0] > before + 10, 20, "the put+get loop to make progress")
        cluster.start(1)
        wait_for_members(cluster.dax_ports[0], 3)
        wait_for_members(cluster.dax_ports[1], 3)
        time.sleep(1.0)
    finally:
        stop.set()
        worker.join(30)
        client.close()
    # The client keeps a dead node until its own refresh (every ~4 s, docs/protocol.md, "Client behaviour") drops it;
    # until then a request that draws the dead node three times fails. Nothing fails after that.
    assert all(at - killed < 6.0 for at, _ in errors), errors[-3:]
    for key, value in acknowledged.items():  # no acknowledged write was lost
        item = ddb.get_item(TableName=table, Key={"pk": {"S": key}}, ConsistentRead=True)["Item"]
        assert item["v"]["S"] == value
    assert endpoints(cluster.dax_ports[2])
