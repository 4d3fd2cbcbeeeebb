"""Three daxd nodes on one Valkey under the official DAX clients' put+get loops: the parts.

Used by tests/tier/test_rolling.py and benchmarks/bench_rolling.py. A pair of
a loop *fails* when the put or the get raised (after the client's own
retries), and is *wrong* when the get did not return the value just put
(every pair writes a new key, so any node must answer it).
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from amazondax import AmazonDaxClient

from tests.harness import ROOT, DaxdNode, free_port, wait_until
from tests.integration.dax_wire import PREAMBLE, endpoints_request, read_items

DAX_CREDENTIALS = {"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "secret", "region_name": "us-east-1"}
JS_LOOP = Path(__file__).parent / "js" / "put_get_loop.js"
JS_PACKAGE = ROOT / "node_modules" / "@amazon-dax-sdk" / "client-dax"


def advertised(dax_port: int) -> set[int]:
    """The DAX ports in the ``endpoints`` answer of the node on ``dax_port``."""
    with socket.create_connection(("127.0.0.1", dax_port), timeout=5) as sock:
        sock.sendall(PREAMBLE + endpoints_request())
        marker, answer = read_items(sock, 2)
    assert marker == []
    return {entry[3] for entry in answer}


def admin(node: DaxdNode, path: str) -> tuple[int, str]:
    """Status and body of an admin GET on a fresh connection."""
    try:
        with urllib.request.urlopen(node.admin + path, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def puts_served(node: DaxdNode) -> float:
    _, body = admin(node, "/metrics")
    match = re.search(r'daxd_total_request_count_total\{operation="PutItem"\} (\S+)', body)
    return float(match.group(1)) if match else 0.0


class Ring:
    """Nodes ``n1..nN`` on one Valkey, each on fixed ports so it can be started again on the same ones."""

    def __init__(self, upstream: str, valkey_url: str, size: int = 3, leave_period: float | None = None) -> None:
        self.upstream, self.valkey_url, self.leave_period = upstream, valkey_url, leave_period
        self.ports = [{"dax": free_port(), "http": free_port(), "admin": free_port()} for _ in range(size)]
        self.nodes: list[DaxdNode | None] = [None] * size
        with ThreadPoolExecutor(size) as starting:
            list(starting.map(self.start, range(size)))
        self.wait_whole()

    def start(self, index: int) -> DaxdNode:
        ports = self.ports[index]
        leave = () if self.leave_period is None else ("--leave-period", str(self.leave_period))
        node = DaxdNode(self.upstream, "--valkey", self.valkey_url, "--node-id", f"n{index + 1}",
                        "--dax-port", str(ports["dax"]), "--http-port", str(ports["http"]),
                        "--admin-port", str(ports["admin"]), "--streams", "off", *leave,
                        env={"DAXD_LEAVE_PERIOD": ""})  # None: daxd's own default
        self.nodes[index] = node
        return node

    def node(self, index: int) -> DaxdNode:
        node = self.nodes[index]
        assert node is not None
        return node

    @property
    def dax_ports(self) -> list[int]:
        return [ports["dax"] for ports in self.ports]

    def wait_whole(self) -> None:
        every = set(self.dax_ports)
        wait_until(lambda: all(advertised(self.dax_ports[i]) == every for i in range(len(self.nodes))), 30,
                   "every node to advertise every node")

    def stop(self) -> None:
        for node in self.nodes:
            if node is not None:
                node.stop(signal.SIGKILL)


class PythonLoop:
    """The official Python DAX client's put+get loop, in ``threads`` threads sharing one client."""

    def __init__(self, dax_ports: list[int], table: str, threads: int = 1) -> None:
        self.table = table
        self.client = AmazonDaxClient(endpoints=[f"127.0.0.1:{p}" for p in dax_ports], **DAX_CREDENTIALS)
        self.ok = self.wrong = 0
        self.failures: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), name=f"python-dax-loop-{n}")
                         for n in range(threads)]
        for thread in self._threads:
            thread.start()

    @property
    def failed(self) -> int:
        return len(self.failures)

    def _run(self, thread: int) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            key = {"pk": {"S": f"py-{thread}-{i}"}, "sk": {"N": "1"}}
            try:
                self.client.put_item(TableName=self.table, Item={**key, "v": {"N": str(i)}})
                got = self.client.get_item(TableName=self.table, Key=key).get("Item")
            except Exception as exc:
                self.failures.append((time.time(), type(exc).__name__ + ": " + str(exc)[:120]))
                continue
            with self._lock:
                if got is not None and got["v"]["N"] == str(i):
                    self.ok += 1
                else:
                    self.wrong += 1

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        self.client.close()


class JsLoop:
    """The official JavaScript DAX client's put+get loop (tests/tier/js/put_get_loop.js), under Node.js."""

    def __init__(self, dax_ports: list[int], table: str, refresh: float = 4.0) -> None:
        self.process = subprocess.Popen(
            ["node", str(JS_LOOP), table, str(int(refresh * 1000)), *(f"127.0.0.1:{p}" for p in dax_ports)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        self.last: dict[str, Any] = {"ok": 0, "failed": 0, "wrong": 0, "failures": []}
        self.other: list[str] = []
        self._reader = threading.Thread(target=self._read, name="js-dax-loop-output")
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                self.last = json.loads(line)
            else:
                self.other.append(line)

    @property
    def ok(self) -> int:
        return int(self.last.get("ok", 0))

    @property
    def wrong(self) -> int:
        return int(self.last.get("wrong", 0))

    @property
    def failures(self) -> list[tuple[float, str]]:
        return [(at / 1000, code) for at, code in self.last.get("failures", [])]

    @property
    def failed(self) -> int:
        return int(self.last.get("failed", 0))

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        assert "fatal" not in self.last, self.last


def restart(ring: Ring, index: int) -> None:
    """SIGTERM one node, wait for it to leave and exit, start it on the same ports, wait until it serves again."""
    node, port = ring.node(index), ring.dax_ports[index]
    others = [p for i, p in enumerate(ring.dax_ports) if i != index]
    node.process.send_signal(signal.SIGTERM)
    wait_until(lambda: all(port not in advertised(p) for p in others), 10, f"n{index + 1} to leave every node's endpoints")
    assert node.process.wait(30) == 0
    assert node.stop() == 0                       # collects its output
    again = ring.start(index)
    ring.wait_whole()
    # The clients send to it again (each picks a random node per request) before the next one goes.
    wait_until(lambda: puts_served(again) >= 10, 20, f"the clients to send to n{index + 1} again")
