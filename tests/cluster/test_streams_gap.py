"""Issue 9 on three nodes: a bypass write right after a table's first reads reaches every node's cache.

The shard of each fresh table is read by one node; the others cached the item
before that node had positioned its reader, so they must drop it when the
reader tells them it holds a position (``distrust``), or they would serve
``v = 1`` until the TTL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.cluster.conftest import Cluster
from tests.gap_trials import run_trials, spread
from tests.harness import DynamoDBLocal


def test_a_bypass_write_right_after_the_first_reads_reaches_every_node(
        cluster: Cluster, dynamodb_local: DynamoDBLocal, wait_for_members: Callable[..., Any]) -> None:
    for port in cluster.dax_ports:
        wait_for_members(port, 3)
    delays = spread(20, 1.5)
    results = run_trials(dynamodb_local.endpoint, [cluster.node(i).endpoint for i in range(3)], delays, give_up=3.0)
    assert None not in results, f"trials still stale on some node after 3 s (delays {delays}): {results}"
