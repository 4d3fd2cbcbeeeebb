"""Worker processes and the shared tier: today's single process as the yardstick, same run.

    .venv/bin/python -m benchmarks.bench_workers [--quick]

(1) Cached GetItem throughput over HTTP under wrk (-t2 -c64), and server CPU
per hit summed over every process of the node (workers, supervisor and the
embedded valkey-server): today's single process, ``--valkey`` (one process
with the shared tier: L1 hits), ``--workers 1``... ``--workers 2``.
(2) Latency of one GetItem through a keep-alive http.client: an L1 hit
(today's process and a ``--valkey`` process) and an L2 hit (L1 dropped with
``POST /cache/flush`` before each sample: the item comes from Valkey).
(3) The L2 hit path's client library: valkey-py + libvalkey vs redis-py +
hiredis, one MGET round trip over a unix socket.
Needs wrk (Debian package ``wrk``) for (1), and redis + hiredis (pip) for (3).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import shutil
import statistics
import time
import urllib.request
import uuid
from pathlib import Path

from benchmarks.bench_http import load, wrk
from benchmarks.common import GETITEM_HEADERS, DaxdNode, DynamoDBLocal, client, cpu_seconds, create_table, warm_up
from daxd.tier.server import EmbeddedValkey


def node_pids(node: DaxdNode) -> list[int]:
    """The node's process and all its children (workers, an embedded valkey-server)."""
    pid = node.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, children)]


def throughput(node: DaxdNode, table: str, seconds: int, warm: bool) -> tuple[float, float, float, float]:
    """wrk figures with CPU per request summed over every process of the node."""
    pids = node_pids(node)
    for _ in range(4 if warm else 0):  # warm every worker's L1: each new connection may land on another worker
        connection = http.client.HTTPConnection("127.0.0.1", node.ports["http"])
        for n in range(1000):
            body = b'{"TableName":"%s","Key":{"pk":{"S":"user#%06d"},"sk":{"N":"0"}}}' % (table.encode(), n)
            connection.request("POST", "/", body, GETITEM_HEADERS)
            connection.getresponse().read()
        connection.close()
    before = sum(cpu_seconds(p) for p in pids)
    rps, p50, p99, _ = wrk(node.ports["http"], pids[0], table, seconds)
    cpu = sum(cpu_seconds(p) for p in pids) - before
    return rps, p50, p99, cpu / (rps * seconds) * 1e6


def hit_latency(node: DaxdNode, table: str, samples: int, flush_first: bool) -> float:
    """p50 µs of a GetItem; with ``flush_first`` the node's L1 is dropped before each sample."""
    body = b'{"TableName":"%s","Key":{"pk":{"S":"user#000001"},"sk":{"N":"0"}}}' % table.encode()
    connection = http.client.HTTPConnection("127.0.0.1", node.ports["http"])
    admin = http.client.HTTPConnection("127.0.0.1", node.ports["admin"])
    times = []
    for _ in range(samples):
        if flush_first:
            admin.request("POST", "/cache/flush")
            admin.getresponse().read()
        started = time.perf_counter()
        connection.request("POST", "/", body, GETITEM_HEADERS)
        connection.getresponse().read()
        times.append(time.perf_counter() - started)
    connection.close()
    admin.close()
    return statistics.median(times) * 1e6


def client_libraries(url: str, calls: int) -> dict[str, float]:
    import redis.asyncio
    import valkey.asyncio

    async def measure(module: object) -> float:
        store = module.from_url(url)  # type: ignore[attr-defined]
        await store.set(b"dx:i:t\x00k", b"1" + b'{"pk":{"S":"k"},"v":{"S":"' + b"x" * 1000 + b'"}}')
        for _ in range(200):
            await store.mget(b"dx:i:t\x00k", b"dx:g:t\x00k", b"dx:w:t\x00k")
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            await store.mget(b"dx:i:t\x00k", b"dx:g:t\x00k", b"dx:w:t\x00k")
            times.append(time.perf_counter() - started)
        await store.aclose()
        return statistics.median(times) * 1e6

    results: dict[str, list[float]] = {"valkey-py + libvalkey": [], "redis-py + hiredis": []}
    for _ in range(3):
        results["valkey-py + libvalkey"].append(asyncio.run(measure(valkey.asyncio)))
        results["redis-py + hiredis"].append(asyncio.run(measure(redis.asyncio)))
    return {name: statistics.median(values) for name, values in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    seconds, samples, rounds = (5, 300, 2) if args.quick else (10, 1000, 3)
    ddl = DynamoDBLocal()
    direct = client(ddl.endpoint)
    table = create_table(direct, f"PerfTab-{uuid.uuid4().hex[:6]}")
    load(direct, table)
    warm_up(ddl.port, table)
    valkey_server = EmbeddedValkey()
    common = ("--item-ttl", "3600", "--cache-size", "2GiB", "--log-level", "warning", "--streams", "off")
    nodes = {"today: one process, no Valkey": DaxdNode(ddl.endpoint, *common),
             "--valkey (one process, L1 + L2)": DaxdNode(ddl.endpoint, *common, "--valkey", valkey_server.url),
             "--workers 2 (embedded Valkey)": DaxdNode(ddl.endpoint, *common, "--workers", "2")}
    try:
        print(f"## Cached GetItem over HTTP, wrk -t2 -c64 -d{seconds}s, 2-core machine\n")
        print("| node | req/s | p50 µs | p99 µs | CPU µs/hit, all processes | vs today req/s | vs today CPU/hit |")
        print("|---|---|---|---|---|---|---|")
        if shutil.which("wrk"):
            runs: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in nodes}
            for round_ in range(rounds):  # interleaved: a shared machine's load drifts between runs
                order = list(nodes.items()) if round_ % 2 == 0 else list(reversed(nodes.items()))
                for name, node in order:
                    runs[name].append(throughput(node, table, seconds, warm=round_ == 0))
            base = None
            for name, results in runs.items():
                rps, p50, p99, cpu = (statistics.median(r[i] for r in results) for i in range(4))
                base = base or (rps, cpu)
                print(f"| {name} | {rps:,.0f} | {p50:.0f} | {p99:.0f} | {cpu:.1f} | {rps / base[0]:.2f}x "
                      f"| {cpu / base[1]:.2f}x |")
            print(f"\n(median of {rounds} interleaved runs each)")
        else:
            print("(wrk not installed: `apt-get install wrk`)")

        print("\n## One GetItem, keep-alive http.client, p50 µs (median of 3 runs)\n")
        today, tiered = nodes["today: one process, no Valkey"], nodes["--valkey (one process, L1 + L2)"]
        rows = {"today: hit": [hit_latency(today, table, samples, False) for _ in range(3)],
                "--valkey: L1 hit": [hit_latency(tiered, table, samples, False) for _ in range(3)],
                "--valkey: L2 hit (L1 dropped first)": [hit_latency(tiered, table, samples, True) for _ in range(3)],
                "today: miss after flush (DynamoDB Local)": [hit_latency(today, table, samples, True)
                                                             for _ in range(3)]}
        print("| path | p50 µs | runs |\n|---|---|---|")
        for name, values in rows.items():
            print(f"| {name} | {statistics.median(values):.0f} | {' '.join(f'{v:.0f}' for v in values)} |")
        l1, l2 = statistics.median(rows["--valkey: L1 hit"]), statistics.median(rows["--valkey: L2 hit (L1 dropped first)"])
        print(f"\nL1 hit vs today: {statistics.median(rows['today: hit']) / l1:.2f}x (speed ratio); "
              f"L2 hit costs {l2 - l1:+.0f} µs over an L1 hit")
        with urllib.request.urlopen(tiered.admin + "/ready", timeout=5) as answer:
            print(f"(--valkey node /ready: {answer.read().decode()})")

        print("\n## L2 hit path client: one MGET of 3 keys (1 KB item) over a unix socket, p50 µs\n")
        print("| client | p50 µs |\n|---|---|")
        for name, value in client_libraries(valkey_server.url, samples * 5).items():
            print(f"| {name} | {value:.0f} |")
    finally:
        for node in nodes.values():
            node.stop()
        valkey_server.stop()
        ddl.stop()


if __name__ == "__main__":
    main()
