"""Worker processes and the shared tier: today's single process as the yardstick, same run.

    .venv/bin/python -m benchmarks.bench_workers [--quick]

(1) Cached GetItem throughput over HTTP under wrk (-t2 -c64) and over DAX
(64 connections, bench_dax's load generator), and server CPU per hit summed
over every process of the node (workers, supervisor and the embedded
valkey-server): today's single process (no flags: ``--workers 1``, no Valkey),
``--valkey`` (one process with the shared tier: L1 hits) and ``--workers 2``.
Targets (issue 12): per-hit CPU within 15% of today's; an L1 hit ≥ 0.9x today's.
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

from benchmarks.bench_dax import _run_uvloop, get_item_request, reply_size
from benchmarks.bench_http import load, wrk
from benchmarks.common import GETITEM_HEADERS, DaxdNode, DynamoDBLocal, client, cpu_seconds, create_table, warm_up
from daxd.tier.server import EmbeddedValkey


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


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


def dax_throughput(node: DaxdNode, table: str, seconds: float) -> tuple[float, float]:
    """Cached GetItem over DAX: requests/s and server CPU µs per hit summed over the node's processes."""
    request = get_item_request(table, "user#000001")
    size = 0
    for _ in range(8):  # several connections: each worker's L1 gets the item before the measurement
        size = reply_size(node.ports["dax"], request)
    pids = node_pids(node)
    before = sum(cpu_seconds(p) for p in pids)
    count, elapsed = _run_uvloop(node.ports["dax"], request, size, 64, 50_000_000, seconds)
    return count / elapsed, (sum(cpu_seconds(p) for p in pids) - before) / count * 1e6


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
        print(f"## Cached GetItem over HTTP (wrk -t2 -c64 -d{seconds}s) and DAX (64 connections), "
              f"2-core machine, load average {load_average()}\n")
        print("| node | HTTP req/s | p50 µs | p99 µs | CPU µs/hit | DAX req/s | DAX CPU µs/hit "
              "| HTTP req/s vs today | HTTP CPU/hit vs today | DAX CPU/hit vs today |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        runs: dict[str, list[tuple[float, ...]]] = {name: [] for name in nodes}
        for round_ in range(rounds):  # interleaved: a shared machine's load drifts between runs
            order = list(nodes.items()) if round_ % 2 == 0 else list(reversed(nodes.items()))
            for name, node in order:
                http = throughput(node, table, seconds, warm=round_ == 0) if shutil.which("wrk") else (0, 0, 0, 0)
                runs[name].append((*http, *dax_throughput(node, table, seconds)))
        base: tuple[float, ...] | None = None
        for name, results in runs.items():
            figures = tuple(statistics.median(r[i] for r in results) for i in range(6))
            base = base or figures
            rps, p50, p99, cpu, dax_rps, dax_cpu = figures
            print(f"| {name} | {rps:,.0f} | {p50:.0f} | {p99:.0f} | {cpu:.1f} | {dax_rps:,.0f} | {dax_cpu:.1f} "
                  f"| {rps / max(base[0], 1):.2f}x | {cpu / max(base[3], 1e-9):.2f}x | {dax_cpu / base[5]:.2f}x |")
        print(f"\n(median of {rounds} interleaved runs each; target: CPU/hit of --workers 2 ≤ 1.15x today's; "
              f"load average after: {load_average()})")
        if not shutil.which("wrk"):
            print("(wrk not installed: `apt-get install wrk`; HTTP columns are 0)")

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
        print(f"\nL1 hit vs today: {statistics.median(rows['today: hit']) / l1:.2f}x (speed ratio, target ≥ 0.9x); "
              f"L2 hit p50 {l2:.0f} µs, {l2 - l1:+.0f} µs over an L1 hit (load average {load_average()})")
        with urllib.request.urlopen(tiered.admin + "/ready", timeout=5) as answer:
            print(f"(--valkey node /ready: {answer.read().decode()})")

        print("\n## L2 hit path client: one MGET of 3 keys (1 KB item) over a unix socket, p50 µs\n")
        try:
            import redis  # noqa: F401
        except ImportError:
            print("(redis-py not installed: `pip install redis hiredis` for this comparison)")
        else:
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
