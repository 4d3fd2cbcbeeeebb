"""Shared pieces of the benchmarks: data, timing, process CPU, and the real parts.

Every benchmark measures the direct path (DynamoDB Local) and the daxd path in
the same run on the same machine, and prints ratios; absolute numbers on a
shared 2-core VM drift by 10-30% between runs (docs/benchmarks.md).
"""

from __future__ import annotations

import statistics
import string
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness import DaxdNode, DynamoDBLocal, client, create_table  # noqa: E402

__all__ = ["ROOT", "DaxdNode", "DynamoDBLocal", "client", "cpu_seconds", "create_table", "latency",
           "make_item", "percentiles", "script_server"]


def make_item(pk: str, sk: int = 0) -> dict[str, Any]:
    """A realistic ~1 KB item (DynamoDB JSON): S, N, BOOL, SS, M, L, B and a long string."""
    return {
        "pk": {"S": pk}, "sk": {"N": str(sk)},
        "name": {"S": "Ada Lovelace"}, "age": {"N": "36"}, "score": {"N": "12345.6789"},
        "active": {"BOOL": True}, "tags": {"SS": ["math", "poetry", "engines", "notes"]},
        "address": {"M": {"street": {"S": "12 St James's Square"}, "city": {"S": "London"},
                          "zip": {"S": "SW1Y 4JH"}, "geo": {"L": [{"N": "51.5074"}, {"N": "-0.1357"}]}}},
        "history": {"L": [{"M": {"at": {"N": str(1800 + i)}, "what": {"S": f"event {i}"}}} for i in range(6)]},
        "blob": {"B": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="},
        "bio": {"S": (string.ascii_letters * 9)[:433]},
    }


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 of samples (seconds) in microseconds."""
    ordered = sorted(samples)
    return (ordered[len(ordered) // 2] * 1e6, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6)


def latency(call: Callable[[], Any], *, runs: int = 5, calls: int = 300, warmup: int = 50) -> tuple[float, float]:
    """Median over ``runs`` of each run's p50 and p99 (µs) for ``calls`` sequential calls."""
    for _ in range(warmup):
        call()
    p50s, p99s = [], []
    for _ in range(runs):
        samples = []
        for _ in range(calls):
            started = time.perf_counter()
            call()
            samples.append(time.perf_counter() - started)
        p50, p99 = percentiles(samples)
        p50s.append(p50)
        p99s.append(p99)
    return statistics.median(p50s), statistics.median(p99s)


def cpu_seconds(pid: int) -> float:
    """CPU seconds a process's threads have run, kernel work in their context included.

    From ``/proc/<pid>/task/*/schedstat`` (the scheduler's nanosecond count),
    not the tick-sampled utime/stime of ``/proc/<pid>/stat``: a server that
    wakes for tens of microseconds per request is charged by whichever task
    a 4 ms tick happens to hit, which skews ping-pong loads badly.
    """
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
            continue
    return total / 1e9


#: Raw GetItem headers DynamoDB Local accepts: it only reads the credential scope, never the signature.
GETITEM_HEADERS = {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "DynamoDB_20120810.GetItem",
                   "X-Amz-Date": "20260101T000000Z",
                   "Authorization": "AWS4-HMAC-SHA256 Credential=daxdtest/20260101/us-east-1/dynamodb/aws4_request, "
                                    "SignedHeaders=host, Signature=" + "0" * 64}


def warm_up(port: int, table: str, requests: int = 5000) -> None:
    """Let a fresh DynamoDB Local's JIT settle before it is measured.

    A new JVM answers its first few thousand requests several times slower
    than it will later; measuring it cold would flatter daxd's ratios.
    """
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port)
    for n in range(requests):
        body = b'{"TableName":"%s","Key":{"pk":{"S":"user#%06d"},"sk":{"N":"0"}}}' % (table.encode(), n % 100)
        connection.request("POST", "/", body, {**GETITEM_HEADERS})
        connection.getresponse().read()
    connection.close()


_SERVE = """
async def main():
    server = await asyncio.get_running_loop().create_server({protocol}, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(3600)
uvloop.install()
asyncio.run(main())
"""


def script_server(source: str, protocol: str, *args: str) -> tuple[subprocess.Popen[str], int]:
    """A yardstick server in a child process: ``source`` (which imports asyncio and uvloop) defines
    the asyncio.Protocol class ``protocol``; it listens on a free loopback port. Returns it and the port."""
    process = subprocess.Popen([sys.executable, "-c", source + _SERVE.format(protocol=protocol), *args],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, int(process.stdout.readline())
