"""``daxd serve --workers 2``: one address, two processes, one cache (an embedded Valkey on a unix socket)."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import orjson
from amazondax import AmazonDaxClient
from prometheus_client.parser import text_string_to_metric_families

from tests.compat.conftest import DAX_CREDENTIALS
from tests.harness import DaxdNode, client, wait_until


def worker_pids(node: DaxdNode) -> set[int]:
    """The supervisor's daxd children (the embedded valkey-server is its child too)."""
    pid = node.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    found = set()
    for child in children:
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"daxd" in command and b"valkey-server" not in command:
            found.add(int(child))
    return found


def test_two_workers_serve_one_cache_with_read_your_writes_across_workers(
        start_node: Callable[..., DaxdNode], table: str) -> None:
    node = start_node("--workers", "2")
    assert any(re.search(r"2 workers \(pids \d+, \d+\)", line) for line in node.output)
    assert len(worker_pids(node)) == 2
    # Fresh connections land on either worker (SO_REUSEPORT); every read must see the write just acknowledged.
    writers = [client(node.endpoint) for _ in range(3)]
    readers = [client(node.endpoint) for _ in range(3)]
    dax = AmazonDaxClient(endpoint_url=f"dax://127.0.0.1:{node.ports['dax']}", **DAX_CREDENTIALS)
    try:
        key = {"pk": {"S": "k"}, "sk": {"N": "1"}}
        for i in range(40):
            writer = writers[i % 3] if i % 4 else dax
            writer.put_item(TableName=table, Item={**key, "v": {"N": str(i)}})
            for reader in (readers[i % 3], readers[(i + 1) % 3], dax):
                got = reader.get_item(TableName=table, Key=key)["Item"]["v"]["N"]
                assert got == str(i), f"write {i} acknowledged, a worker still served {got}"
            page = readers[(i + 2) % 3].query(TableName=table, KeyConditionExpression="pk = :p",
                                             ExpressionAttributeValues={":p": {"S": "k"}})
            assert [it["v"]["N"] for it in page["Items"]] == [str(i)]
    finally:
        dax.close()
    assert node.stop() == 0
    assert not any("Traceback" in line for line in node.output)


def test_a_worker_killed_under_load_is_restarted(start_node: Callable[..., DaxdNode], table: str) -> None:
    node = start_node("--workers", "2")
    before = worker_pids(node)
    assert len(before) == 2
    stop = threading.Event()
    outcomes: list[bool] = []

    def load() -> None:
        while not stop.is_set():
            ddb = client(node.endpoint)  # a new connection each round: both workers get traffic
            try:
                ddb.put_item(TableName=table, Item={"pk": {"S": "k"}, "sk": {"N": "1"}})
                ddb.get_item(TableName=table, Key={"pk": {"S": "k"}, "sk": {"N": "1"}})
                outcomes.append(True)
            except Exception:
                outcomes.append(False)

    thread = threading.Thread(target=load)
    thread.start()
    try:
        wait_until(lambda: len(outcomes) >= 5, 30, "load to run")
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(worker_pids(node)) == 2 and victim not in worker_pids(node), 30,
                   "the supervisor to restart the worker")
        time.sleep(0.5)
        settled = len(outcomes)
        wait_until(lambda: len(outcomes) >= settled + 10, 30, "load to go on")
    finally:
        stop.set()
        thread.join(30)
    assert all(outcomes[settled:]), "requests failed after the worker was restarted"
    assert outcomes.count(False) <= 5, "more failures than the killed worker's connections explain"
    # Counted by the supervisor (its log line is not checked: the harness reads a node's output only at
    # start and stop, and a loaded CI run once lost it).
    text = _get(node.admin + "/metrics")[1].decode()
    assert re.search(r"^daxd_worker_restarts_total 1\.0$", text, re.M), text[-2000:]
    node.stop()


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=20) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _requests_counted(metrics_text: str, operation: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "daxd_total_request_count_total" and sample.labels.get("operation") == operation:
                return sample.value
    return 0.0


def _worker_metrics(pid: int) -> str:
    """One worker's own /metrics, asked on its private admin socket (the supervisor's directory)."""
    environ = dict(e.split(b"=", 1) for e in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in e)
    path = environ[b"DAXD_WORKER_ADMIN"].decode()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(20)
        sock.connect(path)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.partition(b"\r\n\r\n")[2].decode()


def test_one_admin_port_covers_every_worker(start_node: Callable[..., DaxdNode], table: str) -> None:
    node = start_node("--workers", "2")
    pids = worker_pids(node)
    key = {"pk": {"S": "k"}, "sk": {"N": "1"}}
    client(node.endpoint).put_item(TableName=table, Item={**key, "v": {"S": "x"}})
    gets = 0
    for _ in range(30):  # a new connection each time: SO_REUSEPORT spreads them over both workers
        client(node.endpoint).get_item(TableName=table, Key=key)
        gets += 1
    per_worker = {pid: _requests_counted(_worker_metrics(pid), "GetItem") for pid in pids}
    assert all(count > 0 for count in per_worker.values()), f"a worker got no traffic: {per_worker}"
    status, text = _get(node.admin + "/metrics")
    assert status == 200
    assert _requests_counted(text.decode(), "GetItem") == gets == sum(per_worker.values())
    assert "daxd_workers_serving 2.0" in text.decode()
    status, body = _get(node.admin + "/health")
    assert status == 200 and [w["status"] for w in orjson.loads(body)["workers"]] == ["ok", "ok"]
    status, body = _get(node.admin + "/ready")
    assert status == 200 and orjson.loads(body)["reason"] == "ok"
    status, body = _get(node.admin + "/stats.json")
    stats = orjson.loads(body)
    assert status == 200 and stats["requests"]["GetItem"] == gets
    assert sorted(w["pid"] for w in stats["workers"]) == sorted(pids)

    # A worker killed: reported (never a 500), and the node's counters do not go back.
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: orjson.loads(_get(node.admin + "/health")[1])["workers"][0]["pid"] != victim
               or any(w["status"] == "restarting" for w in orjson.loads(_get(node.admin + "/health")[1])["workers"]),
               30, "the admin port to notice the killed worker")
    seen = []
    for _ in range(3):
        for path in ("/health", "/ready", "/metrics", "/stats.json"):
            status, body = _get(node.admin + path)
            assert status in (200, 503), (path, status, body)
        seen.append(_requests_counted(_get(node.admin + "/metrics")[1].decode(), "GetItem"))
    assert all(count >= gets for count in seen), f"the node's GetItem count went back: {seen}"
    wait_until(lambda: len(worker_pids(node)) == 2 and _get(node.admin + "/ready")[0] == 200, 30,
               "the worker to be restarted and ready")
    client(node.endpoint).get_item(TableName=table, Key=key)
    assert _requests_counted(_get(node.admin + "/metrics")[1].decode(), "GetItem") >= gets + 1
    assert node.stop() == 0
