"""Per-table cache policy end to end: a never-cached table, a short item TTL, a table without query cache."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from tests.harness import ROOT, create_table, unique_table, wait_until

KEY = {"pk": {"S": "p"}, "sk": {"N": "1"}}
QUERY = {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "p"}}}


def value(answer: dict[str, Any]) -> str:
    item = answer.get("Item") or answer["Items"][0]
    return str(item["v"]["S"])


def test_per_table_policy(start_node: Any, tmp_path: Path, ddb: Any) -> None:
    prefix = unique_table("events")
    never, short, events, plain = (create_table(ddb), create_table(ddb), create_table(ddb, f"{prefix}-1"),
                                   create_table(ddb))
    config = tmp_path / "daxd.toml"
    config.write_text(f'item_ttl = 300\n[tables."{never}"]\ncache = false\n[tables."{short}"]\nitem_ttl = 1\n'
                      f'[tables."{prefix}*"]\nquery_cache = false\n')
    node = start_node("--config", str(config), "--streams", "off")
    daxd = node.client()
    for table in (never, short, events, plain):
        daxd.put_item(TableName=table, Item={**KEY, "v": {"S": "old"}})
        assert value(daxd.get_item(TableName=table, Key=KEY)) == "old"
        assert value(daxd.query(TableName=table, **QUERY)) == "old"
        ddb.put_item(TableName=table, Item={**KEY, "v": {"S": "new"}})  # around daxd
    assert value(daxd.get_item(TableName=never, Key=KEY)) == "new"  # never cached: visible at once
    assert value(daxd.query(TableName=never, **QUERY)) == "new"
    assert value(daxd.query(TableName=events, **QUERY)) == "new"  # no query cache for events*
    assert value(daxd.get_item(TableName=events, Key=KEY)) == "old"  # ... but its items are cached
    assert value(daxd.get_item(TableName=plain, Key=KEY)) == "old"  # the global TTL holds elsewhere
    assert value(daxd.query(TableName=plain, **QUERY)) == "old"
    wait_until(lambda: value(daxd.get_item(TableName=short, Key=KEY)) == "new", 30, "the 1 s item TTL to expire")
    assert value(daxd.get_item(TableName=plain, Key=KEY)) == "old"

    with urllib.request.urlopen(node.admin + "/tables", timeout=10) as answer:
        view = json.loads(answer.read())
    assert view["default"] == {"cache": True, "item_ttl": 300.0, "query_ttl": 300.0, "query_cache": True}
    assert view["tables"][never] == {"cache": False, "item_ttl": 300.0, "query_ttl": 300.0, "query_cache": False,
                                     "rule": never}
    assert view["tables"][short]["item_ttl"] == 1.0
    assert view["tables"][events]["query_cache"] is False and view["tables"][events]["rule"] == f"{prefix}*"
    assert view["tables"][plain]["rule"] is None

    status = subprocess.run([sys.executable, "-m", "daxd", "status", f"127.0.0.1:{node.ports['admin']}", "--json"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT, check=True)
    assert json.loads(status.stdout)["table_policies"]["tables"][never]["cache"] is False
    table = subprocess.run([sys.executable, "-m", "daxd", "status", f"127.0.0.1:{node.ports['admin']}"],
                           capture_output=True, text=True, timeout=60, cwd=ROOT, check=True, env={
                               "COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert "cache policy per table" in table.stdout and "(other tables)" in table.stdout
