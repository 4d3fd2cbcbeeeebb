"""``daxd serve --workers 2``: one address, two processes, one cache (an embedded Valkey on a unix socket)."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from amazondax import AmazonDaxClient

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
    node.stop()
    assert any("restarted" in line for line in node.output)
