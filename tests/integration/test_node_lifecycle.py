"""Start-up, admin endpoint, graceful shutdown, and the embedded backend."""

from __future__ import annotations

import signal
import threading
import urllib.error
import urllib.request
from typing import Any

import orjson

from daxd.tier.server import EmbeddedValkey
from tests.faultproxy import ThreadedFaultProxy
from tests.harness import DaxdNode, DynamoDBLocal, free_port


def fetch(url: str, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_admin_health_ready_metrics_and_flush(node: DaxdNode, ddb: Any, table: str) -> None:
    assert fetch(node.admin + "/health") == (200, b'{"status":"ok"}')
    status, body = fetch(node.admin + "/ready")
    assert status == 200 and orjson.loads(body)["ready"] is True
    api = node.client()
    key = {"pk": {"S": "m"}, "sk": {"N": "1"}}
    api.put_item(TableName=table, Item={**key, "v": {"S": "mine"}})
    api.get_item(TableName=table, Key=key)
    api.get_item(TableName=table, Key={"pk": {"S": "absent"}, "sk": {"N": "1"}})
    _, metrics = fetch(node.admin + "/metrics")
    text = metrics.decode()
    assert f'daxd_item_cache_hits_total{{table="{table}"}} 1.0' in text
    assert f'daxd_item_cache_misses_total{{table="{table}"}} 1.0' in text
    for name in ("daxd_query_cache_hits_total", "daxd_scan_cache_misses_total", "daxd_evicted_size_bytes_total",
                 "daxd_estimated_db_size_bytes", "daxd_total_request_count_total", "daxd_request_latency_seconds",
                 "daxd_upstream_latency_seconds", "daxd_error_request_count_total"):
        assert name in text, name
    ddb.put_item(TableName=table, Item={**key, "v": {"S": "bypass"}})
    assert api.get_item(TableName=table, Key=key)["Item"]["v"] == {"S": "mine"}
    status, body = fetch(node.admin + f"/cache/flush?table={table}", method="POST")
    assert status == 200 and orjson.loads(body)["flushed"] >= 1
    assert api.get_item(TableName=table, Key=key)["Item"]["v"] == {"S": "bypass"}
    assert fetch(node.admin + "/nope")[0] == 404


def test_ready_is_503_when_the_upstream_is_down() -> None:
    node = DaxdNode(f"http://127.0.0.1:{free_port()}", "--upstream-timeout", "0.3", "--upstream-max-attempts", "1")
    try:
        status, body = fetch(node.admin + "/ready")
        assert status == 503 and orjson.loads(body)["ready"] is False
        assert fetch(node.admin + "/health")[0] == 200
    finally:
        assert node.stop() == 0


def test_sigterm_finishes_in_flight_requests_and_exits_zero(dynamodb_local: DynamoDBLocal, table: str) -> None:
    faults = ThreadedFaultProxy(dynamodb_local.endpoint)
    url = f"http://127.0.0.1:{faults.start()}"
    node = DaxdNode(url, "--streams", "off")
    try:
        faults.delay = 1.0
        results: list[Any] = []
        slow = threading.Thread(target=lambda: results.append(
            node.client().get_item(TableName=table, Key={"pk": {"S": "s"}, "sk": {"N": "1"}})))
        slow.start()
        while faults.seen["DynamoDB_20120810.GetItem"] == 0:
            threading.Event().wait(0.02)
        assert node.stop(signal.SIGTERM) == 0
        slow.join(10)
        assert results and results[0]["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert any("stopped" in line for line in node.output)
    finally:
        node.stop()
        faults.stop()


def test_embedded_backend_runs_the_whole_product_alone() -> None:
    node = DaxdNode("embedded")
    try:
        api = node.client()
        api.create_table(TableName="Music", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST")
        api.put_item(TableName="Music", Item={"id": {"S": "1"}, "title": {"S": "So What"}})
        assert api.get_item(TableName="Music", Key={"id": {"S": "1"}})["Item"]["title"] == {"S": "So What"}
        assert api.query(TableName="Music", KeyConditionExpression="id = :i",
                         ExpressionAttributeValues={":i": {"S": "1"}})["Count"] == 1
    finally:
        assert node.stop() == 0
    assert any("data lives in this process's memory only" in line for line in node.output)


def test_a_cluster_on_the_embedded_backend_is_warned_about() -> None:
    """Each node would have its own in-memory database: say so at start-up."""
    server = EmbeddedValkey(port=free_port())
    try:
        node = DaxdNode("embedded", "--valkey", server.url)
        assert node.stop() == 0
    finally:
        server.stop()
    assert any("the nodes share no data" in line for line in node.output)
