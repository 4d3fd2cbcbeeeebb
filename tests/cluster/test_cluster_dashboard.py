"""The dashboard's cluster section and the cluster gauge, from three nodes sharing a Valkey."""

from __future__ import annotations

from typing import Any

import urllib3

from tests.cluster.conftest import Cluster, admin_json
from tests.harness import wait_until


def test_stats_json_shows_every_live_node(cluster: Cluster, ddb: Any) -> None:
    def nodes() -> list[dict[str, Any]]:
        return list(admin_json(cluster.node(0), "/stats.json")["cluster"]["nodes"])

    wait_until(lambda: [n["health"] for n in nodes()] == ["self", "live", "live"], 15, "every node live")
    document = admin_json(cluster.node(0), "/stats.json")
    assert document["cluster"]["clustered"] is True
    assert [n["node"] for n in document["cluster"]["nodes"]] == ["n1", "n2", "n3"]
    metrics = urllib3.request("GET", cluster.node(0).admin + "/metrics", timeout=5).data
    assert b"daxd_cluster_nodes 3.0" in metrics
