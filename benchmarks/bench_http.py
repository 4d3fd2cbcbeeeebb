"""DynamoDB JSON API: boto3 -> DynamoDB Local directly vs boto3 -> daxd, same run.

    .venv/bin/python -m benchmarks.bench_http [--quick]

Measures (1) client-observed latency of cached GetItem (1 KB item), Query (10
items) and BatchGetItem (100 keys) through boto3; (2) what a miss costs over
going direct, with a lean keep-alive client so boto3's ~600 µs do not hide it;
(3) server throughput of cached GetItem under wrk with 64 connections, and
server CPU per request. Needs wrk (Debian package `wrk`) for (3).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import re
import shutil
import statistics
import subprocess
import time
import uuid
from typing import Any

from benchmarks.common import (
    GETITEM_HEADERS,
    ROOT,
    DaxdNode,
    DynamoDBLocal,
    client,
    cpu_seconds,
    create_table,
    latency,
    make_item,
    percentiles,
    script_server,
    warm_up,
)


def load(direct: Any, table: str) -> None:
    items = [make_item(f"user#{i:06d}") for i in range(1000)] + [make_item("q10", i) for i in range(10)]
    for start in range(0, len(items), 25):
        direct.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": it}} for it in items[start:start + 25]]})


def boto3_latency(direct: Any, cached: Any, table: str, runs: int, calls: int) -> list[tuple[str, float, float, float, float]]:
    keys = itertools.cycle([{"pk": {"S": f"user#{i:06d}"}, "sk": {"N": "0"}} for i in range(1000)])
    batch = [{"pk": {"S": f"user#{i:06d}"}, "sk": {"N": "0"}} for i in range(100)]
    query = {"TableName": table, "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "q10"}}}
    cases = {
        "GetItem (1 KB)": lambda c: c.get_item(TableName=table, Key=next(keys)),
        "Query (10 items)": lambda c: c.query(**query),
        "BatchGetItem (100 keys)": lambda c: c.batch_get_item(RequestItems={table: {"Keys": batch}}),
    }
    rows = []
    for name, case in cases.items():
        for _ in range(1000 if name.startswith("GetItem") else 1):
            case(cached)  # warm the cache
        d50, d99 = latency(lambda case=case: case(direct), runs=runs, calls=calls)  # type: ignore[misc]
        c50, c99 = latency(lambda case=case: case(cached), runs=runs, calls=calls)  # type: ignore[misc]
        rows.append((name, d50, d99, c50, c99))
    return rows


def raw_getitem(port: int, table: str) -> Any:
    """One sequential GetItem over a kept-alive ``http.client`` connection (a lean client: boto3's
    ~600 µs would hide what daxd costs)."""
    connection = http.client.HTTPConnection("127.0.0.1", port)
    counter = itertools.count()

    def call() -> None:
        body = b'{"TableName":"%s","Key":{"pk":{"S":"user#%06d"},"sk":{"N":"0"}}}' % (table.encode(), next(counter) % 1000)
        connection.request("POST", "/", body, GETITEM_HEADERS)
        response = connection.getresponse()
        assert response.status == 200, response.read()
        response.read()

    return call


def paired_latency(calls: dict[str, Any], runs: int, per_run: int) -> dict[str, list[float]]:
    """Each path's p50 per run, the paths taking turns within every run.

    Taking turns pairs each miss run with a direct run measured moments apart,
    so drift of the shared machine (DynamoDB Local's JIT and GC, neighbours)
    cancels out of the overhead instead of landing on one side of it.
    """
    for call in calls.values():
        for _ in range(200):
            call()
    p50s: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            samples = []
            for _ in range(per_run):
                started = time.perf_counter()
                call()
                samples.append(time.perf_counter() - started)
            p50s[name].append(percentiles(samples)[0])
    return p50s


def wrk(port: int, pid: int, table: str, seconds: int) -> tuple[float, float, float, float]:
    """Requests/s, p50 µs, p99 µs and server CPU µs per request under wrk -c64."""
    before = cpu_seconds(pid)
    output = subprocess.run(
        ["wrk", "-t2", "-c64", f"-d{seconds}s", "-s", str(ROOT / "benchmarks" / "getitem.lua"), f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, check=True, env={"TABLE": table, "NKEYS": "1000", "PATH": "/usr/bin:/bin"},
        timeout=seconds + 30).stdout
    cpu = cpu_seconds(pid) - before
    match = re.search(r"RESULT requests=(\d+) duration_us=(\d+) errors=(\d+) non2xx=(\d+) p50_us=(\d+) p99_us=(\d+)", output)
    assert match, output
    requests, duration, errors, non2xx, p50, p99 = (int(g) for g in match.groups())
    assert errors == 0 and non2xx == 0, output
    return requests / (duration / 1e6), p50, p99, cpu / requests * 1e6


#: A canned-reply httptools+uvloop server: the floor any Python HTTP front can reach on this machine.
_FLOOR_SERVER = """
import asyncio, sys, httptools, uvloop
BODY = b'{"Item":{"pad":{"S":"' + b"x" * 1100 + b'"}}}'
REPLY = b"HTTP/1.1 200 OK\\r\\nContent-Type: application/x-amz-json-1.0\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(BODY) + BODY
class Canned(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.parser = transport, httptools.HttpRequestParser(self)
    def data_received(self, data):
        self.parser.feed_data(data)
    def on_message_complete(self):
        self.transport.write(REPLY)
"""


#: A byte relay in front of DynamoDB Local (uvloop, no parsing): the cheapest any extra hop can be.
_RELAY_SERVER = """
import asyncio, sys, uvloop
UPSTREAM = int(sys.argv[1])
class Back(asyncio.Protocol):
    def __init__(self, front):
        self.front = front
    def data_received(self, data):
        self.front.write(data)
class Front(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.back, self.pending = transport, None, []
        asyncio.ensure_future(self.connect())
    async def connect(self):
        self.back, _ = await asyncio.get_running_loop().create_connection(
            lambda: Back(self.transport), "127.0.0.1", UPSTREAM)
        for data in self.pending:
            self.back.write(data)
    def data_received(self, data):
        if self.back is None:
            self.pending.append(data)
        else:
            self.back.write(data)
"""


def relay_server(upstream_port: int) -> tuple[subprocess.Popen[str], int]:
    return script_server(_RELAY_SERVER, "Front", str(upstream_port))


def floor_server() -> tuple[subprocess.Popen[str], int]:
    return script_server(_FLOOR_SERVER, "Canned")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer runs and a shorter wrk")
    parser.add_argument("--throughput-only", action="store_true", help="skip the latency sections")
    args = parser.parse_args()
    runs, calls, seconds = (3, 200, 5) if args.quick else (5, 400, 10)

    ddl = DynamoDBLocal()
    direct = client(ddl.endpoint)
    table = create_table(direct, f"PerfTab-{uuid.uuid4().hex[:6]}")
    load(direct, table)
    warm_up(ddl.port, table)
    node = DaxdNode(ddl.endpoint, "--item-ttl", "3600", "--query-ttl", "3600", "--cache-size", "2GiB",
                    "--log-level", "warning")
    missing = DaxdNode(ddl.endpoint, "--item-ttl", "0.000001", "--log-level", "warning")  # every read is a miss
    try:
        if not args.throughput_only:
            latency_sections(direct, node, missing, ddl, table, runs, calls)
        if shutil.which("wrk"):
            throughput_section(ddl, node, table, seconds)
        else:
            print("\n(wrk not installed: `apt-get install wrk` for the throughput figures)")
    finally:
        node.stop()
        missing.stop()
        ddl.stop()


def latency_sections(direct: Any, node: DaxdNode, missing: DaxdNode, ddl: DynamoDBLocal, table: str,
                     runs: int, calls: int) -> None:
    """Client-observed latency through boto3, and what a miss costs over going direct."""
    print("## boto3 latency, µs (median of per-run p50/p99)\n")
    print("| operation | direct p50 | direct p99 | daxd hit p50 | daxd hit p99 | hit/direct p50 |")
    print("|---|---|---|---|---|---|")
    for name, d50, d99, c50, c99 in boto3_latency(direct, node.client(), table, runs, calls):
        print(f"| {name} | {d50:.0f} | {d99:.0f} | {c50:.0f} | {c99:.0f} | {c50 / d50:.2f}x |")

    print("\n## Miss cost, lean keep-alive client (http.client), GetItem 1 KB, µs\n")
    relay, relay_port = relay_server(ddl.port)
    try:
        paths = {"direct to DynamoDB Local": raw_getitem(ddl.port, table),
                 "through a byte relay (no parsing): the floor of any extra hop": raw_getitem(relay_port, table),
                 "through daxd, miss": raw_getitem(missing.ports["http"], table),
                 "through daxd, hit": raw_getitem(node.ports["http"], table)}
        p50s = paired_latency(paths, runs * 3, calls)
    finally:
        relay.kill()
        relay.wait()
    print("| path | median of per-run p50 | per-run p50s |\n|---|---|---|")
    for name, values in p50s.items():
        print(f"| {name} | {statistics.median(values):.0f} | {' '.join(f'{v:.0f}' for v in values)} |")
    overheads = [m - d for m, d in zip(p50s["through daxd, miss"], p50s["direct to DynamoDB Local"], strict=True)]
    direct = statistics.median(p50s["direct to DynamoDB Local"])
    relayed = [r - d for r, d in zip(p50s["through a byte relay (no parsing): the floor of any extra hop"],
                                     p50s["direct to DynamoDB Local"], strict=True)]
    print(f"\nmiss overhead (miss p50 - direct p50 of the same run): median **{statistics.median(overheads):+.0f} µs** "
          f"over {len(overheads)} runs, spread {min(overheads):+.0f} to {max(overheads):+.0f} (target ≤ +200 µs); "
          f"hit/direct p50 {statistics.median(p50s['through daxd, hit']) / direct:.2f}x; the byte relay's "
          f"overhead: median {statistics.median(relayed):+.0f} µs")


def throughput_section(ddl: DynamoDBLocal, node: DaxdNode, table: str, seconds: int) -> None:
    print(f"\n## Throughput, cached GetItem over HTTP, wrk -t2 -c64 -d{seconds}s\n")
    print("| server | req/s | p50 µs | p99 µs | server CPU µs/req |\n|---|---|---|---|---|")
    floor, floor_port = floor_server()
    results = {}
    try:
        for name, port, pid in (("DynamoDB Local", ddl.port, ddl.process.pid),
                                ("daxd (hits)", node.ports["http"], node.process.pid),
                                ("floor: canned-reply httptools server", floor_port, floor.pid)):
            rps, p50, p99, cpu = results[name] = wrk(port, pid, table, seconds)
            print(f"| {name} | {rps:,.0f} | {p50} | {p99} | {cpu:.1f} |")
    finally:
        floor.terminate()
        floor.wait()
    daxd = results["daxd (hits)"][0]
    print(f"\ndaxd/DynamoDB Local: **{daxd / results['DynamoDB Local'][0]:.1f}x**; daxd/floor: "
          f"**{daxd / results['floor: canned-reply httptools server'][0]:.2f}** (target ≥ 40,000 req/s)")


if __name__ == "__main__":
    main()
