"""Hostile and careless clients beside well-behaved ones: RSS, latency, errors and file descriptors.

    .venv/bin/python -m benchmarks.bench_hostile [--duration 180] [--pipeliners 100] [--slowloris 1000]
                                                  [--idle 5000] [--bodies 10]

One node (``--cache-size 64MiB``) in front of DynamoDB Local. A well-behaved
client runs a mixed load (cached GetItems, misses, PutItems) alone first (the
yardstick), then beside a separate process of hostile clients:

* ``--pipeliners`` connections per port (HTTP and DAX) that pipeline GetItems
  of a 50 KB item and never read the answers;
* ``--slowloris`` HTTP connections trickling headers a byte a second
  (reconnecting when the node closes them);
* ``--idle`` connections, half HTTP half DAX, that connect and say nothing
  (reconnecting when closed);
* ``--bodies`` clients sending 15 MiB request bodies in a loop.

Reports the node's RSS over time (and its growth after warm-up), the
well-behaved client's p50/p99 per operation and its errors, alone and under
attack, refusals by reason, and the node's open file descriptors before,
under load, and after the hostile clients leave.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import statistics
import threading
import time
import urllib.request
import uuid
from typing import Any

import cbor2
import orjson

from benchmarks.common import DaxdNode, DynamoDBLocal, client, create_table, percentiles

MiB = 1 << 20
BIG = "x" * 50_000
PREAMBLE = (b"\x67J7yne5G\x00" + cbor2.dumps(b"0123456789abcdef") + cbor2.dumps({"UserAgent": "bench"}) + b"\x00")


def dax_request(method_id: int, *args: Any) -> bytes:
    return b"\x01" + cbor2.dumps(method_id) + b"".join(cbor2.dumps(a) for a in args)


AUTH = dax_request(1489122155, "AKID", "0" * 64, b"AWS4-HMAC-SHA256\nx\ny\nz", None, "bench")
GET_ITEM, DEFINE_KEY_SCHEMA = 263244906, -742646399


def http_request(operation: str, body: bytes) -> bytes:
    return (b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: DynamoDB_20120810.%s\r\n"
            b"Content-Type: application/x-amz-json-1.0\r\nContent-Length: %d\r\n\r\n" % (operation.encode(), len(body))
            + body)


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# -- the hostile process ------------------------------------------------------

class _Sink(asyncio.Protocol):
    """A client connection that never reads (reading paused) and notices when it is closed."""

    def __init__(self) -> None:
        self.closed = asyncio.get_running_loop().create_future()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def _connect(host: str, port: int) -> _Sink:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(_Sink, host, port)
    return protocol


async def _pipeliner(port: int, first: bytes, frame: bytes, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            sink = await _connect("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.5)
            continue
        sink.transport.write(first)
        batch = frame * max(1, 65536 // len(frame))
        while not stop.is_set() and not sink.closed.done():
            if sink.transport.get_write_buffer_size() < 65536:
                sink.transport.write(batch)
            await asyncio.sleep(0.05)
        sink.transport.abort()


async def _slowloris(port: int, stop: asyncio.Event) -> None:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000
    while not stop.is_set():
        try:
            sink = await _connect("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.5)
            continue
        for byte in head:
            if stop.is_set() or sink.closed.done():
                break
            sink.transport.write(bytes([byte]))
            await asyncio.sleep(1.0)
        sink.transport.abort()


async def _idle(port: int, first: bytes, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            sink = await _connect("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.5)
            continue
        if first:
            sink.transport.write(first)
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait([sink.closed, stopped], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        sink.transport.abort()


async def _big_bodies(port: int, table: str, stop: asyncio.Event, answers: list[int]) -> None:
    body = orjson.dumps({"TableName": table, "Item": {"pk": {"S": "huge"}, "v": {"S": "y" * (15 * MiB)}}})
    data = http_request("PutItem", body)
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(data)
            await writer.drain()
            status = await asyncio.wait_for(reader.readline(), 60)
            answers.append(int(status.split()[1]) if status else 0)
            writer.close()
        except (TimeoutError, OSError, IndexError, ValueError):
            answers.append(0)
            await asyncio.sleep(0.2)


def hostile(ports: dict[str, int], table: str, args: dict[str, int], duration: float,
            queue: multiprocessing.Queue[Any]) -> None:
    """The hostile clients, in their own process, for ``duration`` seconds."""
    async def main() -> None:
        stop = asyncio.Event()
        answers: list[int] = []
        http_get = http_request("GetItem", orjson.dumps({"TableName": table, "Key": {"pk": {"S": "big"}}}))
        dax_get = dax_request(GET_ITEM, table.encode(), b"big", None)
        dax_first = PREAMBLE + AUTH + dax_request(DEFINE_KEY_SCHEMA, table.encode())
        tasks = [asyncio.ensure_future(coro) for coro in (
            *(_pipeliner(ports["http"], b"", http_get, stop) for _ in range(args["pipeliners"])),
            *(_pipeliner(ports["dax"], dax_first, dax_get, stop) for _ in range(args["pipeliners"])),
            *(_slowloris(ports["http"], stop) for _ in range(args["slowloris"])),
            *(_idle(ports["http"], b"", stop) for _ in range(args["idle"] // 2)),
            *(_idle(ports["dax"], PREAMBLE + AUTH, stop) for _ in range(args["idle"] - args["idle"] // 2)),
            *(_big_bodies(ports["http"], table, stop, answers) for _ in range(args["bodies"])),
        )]
        await asyncio.sleep(duration)
        stop.set()
        await asyncio.wait(tasks, timeout=30)
        queue.put({"big_body_answers": sorted(set(answers)), "big_bodies": len(answers)})

    asyncio.run(main())


# -- the well-behaved client --------------------------------------------------

class Mixed:
    """A well-behaved client: 70% cached GetItems, 15% misses, 15% PutItems, sequential, through boto3."""

    def __init__(self, endpoint: str, table: str) -> None:
        self.api = client(endpoint)
        self.table = table
        self.samples: dict[str, list[float]] = {"hit": [], "miss": [], "write": []}
        self.errors: list[str] = []
        self.n = 0

    def one(self) -> None:
        self.n += 1
        kind = "write" if self.n % 20 in (3, 9, 15) else "miss" if self.n % 20 in (5, 11, 17) else "hit"
        started = time.perf_counter()
        try:
            if kind == "write":
                self.api.put_item(TableName=self.table, Item={"pk": {"S": f"w{self.n % 500}"}, "v": {"N": str(self.n)}})
            elif kind == "miss":
                self.api.get_item(TableName=self.table, Key={"pk": {"S": uuid.uuid4().hex}})
            else:
                self.api.get_item(TableName=self.table, Key={"pk": {"S": f"hot{self.n % 50}"}})
        except Exception as exc:
            self.errors.append(f"{kind}: {exc!r}"[:200])
            return
        self.samples[kind].append(time.perf_counter() - started)

    def run(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.one()
            time.sleep(0.002)

    def report(self, label: str) -> None:
        parts = []
        for kind, samples in self.samples.items():
            if samples:
                p50, p99 = percentiles(samples)
                parts.append(f"{kind} n={len(samples)} p50 {p50 / 1e3:.2f} ms p99 {p99 / 1e3:.2f} ms")
        print(f"  {label}: " + "; ".join(parts) + f"; errors {len(self.errors)} {self.errors[:3]}")


def refusals(admin: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{admin}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.findall(r'daxd_connections_refused_total\{listener="(\w+)",reason="(\w+)"\} (\S+)', text)
    return {f"{listener}/{reason}": float(value) for listener, reason, value in found}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=180.0, help="seconds under attack")
    parser.add_argument("--pipeliners", type=int, default=100)
    parser.add_argument("--slowloris", type=int, default=1000)
    parser.add_argument("--idle", type=int, default=5000)
    parser.add_argument("--bodies", type=int, default=10)
    parser.add_argument("--alone", type=float, default=20.0, help="seconds of the yardstick run")
    args = parser.parse_args()
    ddl = DynamoDBLocal()
    node = DaxdNode(ddl.endpoint, "--cache-size", "64MiB", "--log-level", "warning")
    pid = node.process.pid
    try:
        api = client(node.endpoint)
        table = create_table(api, range_key=None)
        api.put_item(TableName=table, Item={"pk": {"S": "big"}, "v": {"S": BIG}})
        for n in range(50):
            api.put_item(TableName=table, Item={"pk": {"S": f"hot{n}"}, "v": {"S": "small"}})
        alone = Mixed(node.endpoint, table)
        alone.run(3)
        alone = Mixed(node.endpoint, table)
        fds_before, rss_before = fds(pid), rss(pid)
        alone.run(args.alone)
        print(f"node: RSS {rss_before / MiB:.0f} MiB, {fds_before} fds before the hostile clients")
        alone.report("well-behaved client alone")

        queue: multiprocessing.Queue[Any] = multiprocessing.Queue()
        limits = {"pipeliners": args.pipeliners, "slowloris": args.slowloris, "idle": args.idle, "bodies": args.bodies}
        attacker = multiprocessing.Process(target=hostile, args=(node.ports, table, limits, args.duration, queue))
        attacker.start()
        under = Mixed(node.endpoint, table)
        samples: list[tuple[float, int, int]] = []
        started = time.monotonic()
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append((time.monotonic() - started, rss(pid), fds(pid)))
                stop.wait(1.0)
        sampler = threading.Thread(target=sample)
        sampler.start()
        under.run(args.duration)
        hostile_result = queue.get(timeout=120)
        attacker.join(60)
        time.sleep(3)
        stop.set()
        sampler.join()
        fds_after = fds(pid)
        deadline = time.monotonic() + 30
        while fds_after > fds_before + 2 and time.monotonic() < deadline:
            time.sleep(1)
            fds_after = fds(pid)
        print(f"hostile: {args.pipeliners} pipeliners per port, {args.slowloris} slowloris, {args.idle} idle, "
              f"{args.bodies} x 15 MiB bodies, {args.duration:.0f} s; big-body answers {hostile_result}")
        under.report("well-behaved client under attack")
        print("RSS over time (s, MiB, fds): " + ", ".join(
            f"{t:.0f}:{r / MiB:.0f}/{f}" for t, r, f in samples[::max(1, len(samples) // 20)]))
        warm = [r for t, r, _ in samples if t >= min(60.0, args.duration / 3)]
        if warm:
            # RSS swings with the big bodies in flight; growth is judged on the level it swings around:
            # the median of the first and of the last fifth of the samples after warm-up.
            fifth = max(1, len(warm) // 5)
            first, last = statistics.median(warm[:fifth]), statistics.median(warm[-fifth:])
            print(f"RSS: max {max(r for _, r, _ in samples) / MiB:.0f} MiB; after warm-up: first-fifth median "
                  f"{first / MiB:.0f} MiB, last-fifth median {last / MiB:.0f} MiB (growth {100 * (last - first) / first:+.1f}%), "
                  f"range {min(warm) / MiB:.0f}-{max(warm) / MiB:.0f} MiB")
        print(f"fds: before {fds_before}, peak {max(f for _, _, f in samples)}, after {fds_after}")
        print(f"refusals: {refusals(node.admin)}")
        if alone.samples["hit"] and under.samples["hit"]:
            ratio = statistics.median(under.samples["hit"]) / statistics.median(alone.samples["hit"])
            print(f"hit p50 under attack / alone: {ratio:.2f}x")
    finally:
        node.stop()
        ddl.stop()


if __name__ == "__main__":
    main()
