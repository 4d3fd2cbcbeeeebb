"""Nodes sharing one Valkey: staleness across nodes, and memory of a working set read through three nodes.

    .venv/bin/python -m benchmarks.bench_scaleout [--quick]

(1) Staleness: node A writes a key that node B holds in its L1; B is read in a
tight loop (keep-alive HTTP) until it answers the new value. How long after A's
acknowledgement B still answered the old value (to the start of its first new
answer), p50/p99 (target p99 ≤ 20 ms). Same-run yardstick: the same loop
against A itself (read-your-writes: 0 by design).
(2) Memory: N 1 KB items (100,000; 20,000 with --quick) read through three
nodes with ``--cache-size`` smaller than the set: Valkey's ``used_memory``, key
count and ``dx:i:`` item keys (stored once, not three times), and each node's
RSS against its L1 size (yardstick: an idle node's RSS, same run).
(3) Per-operation cost of the shared tier: Valkey's CPU per command during (2)
(from /proc), for docs/scaling.md's capacity model.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import valkey

from benchmarks.common import GETITEM_HEADERS, DaxdNode, DynamoDBLocal, client, cpu_seconds, create_table, make_item
from daxd.tier.server import EmbeddedValkey
from tests.harness import free_port

PUT_HEADERS = {**GETITEM_HEADERS, "X-Amz-Target": "DynamoDB_20120810.PutItem"}
MiB = 1 << 20


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Raw:
    """A keep-alive HTTP connection sending raw GetItem/PutItem bodies (no SDK cost in the loop)."""

    def __init__(self, port: int, table: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.table = table

    def get(self, pk: str) -> bytes:
        body = b'{"TableName":"%s","Key":{"pk":{"S":"%s"},"sk":{"N":"0"}}}' % (self.table.encode(), pk.encode())
        self.connection.request("POST", "/", body, GETITEM_HEADERS)
        answer = self.connection.getresponse()
        data = answer.read()
        assert answer.status == 200, data
        return data

    def put(self, pk: str, value: str) -> None:
        item = {"pk": {"S": pk}, "sk": {"N": "0"}, "v": {"S": value}}
        self.connection.request("POST", "/", orjson.dumps({"TableName": self.table, "Item": item}), PUT_HEADERS)
        answer = self.connection.getresponse()
        data = answer.read()
        assert answer.status == 200, data


def staleness(writer: Raw, reader: Raw, writes: int) -> list[float]:
    """Seconds the reader kept answering the old value after the writer's acknowledgement.

    Measured to the *start* of the reader's first read that answers the new
    value (0 when the very first read after the acknowledgement does): the
    length of that read itself (a refill from Valkey or DynamoDB) is not
    staleness, and reads of the old value are L1 hits, so the loop polls
    every few hundred microseconds.
    """
    keys = [f"stale#{n:05d}" for n in range(writes)]
    for key in keys:
        writer.put(key, "old")
    for key in keys:  # the reader holds every key in its L1 (read twice: the second is an L1 hit)
        reader.get(key)
        reader.get(key)
    delays = []
    for key in keys:  # one write per key: no key is written twice within the consistent window
        token = uuid.uuid4().hex
        writer.put(key, token)
        acknowledged = time.perf_counter()
        while True:
            started = time.perf_counter()
            if token.encode() in reader.get(key):
                break
        delays.append(max(0.0, started - acknowledged))
    return delays


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def fill_table(direct: Any, table: str, count: int) -> None:
    def batch(start: int) -> None:
        requests = [{"PutRequest": {"Item": make_item(f"user#{n:06d}")}} for n in range(start, min(start + 25, count))]
        pending: dict[str, Any] = {table: requests}
        while pending:
            pending = direct.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(batch, range(0, count, 25)))


async def read_all(port: int, table: str, count: int, connections: int = 16) -> None:
    """GetItem of every item once, over ``connections`` keep-alive connections (raw HTTP/1.1)."""
    queue = iter(range(count))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = "".join(f"{k}: {v}\r\n" for k, v in GETITEM_HEADERS.items())
        for n in queue:
            body = b'{"TableName":"%s","Key":{"pk":{"S":"user#%06d"},"sk":{"N":"0"}}}' % (table.encode(), n)
            writer.write(f"POST / HTTP/1.1\r\nHost: b\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            headers = await reader.readuntil(b"\r\n\r\n")
            assert headers.startswith(b"HTTP/1.1 200"), headers
            length = int(headers.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer writes, 20,000 items instead of 100,000")
    args = parser.parse_args()
    writes, items = (100, 20_000) if args.quick else (500, 100_000)
    l1 = "16MiB" if args.quick else "64MiB"
    ddl = DynamoDBLocal()
    direct = client(ddl.endpoint)
    table = create_table(direct, f"Scale-{uuid.uuid4().hex[:6]}")
    server = EmbeddedValkey(port=free_port())
    common = ("--item-ttl", "3600", "--log-level", "warning", "--streams", "off", "--valkey", server.url,
              "--cache-size", l1)
    nodes = [DaxdNode(ddl.endpoint, *common, "--node-id", f"n{i}") for i in range(3)]
    idle = DaxdNode(ddl.endpoint, "--log-level", "warning", "--streams", "off", "--cache-size", l1)
    try:
        a, b = Raw(nodes[0].ports["http"], table), Raw(nodes[1].ports["http"], table)
        print(f"## Staleness: a write through node A, read in a loop on node B ({writes} writes, one key each), "
              f"load average {load_average()}\n")
        across = staleness(a, b, writes)
        same = staleness(a, Raw(nodes[0].ports["http"], table), writes)
        print("| path | p50 ms | p99 ms | max ms |\n|---|---|---|---|")
        for name, values in (("A writes, B reads (across nodes)", across), ("A writes, A reads (yardstick)", same)):
            print(f"| {name} | {statistics.median(values) * 1e3:.2f} | {percentile(values, 0.99) * 1e3:.2f} "
                  f"| {max(values) * 1e3:.2f} |")
        print(f"\nacross nodes p99 {percentile(across, 0.99) * 1e3:.2f} ms (target ≤ 20 ms); "
              f"load average after: {load_average()}")

        print(f"\n## Memory: {items:,} items of ~1 KB read through 3 nodes (--cache-size {l1} each)\n")
        started = time.perf_counter()
        fill_table(direct, table, items)
        print(f"(table filled in {time.perf_counter() - started:.0f} s)")
        store = valkey.Valkey(port=server.port)
        assert server.process is not None
        valkey_pid = server.process.pid

        def valkey_figures() -> tuple[float, int]:
            return cpu_seconds(valkey_pid), int(store.info("stats")["total_commands_processed"])

        phases = []
        for node in nodes:
            cpu, commands = valkey_figures()
            started = time.perf_counter()
            asyncio.run(read_all(node.ports["http"], table, items))
            elapsed = time.perf_counter() - started
            cpu_after, commands_after = valkey_figures()
            phases.append((elapsed, cpu_after - cpu, commands_after - commands))
        writer = Raw(nodes[0].ports["http"], table)
        cpu, commands = valkey_figures()
        for n in range(writes * 4):
            writer.put(f"write#{n:06d}", "x")
        cpu_after, commands_after = valkey_figures()
        per_write = ((cpu_after - cpu) / (writes * 4), (commands_after - commands) / (writes * 4))
        info = store.info()
        item_keys = sum(1 for _ in store.scan_iter(match=b"dx:i:*", count=1000))
        print("| figure | value |\n|---|---|")
        print(f"| items read through each node | {items:,} |")
        for name, (elapsed, cpu_used, count) in zip(("node 1 (miss: DynamoDB, then the L2 fill)",
                                                     "node 2 (L2 hits)", "node 3 (L2 hits)"), phases, strict=True):
            print(f"| {name}: read time / Valkey commands per item / Valkey CPU per item | {elapsed:.1f} s "
                  f"({items / elapsed:,.0f}/s) / {count / items:.2f} / {cpu_used / items * 1e6:.1f} µs |")
        print(f"| a PutItem through node 1 ({writes * 4} writes, 3 nodes tracking): Valkey commands / CPU per write "
              f"| {per_write[1]:.2f} / {per_write[0] * 1e6:.1f} µs |")
        print(f"| Valkey keys in all / item keys (dx:i:) | {store.dbsize():,} / {item_keys:,} |")
        print(f"| Valkey used_memory | {int(info['used_memory']) / MiB:.1f} MiB "
              f"({int(info['used_memory']) / max(item_keys, 1):.0f} B per item key) |")
        idle_rss = rss(idle.process.pid)
        for i, node in enumerate(nodes):
            admin = http.client.HTTPConnection("127.0.0.1", node.ports["admin"], timeout=10)
            admin.request("GET", "/stats.json")
            cache = orjson.loads(admin.getresponse().read())["cache"]
            admin.close()
            size = rss(node.process.pid)
            print(f"| node {i + 1}: RSS / L1 bytes held / idle node's RSS | {size / MiB:.0f} MiB / "
                  f"{cache['bytes'] / MiB:.0f} MiB / {idle_rss / MiB:.0f} MiB: RSS - idle = "
                  f"{(size - idle_rss) / MiB:.0f} MiB = {(size - idle_rss) / max(cache['capacity'], 1):.2f}x "
                  f"--cache-size |")
        print(f"\nstored once: {item_keys:,} item keys for {items:,} items read through 3 nodes "
              f"(+{writes + writes * 4} keys written by the staleness and write runs); "
              f"load average after: {load_average()}")
    finally:
        for node in [*nodes, idle]:
            node.stop()
        server.stop()
        ddl.stop()


if __name__ == "__main__":
    main()
