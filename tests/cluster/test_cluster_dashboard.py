"""The dashboard's cluster section and the cluster gauges, from a real three-node cluster."""

from __future__ import annotations

from typing import Any

import urllib3

from tests.cluster.conftest import Cluster, admin_json
from tests.harness import create_table, wait_until


def test_stats_json_shows_every_node_with_health_hit_ratio_and_stream_readers(cluster: Cluster, ddb: Any) -> None:
    table = create_table(ddb, range_key=None, stream=True)
    for index in range(3):
        api = cluster.node(index).client()
        api.put_item(TableName=table, Item={"pk": {"S": f"k{index}"}})
        api.get_item(TableName=table, Key={"pk": {"S": f"k{index}"}})
        api.get_item(TableName=table, Key={"pk": {"S": f"k{index}"}})

    def nodes() -> list[dict[str, Any]]:
        return list(admin_json(cluster.node(0), "/stats.json")["cluster"]["nodes"])

    # Every node healthy, each with its figures, and the stream's shards read by exactly one node in all.
    wait_until(lambda: [n["health"] for n in nodes()] == ["self", "healthy", "healthy"]
               and all(n["hit_ratio"] is not None for n in nodes())
               and sum(n["stream_readers"] for n in nodes()) >= 1, 30, "every node's figures")
    document = admin_json(cluster.node(0), "/stats.json")
    assert document["cluster"]["clustered"] is True
    assert {n["node"] for n in document["cluster"]["nodes"]} == {"n1", "n2", "n3"}
    metrics = urllib3.request("GET", cluster.node(0).admin + "/metrics", timeout=5).data
    assert b"daxd_cluster_nodes 3.0" in metrics and b"daxd_cluster_nodes_healthy 3.0" in metrics
