"""The official JavaScript DAX client (npm ``@amazon-dax-sdk/client-dax``), run with the machine's Node.js.

``js/dax_client.js`` runs every method and error case against the node and
prints JSON; this test checks it. Skipped when ``node`` or the npm package is
missing (run ``npm ci`` at the repository root).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.compat.conftest import dax_url
from tests.harness import ROOT, DaxdNode

SCRIPT = Path(__file__).parent / "js" / "dax_client.js"
PACKAGE = ROOT / "node_modules" / "@amazon-dax-sdk" / "client-dax"


def run_js(endpoint: str, *tables: str, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    if shutil.which("node") is None or not PACKAGE.exists():
        pytest.skip("needs Node.js and `npm ci` (for @amazon-dax-sdk/client-dax)")
    import os
    done = subprocess.run(["node", str(SCRIPT), endpoint, *tables], capture_output=True, text=True, timeout=50,
                          cwd=ROOT, env={**os.environ, **(extra_env or {})})
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON from node (rc {done.returncode}):\n{done.stdout}\n{done.stderr}"
    result: dict[str, Any] = json.loads(lines[-1])
    assert "fatal" not in result and "timeout" not in result, result
    return result


def test_js_client_every_method_and_error(dax_node: DaxdNode, tables: dict[str, str]) -> None:
    got = run_js(dax_url(dax_node), tables["range"], tables["hash"])
    item = got["get"]
    assert item["n"] == {"N": "1.5"} and item["big"] == {"N": "123456789012345678901234567890"}
    assert item["m"] == {"M": {"k": {"BOOL": True}}} and sorted(item["ss"]["SS"]) == ["a", "b"]
    assert got["get_again"] == item and got["get_missing"] is None
    assert got["get_projected"] == {"s": {"S": "x"}, "pk": {"S": "js"}}
    assert got["update"] == {"n": {"N": "2.5"}, "c": {"N": "1"}}
    assert got["put_all_old"]["ConsumedCapacity"]["TableName"] == tables["range"]
    assert [sk for page in got["query_pages"] for sk in page] == [11, 12, 13, 14] and len(got["query_pages"]) >= 2
    assert got["query_index"] == 5 and got["scan_filter"] == 5
    assert got["batch_write"] == {} and got["batch_get"] == ["1", "2"]
    assert got["transact_get"][0] == {"pk": {"S": "jst"}, "v": {"N": "1"}} and got["transact_get"][1] is None
    assert got["conditional_failed"]["error"] == "ConditionalCheckFailedException"
    assert got["transaction_canceled"]["error"] == "TransactionCanceledException"
    assert got["transaction_canceled"]["reasons"] == ["None", "ConditionalCheckFailed"]
    assert got["validation"]["error"] == "ValidationException"
    assert got["not_found"]["error"] == "ResourceNotFoundException"
    assert got["delete"] == {"pk": {"S": "js"}, "sk": {"N": "2"}, "v": {"S": "new"}}
