"""Streams benchmark: how soon a write that bypasses daxd is served, right after a table's first read.

Each trial is issue 9's scenario on a fresh table with a stream: put ``v = 1``
straight into DynamoDB Local, read it through every node (now cached), wait
``delay``, put ``v = 2`` straight into DynamoDB Local, then poll every node
every 50 ms until all serve ``v = 2``. Reported: seconds from the bypass
write's acknowledgement to the last node's first ``v = 2``, p50/p99/max, and
trials still stale after 10 s (before issue 9 most trials were stale until
the item TTL).

- **first read**: delays spread evenly over 0-2 s after the first read,
  while the table's shard readers are being positioned;
- **yardstick**: the same with delays of 5-7 s, when the readers have long
  been positioned: the steady-state stream delay (the tailer's 0.25 s poll of
  GetRecords plus the fan-out). The ratio first read / yardstick is printed.
- **floor of positioning**: DescribeTable, DescribeStream and GetShardIterator
  made straight to DynamoDB Local with boto3 for ``BATCH`` fresh tables at
  once: a write made before the reader holds its iterator cannot be served
  sooner than this (the node then drops what it cached of the table).

Trials run 10 at a time (their polling is load on the same two cores), on
one node and on a cluster of three sharing one Valkey (stream shards leased).

    python -m benchmarks.bench_streams [--quick] [--nodes 1|3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import boto3

from benchmarks.bench_cluster import start_cluster
from benchmarks.common import DaxdNode, DynamoDBLocal
from tests.gap_trials import pooled, run_trials, spread
from tests.harness import CREDENTIALS, create_table

GIVE_UP = 10.0
POLL = 0.05
BATCH = 10


def measure(ddl: DynamoDBLocal, nodes: list[DaxdNode], trials: int, first: float) -> list[float | None]:
    """``trials`` trials with delays spread over ``first`` .. ``first`` + 2 s, ``BATCH`` at a time."""
    delays = [first + d for d in spread(trials, 2.0)]
    results: list[float | None] = []
    for start in range(0, trials, BATCH):
        results += run_trials(ddl.endpoint, [n.endpoint for n in nodes], delays[start:start + BATCH], GIVE_UP, POLL)
    return results


def positioning(ddl: DynamoDBLocal) -> list[float]:
    """Seconds for DescribeTable + DescribeStream + GetShardIterator(LATEST), ``BATCH`` tables at once."""
    ddb = pooled(ddl.endpoint, BATCH + 2)
    streams = boto3.client("dynamodbstreams", endpoint_url=ddl.endpoint, **CREDENTIALS)
    tables = [create_table(ddb, range_key=None, stream=True) for _ in range(BATCH)]

    def position(table: str) -> float:
        started = time.monotonic()
        arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        shards = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
        for shard in shards:
            streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="LATEST")
        return time.monotonic() - started

    try:
        for table in tables:
            ddb.put_item(TableName=table, Item={"pk": {"S": "k"}})  # a shard to position in
        with ThreadPoolExecutor(BATCH) as pool:
            return list(pool.map(position, tables))
    finally:
        for table in tables:
            ddb.delete_table(TableName=table)


def summary(results: list[float | None]) -> tuple[float, float, float, int]:
    """p50, p99 and max in ms of the trials that converged, and how many never did."""
    seen = sorted(r for r in results if r is not None)
    p99 = seen[min(len(seen) - 1, int(len(seen) * 0.99))]
    return statistics.median(seen) * 1e3, p99 * 1e3, seen[-1] * 1e3, len(results) - len(seen)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--nodes", type=int, choices=(1, 3), action="append", help="only these configurations")
    args = parser.parse_args()
    trials = 20 if args.quick else 60
    print(f"| nodes | writes issued | trials | p50 ms | p99 ms | max ms | stale after {GIVE_UP:.0f} s |")
    print("|---|---|---|---|---|---|---|")
    for size in args.nodes or (1, 3):
        ddl = DynamoDBLocal()  # a fresh one per configuration: the same starting state for both
        valkey = None
        if size == 1:
            nodes = [DaxdNode(ddl.endpoint)]
        else:
            nodes, valkey = start_cluster(ddl.endpoint, 3)
        try:
            measure(ddl, nodes, BATCH, 0.0)  # warm-up, not counted: DynamoDB Local's JIT, the nodes' pools
            first = summary(measure(ddl, nodes, trials, 0.0))
            floor = summary(list(positioning(ddl)) + list(positioning(ddl))) if size == 1 else None
            steady = summary(measure(ddl, nodes, trials // 2, 5.0))
        finally:
            for node in nodes:
                node.stop()
            if valkey is not None:
                valkey.stop()
            ddl.stop()
        for label, (p50, p99, worst, stale) in (("0-2 s after the first read", first),
                                                ("5-7 s after (yardstick)", steady)):
            count = trials if label.startswith("0") else trials // 2
            print(f"| {size} | {label} | {count} | {p50:.0f} | {p99:.0f} | {worst:.0f} | {stale} |")
        print(f"| {size} | ratio first read / yardstick | | {first[0] / steady[0]:.2f} | "
              f"{first[1] / steady[1]:.2f} | | |")
        if floor is not None:  # the same DynamoDB path whatever the number of nodes
            print(f"| {size} | floor: positioning {BATCH} readers straight (boto3) | {2 * BATCH} | {floor[0]:.0f} | "
                  f"{floor[1]:.0f} | {floor[2]:.0f} | |", flush=True)


if __name__ == "__main__":
    main()
