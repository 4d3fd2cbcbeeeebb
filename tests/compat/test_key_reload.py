"""The key file is re-read on SIGHUP and by ``POST /auth/reload``, under load, without a failed request."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from amazondax import AmazonDaxClient
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.compat.conftest import dax_url
from tests.harness import ROOT, client, create_table, wait_until

ITEM = {"pk": {"S": "reload"}}


def keys(table: str, *extra: str, reader_tables: str | None = None) -> str:
    lines = ["[keys]", 'ROOT = "root"', 'READER = "reader"', *(f'{k} = "{k.lower()}"' for k in extra),
             "[permissions.READER]", f'tables = ["{reader_tables or table}"]', 'operations = ["read"]']
    return "\n".join(lines) + "\n"


def post(url: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as failed:
        return failed.code, json.loads(failed.read())


def test_reload_under_load_keeps_connections_and_bad_files_keep_the_old_rules(
        start_node: Any, tmp_path: Path, ddb: Any) -> None:
    table = create_table(ddb, range_key=None)
    ddb.put_item(TableName=table, Item=ITEM)
    path = tmp_path / "keys.toml"
    path.write_text(keys(table))
    node = start_node("--auth-keys", str(path))
    http = client(node.endpoint, aws_access_key_id="READER", aws_secret_access_key="reader")
    dax = AmazonDaxClient(endpoint_url=dax_url(node), aws_access_key_id="READER", aws_secret_access_key="reader",
                          region_name="us-east-1", config=Config(retries={"max_attempts": 0}))
    stop, failures, counts = threading.Event(), [], {"http": 0, "dax": 0}

    def load(name: str, reader: Any) -> None:
        while not stop.is_set():
            try:
                assert reader.get_item(TableName=table, Key=ITEM)["Item"] == ITEM
                counts[name] += 1
            except Exception as exc:  # every failure is a finding
                failures.append(exc)

    threads = [threading.Thread(target=load, args=("http", http)), threading.Thread(target=load, args=("dax", dax))]
    try:
        for thread in threads:
            thread.start()
        wait_until(lambda: min(counts.values()) > 0, 30, "both clients to be served")
        for round_ in range(3):
            added = f"NEW{round_}"
            path.write_text(keys(table, added))
            node.process.send_signal(signal.SIGHUP)
            newcomer = client(node.endpoint, aws_access_key_id=added, aws_secret_access_key=added.lower())
            wait_until(lambda c=newcomer: c.get_item(TableName=table, Key=ITEM) is not None, 20,
                       f"{added} to be accepted after SIGHUP")
        served = dict(counts)
        path.write_text(keys(table, "NEW2") + "[permissions.NOBODY]\ntables = ['x']\noperations = ['read']\n")
        status, answer = post(node.admin + "/auth/reload")
        assert status == 409 and not answer["reloaded"] and "NOBODY" in answer["message"]
        assert "line 8" in answer["message"]
        path.write_text("[keys\n")
        node.process.send_signal(signal.SIGHUP)
        wait_until(lambda: min(counts[n] - served[n] for n in counts) > 20, 30, "more requests after bad reloads")
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not failures, failures[:3]
    newcomer.get_item(TableName=table, Key=ITEM)  # the old rules (NEW2 included) are still in force

    path.write_text(keys(table, reader_tables="other-table"))
    status, answer = post(node.admin + "/auth/reload")
    assert status == 200 and answer["reloaded"], answer
    try:  # the open DAX connection is kept, and the new rules apply to it at once
        for reader in (dax, http):
            try:
                reader.get_item(TableName=table, Key=ITEM)
                raise AssertionError("the reloaded rule was not applied")
            except ClientError as refused:
                assert refused.response["Error"]["Code"] == "AccessDeniedException"
    finally:
        dax.close()
    node.stop()
    output = "".join(node.output)
    assert "key file not reloaded, keeping the old keys and permissions" in output
    assert "key file reloaded: 3 access key(s)" in output


def test_a_rule_for_an_unknown_key_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_text('[keys]\nA = "s"\n\n[permissions.B]\ntables = ["T"]\noperations = ["read"]\n')
    started = subprocess.run([sys.executable, "-m", "daxd", "serve", "--auth-keys", str(path), "--http-port", "0",
                              "--dax-port", "0", "--admin-port", "0"], capture_output=True, text=True, timeout=60,
                             cwd=ROOT)
    assert started.returncode == 2
    assert "line 4: [permissions.B]: 'B' is not a key of the [keys] table" in started.stderr
    assert "Traceback" not in started.stderr
