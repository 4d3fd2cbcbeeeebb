"""Failed requests of the official Python DAX client during a rolling restart and a SIGKILL.

    .venv/bin/python -m benchmarks.bench_rolling [--threads 4]

Three daxd nodes share one Valkey in front of DynamoDB Local. The official
Python DAX client (``amazondax``, its defaults: endpoints refreshed every
4 s ± 0.5 s, 2 retries) runs a put+get loop in ``--threads`` threads, every
pair on a new key. Measured in the same run:

1. a rolling restart of the three nodes, one at a time (SIGTERM, wait for the
   exit, start it again on the same ports, wait until every node advertises
   it and the client sends to it), with daxd's default leave period;
2. the same with ``--leave-period 0``: leave the membership and drain at
   once, as daxd did before the leave period (the yardstick);
3. a SIGKILL of one node: failures until the client stops sending to it.

A pair *fails* when the put or the get raised after the client's retries;
*wrong* when the get did not return the value just put.
"""

from __future__ import annotations

import argparse
import signal
import time
from typing import Any

from benchmarks.common import DynamoDBLocal, client, create_table
from daxd.config import DEFAULT_LEAVE_PERIOD
from daxd.tier.server import EmbeddedValkey
from tests.harness import free_port, wait_until
from tests.tier.rolling import PythonLoop, Ring, advertised, restart


def rolling(upstream: str, ddb: Any, leave_period: float | None, threads: int) -> dict[str, Any]:
    """One rolling restart of a fresh 3-node ring under the loop; the loop's counts."""
    server = EmbeddedValkey(port=free_port())
    ring = Ring(upstream, server.url, leave_period=leave_period)
    loop = PythonLoop(ring.dax_ports, create_table(ddb), threads)
    try:
        wait_until(lambda: loop.ok >= 50, 60, "the loop to run")
        started, before = time.monotonic(), (loop.ok, loop.failed)
        per_node = []
        for index in range(3):
            failed = loop.failed
            restart(ring, index)
            per_node.append(loop.failed - failed)
        time.sleep(5)  # more than one client refresh after the last restart
        return {"ok": loop.ok - before[0], "failed": loop.failed - before[1], "wrong": loop.wrong,
                "per_node": per_node, "seconds": time.monotonic() - started,
                "errors": sorted({error.split(":")[0] for _, error in loop.failures})}
    finally:
        loop.close()
        ring.stop()
        server.stop()


def killed(upstream: str, ddb: Any, threads: int) -> dict[str, Any]:
    """SIGKILL one node of a fresh ring under the loop; failures and how long they went on."""
    server = EmbeddedValkey(port=free_port())
    ring = Ring(upstream, server.url)
    loop = PythonLoop(ring.dax_ports, create_table(ddb), threads)
    try:
        wait_until(lambda: loop.ok >= 50, 60, "the loop to run")
        before_ok, before_failed = loop.ok, loop.failed
        killed_at = time.time()
        ring.node(1).stop(signal.SIGKILL)
        others = [p for i, p in enumerate(ring.dax_ports) if i != 1]
        wait_until(lambda: all(ring.dax_ports[1] not in advertised(p) for p in others), 20, "it to drop out")
        gone = time.time() - killed_at
        time.sleep(10)  # two client refreshes after it dropped out
        failures = [at - killed_at for at, _ in loop.failures if at >= killed_at]
        return {"ok": loop.ok - before_ok, "failed": loop.failed - before_failed, "wrong": loop.wrong,
                "dropped_out": gone, "last_failure": max(failures, default=0.0),
                "errors": sorted({error.split(":")[0] for _, error in loop.failures})}
    finally:
        loop.close()
        ring.stop()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=4, help="loop threads sharing one client (default 4)")
    args = parser.parse_args()
    ddl = DynamoDBLocal()
    try:
        ddb = client(ddl.endpoint)
        results = {f"leave period {DEFAULT_LEAVE_PERIOD:g} s (default)": rolling(ddl.endpoint, ddb, None, args.threads),
                   "--leave-period 0 (before)": rolling(ddl.endpoint, ddb, 0.0, args.threads)}
        print(f"rolling restart of 3 nodes, official Python DAX client, {args.threads} threads, put+get pairs:")
        for name, r in results.items():
            print(f"  {name:32} {r['failed']:5d} failed (per node {r['per_node']}), {r['ok']} ok, "
                  f"{r['wrong']} wrong, {r['seconds']:.0f} s; errors {r['errors']}")
        k = killed(ddl.endpoint, ddb, args.threads)
        print(f"SIGKILL of 1 of 3 nodes: {k['failed']} failed, {k['ok']} ok, {k['wrong']} wrong in the next "
              f"{k['dropped_out'] + 10:.0f} s; dropped out of endpoints after {k['dropped_out']:.1f} s, last failure "
              f"{k['last_failure']:.1f} s after the kill; errors {k['errors']}")
    finally:
        ddl.stop()


if __name__ == "__main__":
    main()
