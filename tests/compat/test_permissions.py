"""Per-key permissions end to end: every operation, allowed and refused, over HTTP, DAX and TLS.

One node serves the module, with a key file holding four keys: ROOT (no rules),
READER (read on OK), WRITER (read and write on OK), CONTROL (control on OK).
NO is a table none of the restricted keys may use. Clients are made once per
key and front end. Refused calls must come back as AccessDeniedException
naming the operation (or, over DAX, the key-schema request the client makes
first) and the table, and touch neither the cache nor DynamoDB.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from amazondax import AmazonDaxClient
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.compat.conftest import dax_url
from tests.compat.test_tls import _self_signed
from tests.harness import DaxdNode, DynamoDBLocal, client, create_table, lists_table, unique_table

SECRETS = {"ROOT": "root-secret", "READER": "reader-secret", "WRITER": "writer-secret", "CONTROL": "control-secret"}
K = {"pk": {"S": "k1"}, "sk": {"N": "1"}}
#: The Python DAX client retries every error whose code sequence starts with 4, AccessDenied included, and
#: its retry of batch_write_item fails its own validation (it changed the request in place): no retries here.
NO_RETRIES = Config(retries={"max_attempts": 0})


def key_file(ok: str) -> str:
    keys = "".join(f'{key} = "{secret}"\n' for key, secret in SECRETS.items())
    return (f"[keys]\n{keys}\n"
            f'[permissions.READER]\ntables = ["{ok}"]\noperations = ["read"]\n\n'
            f'[permissions.WRITER]\ntables = ["{ok}"]\noperations = ["read", "write"]\n\n'
            f'[permissions.CONTROL]\ntables = ["{ok}"]\noperations = ["control"]\n')


class World:
    """The module's node, tables and clients."""

    def __init__(self, node: DaxdNode, ok: str, no: str, cert: Path, ddb: Any) -> None:
        self.node, self.ok, self.no, self.cert, self.ddb = node, ok, no, cert, ddb
        self._clients: dict[tuple[str, str], Any] = {}

    def client(self, frontend: str, key: str) -> Any:
        made = self._clients.get((frontend, key))
        if made is None:
            credentials = {"aws_access_key_id": key, "aws_secret_access_key": SECRETS[key], "region_name": "us-east-1"}
            if frontend == "http":
                made = client(self.node.endpoint, **credentials)
            else:
                made = AmazonDaxClient(endpoint_url=dax_url(self.node), config=NO_RETRIES, **credentials)
            self._clients[(frontend, key)] = made
        return made

    def close(self) -> None:
        for (frontend, _), made in self._clients.items():
            if frontend == "dax":
                made.close()

    def metric(self, name: str, **labels: str) -> float:
        text = urllib.request.urlopen(self.node.admin + "/metrics", timeout=10).read().decode()
        wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
        match = re.search(rf"^{re.escape(name)}{{{re.escape(wanted)}}} (\S+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0


@pytest.fixture(scope="module")
def world(dynamodb_local: DynamoDBLocal, ddb: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    ok, no = create_table(ddb, unique_table("ok"), gsi=True), create_table(ddb, unique_table("no"), gsi=True)
    for table in (ok, no):
        ddb.put_item(TableName=table, Item={**K, "g": {"S": "g1"}, "v": {"S": "seed"}})
    directory = tmp_path_factory.mktemp("permissions")
    (directory / "keys.toml").write_text(key_file(ok))
    cert, tls_key = _self_signed(directory)
    node = DaxdNode(dynamodb_local.endpoint, "--auth-keys", str(directory / "keys.toml"), "--tls-cert", str(cert),
                    "--tls-key", str(tls_key), "--dax-tls-port", "0", "--http-tls-port", "0")
    made = World(node, ok, no, cert, ddb)
    yield made
    made.close()
    node.stop()


def _put(table: str, pk: str) -> dict[str, Any]:
    return {"PutRequest": {"Item": {"pk": {"S": pk}, "sk": {"N": "1"}, "g": {"S": "g1"}}}}


#: operation -> (is a read, call(client, table)). Writes use their own keys so reruns do not collide.
OPERATIONS: dict[str, tuple[bool, Callable[[Any, str], Any]]] = {
    "GetItem": (True, lambda c, t: c.get_item(TableName=t, Key=K)),
    "Query": (True, lambda c, t: c.query(TableName=t, KeyConditionExpression="pk = :p",
                                         ExpressionAttributeValues={":p": {"S": "k1"}})),
    "Query on an index": (True, lambda c, t: c.query(TableName=t, IndexName="by-g", KeyConditionExpression="g = :g",
                                                     ExpressionAttributeValues={":g": {"S": "g1"}})),
    "Scan": (True, lambda c, t: c.scan(TableName=t, Limit=5)),
    "Scan on an index": (True, lambda c, t: c.scan(TableName=t, IndexName="by-g", Limit=5)),
    "BatchGetItem": (True, lambda c, t: c.batch_get_item(RequestItems={t: {"Keys": [K]}})),
    "TransactGetItems": (True, lambda c, t: c.transact_get_items(TransactItems=[{"Get": {"TableName": t, "Key": K}}])),
    "PutItem": (False, lambda c, t: c.put_item(TableName=t, Item={"pk": {"S": "put"}, "sk": {"N": "1"}})),
    "UpdateItem": (False, lambda c, t: c.update_item(TableName=t, Key=K, UpdateExpression="SET v = :v",
                                                     ExpressionAttributeValues={":v": {"S": "updated"}})),
    "DeleteItem": (False, lambda c, t: c.delete_item(TableName=t, Key={"pk": {"S": "gone"}, "sk": {"N": "1"}})),
    "BatchWriteItem": (False, lambda c, t: c.batch_write_item(RequestItems={t: [_put(t, "batch")]})),
    "TransactWriteItems": (False, lambda c, t: c.transact_write_items(TransactItems=[
        {"Put": {"TableName": t, "Item": {"pk": {"S": "tx"}, "sk": {"N": "1"}}}}])),
}


def refusal(call: Callable[[], Any]) -> tuple[str, str, int]:
    """The error code, message and HTTP status a call failed with."""
    with pytest.raises(ClientError) as failed:
        call()
    error = failed.value.response["Error"]
    return error["Code"], error.get("Message", ""), failed.value.response["ResponseMetadata"]["HTTPStatusCode"]


def assert_denied(call: Callable[[], Any], frontend: str, operation: str, table: str) -> None:
    code, message, status = refusal(call)
    assert code == "AccessDeniedException" and status == 400, (code, message)
    assert f"table {table}" in message, message
    named = operation if frontend == "http" else f"({operation}|DefineKeySchema)"
    assert re.search(rf"dynamodb:{named} ", message), message


@pytest.mark.parametrize("frontend", ["http", "dax"])
@pytest.mark.parametrize("name", list(OPERATIONS))
def test_every_operation_allowed_and_refused(world: World, frontend: str, name: str) -> None:
    is_read, call = OPERATIONS[name]
    operation = name.split(" ")[0]
    writer, reader = world.client(frontend, "WRITER"), world.client(frontend, "READER")
    call(writer, world.ok)  # allowed: read and write on OK
    assert_denied(lambda: call(writer, world.no), frontend, operation, world.no)
    if is_read:
        call(reader, world.ok)
    else:
        assert_denied(lambda: call(reader, world.ok), frontend, operation, world.ok)


@pytest.mark.parametrize("frontend", ["http", "dax"])
def test_batch_and_transaction_naming_a_forbidden_table_are_refused_whole(world: World, frontend: str) -> None:
    writer = world.client(frontend, "WRITER")
    pk = f"mixed-{frontend}"
    item = {"pk": {"S": pk}, "sk": {"N": "1"}}
    calls = [
        lambda: writer.batch_write_item(RequestItems={world.ok: [_put(world.ok, pk)], world.no: [_put(world.no, pk)]}),
        lambda: writer.transact_write_items(TransactItems=[{"Put": {"TableName": world.ok, "Item": item}},
                                                           {"Put": {"TableName": world.no, "Item": item}}]),
        lambda: writer.batch_get_item(RequestItems={world.ok: {"Keys": [K]}, world.no: {"Keys": [K]}}),
        lambda: writer.transact_get_items(TransactItems=[{"Get": {"TableName": world.ok, "Key": K}},
                                                         {"Get": {"TableName": world.no, "Key": K}}]),
    ]
    for call in calls:
        code, message, _ = refusal(call)
        assert code == "AccessDeniedException" and world.no in message
    for table in (world.ok, world.no):  # nothing written, in either table
        assert "Item" not in world.ddb.get_item(TableName=table, Key=item, ConsistentRead=True)


def test_partiql_is_attributed_to_its_table(world: World) -> None:
    reader, writer = world.client("http", "READER"), world.client("http", "WRITER")
    select_ok = f"SELECT * FROM \"{world.ok}\" WHERE pk = 'k1'"
    assert reader.execute_statement(Statement=select_ok)["Items"]
    assert reader.execute_statement(Statement=f"SELECT * FROM \"{world.ok}\".\"by-g\" WHERE g = 'g1'")["Items"]
    assert_denied(lambda: reader.execute_statement(Statement=f"SELECT * FROM \"{world.no}\" WHERE pk = 'k1'"),
                  "http", "ExecuteStatement", world.no)
    update_ok = f"UPDATE \"{world.ok}\" SET v = 'partiql' WHERE pk = 'k1' AND sk = 1"
    assert_denied(lambda: reader.execute_statement(Statement=update_ok), "http", "ExecuteStatement", world.ok)
    writer.execute_statement(Statement=update_ok)
    assert_denied(lambda: reader.batch_execute_statement(Statements=[{"Statement": select_ok}, {
        "Statement": f"SELECT * FROM \"{world.no}\" WHERE pk = 'k1'"}]), "http", "BatchExecuteStatement", world.no)
    inserts = [{"Statement": f"INSERT INTO \"{table}\" VALUE {{'pk': 'partiql-tx', 'sk': 1}}"}
               for table in (world.ok, world.no)]
    assert_denied(lambda: writer.execute_transaction(TransactStatements=inserts), "http", "ExecuteTransaction",
                  world.no)
    key = {"pk": {"S": "partiql-tx"}, "sk": {"N": "1"}}
    assert all("Item" not in world.ddb.get_item(TableName=t, Key=key) for t in (world.ok, world.no))
    code, message, _ = refusal(lambda: reader.execute_statement(Statement=f"SELECT * FROM \"{world.ok}\" -- x"))
    assert code == "AccessDeniedException" and "cannot tell which table" in message
    world.client("http", "ROOT").execute_statement(Statement=select_ok)  # a key without rules is not parsed


def test_control_plane(world: World) -> None:
    control, reader = world.client("http", "CONTROL"), world.client("http", "READER")
    assert control.describe_table(TableName=world.ok)["Table"]["TableName"] == world.ok
    assert control.describe_time_to_live(TableName=world.ok)
    assert_denied(lambda: control.describe_table(TableName=world.no), "http", "DescribeTable", world.no)
    assert_denied(lambda: reader.describe_table(TableName=world.ok), "http", "DescribeTable", world.ok)
    code, message, _ = refusal(lambda: control.list_tables())
    assert code == "AccessDeniedException" and "names no table" in message
    assert lists_table(world.client("http", "ROOT"), world.ok)
    assert_denied(lambda: control.get_item(TableName=world.ok, Key=K), "http", "GetItem", world.ok)


@pytest.mark.parametrize("frontend", ["http", "dax"])
def test_a_refused_key_learns_nothing_from_the_cache(world: World, frontend: str) -> None:
    """Same refusal whether the item is cached, uncached or absent; no cache hit, no upstream call."""
    root, reader = world.client(frontend, "ROOT"), world.client(frontend, "READER")
    cached = {"pk": {"S": f"cached-{frontend}"}, "sk": {"N": "1"}}
    root.put_item(TableName=world.no, Item=cached)
    assert root.get_item(TableName=world.no, Key=cached)["Item"] == cached  # through the cache
    before = (world.metric("daxd_item_cache_hits_total", table=world.no),
              world.metric("daxd_item_cache_misses_total", table=world.no),
              world.metric("daxd_upstream_latency_seconds_count", operation="GetItem"),
              world.metric("daxd_upstream_latency_seconds_count", operation="DescribeTable"))
    denied_before = world.metric("daxd_access_denied_total", key="READER")
    answers = {refusal(lambda k=key: reader.get_item(TableName=world.no, Key=k))[:2]  # type: ignore[misc]
               for key in (cached, K, {"pk": {"S": "never-written"}, "sk": {"N": "9"}})}
    assert len(answers) == 1 and next(iter(answers))[0] == "AccessDeniedException"
    after = (world.metric("daxd_item_cache_hits_total", table=world.no),
             world.metric("daxd_item_cache_misses_total", table=world.no),
             world.metric("daxd_upstream_latency_seconds_count", operation="GetItem"),
             world.metric("daxd_upstream_latency_seconds_count", operation="DescribeTable"))
    assert after == before
    assert world.metric("daxd_access_denied_total", key="READER") >= denied_before + 3


def test_dax_get_item_memo_is_checked_per_connection(world: World) -> None:
    """The DAX front end remembers decoded GetItems by their bytes for every connection: each key is still checked."""
    root, control = world.client("dax", "ROOT"), world.client("dax", "CONTROL")
    for _ in range(2):
        root.get_item(TableName=world.ok, Key=K)
    code, message, _ = refusal(lambda: control.get_item(TableName=world.ok, Key=K))  # schema allowed, GetItem not
    assert code == "AccessDeniedException" and f"dynamodb:GetItem on resource: table {world.ok}" in message


def test_tls_listeners_enforce_the_same_rules(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    output = "".join(world.node.output)
    dax_port = int(re.search(r"daxs://\S+:(\d+)", output).group(1))  # type: ignore[union-attr]
    https_port = int(re.search(r"https://\S+:(\d+)", output).group(1))  # type: ignore[union-attr]
    https = client(f"https://localhost:{https_port}", verify=str(world.cert), aws_access_key_id="READER",
                   aws_secret_access_key=SECRETS["READER"])
    https.get_item(TableName=world.ok, Key=K)
    assert_denied(lambda: https.get_item(TableName=world.no, Key=K), "http", "GetItem", world.no)
    monkeypatch.setenv("SSL_CERT_FILE", str(world.cert))
    daxs = AmazonDaxClient(endpoint_url=f"daxs://localhost:{dax_port}", aws_access_key_id="READER",
                           aws_secret_access_key=SECRETS["READER"], region_name="us-east-1", config=NO_RETRIES)
    try:
        daxs.get_item(TableName=world.ok, Key=K)
        assert_denied(lambda: daxs.put_item(TableName=world.ok, Item=K), "dax", "PutItem", world.ok)
    finally:
        daxs.close()


def test_refusals_are_logged_with_key_operation_and_table(world: World) -> None:
    reader = world.client("http", "READER")
    for _ in range(5):
        refusal(lambda: reader.get_item(TableName=world.no, Key=K))
    refused = sum(world.metric("daxd_access_denied_total", key=key) for key in ("READER", "WRITER", "CONTROL"))
    world.node.stop()  # the last test of the module: its output is complete once it stopped
    lines = re.findall(r"access denied: key (\w+), operation (\w+), table ([\w-]+)", "".join(world.node.output))
    assert ("READER", "GetItem", world.no) in lines or any(key == "READER" for key, _, _ in lines)
    assert 0 < len(lines) < refused  # rate-limited: at most one line per key per 10 s
