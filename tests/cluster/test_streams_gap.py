"""Issue 9 on three nodes: a bypass write right after a table's first reads reaches every node's cache.

The shard of each fresh table is read by the one node holding its lease in
Valkey; the others cached the item before that node had positioned its
reader, so they must drop it (and the shared tier its copy) when the reader
holds a position (``distrust``, through Valkey), or they would serve
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
    # On top of one node's positioning, the shard's lease is taken in a round (0.2-1 s); on this loaded
    # 2-core box 20 trials on three nodes then take up to ~3 s. A gap would leave v = 1 for the 300 s TTL.
    results = run_trials(dynamodb_local.endpoint, [cluster.node(i).endpoint for i in range(3)], delays, give_up=5.0)
    assert None not in results, f"trials still stale on some node after 5 s (delays {delays}): {results}"
