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

Trials run 10 at a time (their polling is load on the same two cores), on
one node and on a cluster of three (``--health-interval 1``, the default).

    python -m benchmarks.bench_streams [--quick]
"""

from __future__ import annotations

import argparse
import statistics

from benchmarks.bench_cluster import start_cluster
from benchmarks.common import DaxdNode, DynamoDBLocal
from tests.gap_trials import run_trials, spread

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


def summary(results: list[float | None]) -> tuple[float, float, float, int]:
    """p50, p99 and max in ms of the trials that converged, and how many never did."""
    seen = sorted(r for r in results if r is not None)
    p99 = seen[min(len(seen) - 1, int(len(seen) * 0.99))]
    return statistics.median(seen) * 1e3, p99 * 1e3, seen[-1] * 1e3, len(results) - len(seen)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    trials = 20 if args.quick else 60
    ddl = DynamoDBLocal()
    try:
        print(f"| nodes | writes issued | trials | p50 ms | p99 ms | max ms | stale after {GIVE_UP:.0f} s |")
        print("|---|---|---|---|---|---|---|")
        for size in (1, 3):
            nodes = [DaxdNode(ddl.endpoint)] if size == 1 else start_cluster(ddl.endpoint, 3, "--health-interval", "1")
            try:
                first = summary(measure(ddl, nodes, trials, 0.0))
                steady = summary(measure(ddl, nodes, trials // 2, 5.0))
            finally:
                for node in nodes:
                    node.stop()
            for label, (p50, p99, worst, stale) in (("0-2 s after the first read", first),
                                                    ("5-7 s after (yardstick)", steady)):
                count = trials if label.startswith("0") else trials // 2
                print(f"| {size} | {label} | {count} | {p50:.0f} | {p99:.0f} | {worst:.0f} | {stale} |")
            print(f"| {size} | ratio first read / yardstick | | {first[0] / steady[0]:.2f} | "
                  f"{first[1] / steady[1]:.2f} | | |")
    finally:
        ddl.stop()


if __name__ == "__main__":
    main()
