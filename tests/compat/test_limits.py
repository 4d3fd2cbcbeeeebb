"""The official Python DAX client against the listener's limits: it sees an error it can show, not a reset."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.compat.conftest import dax_url
from tests.harness import DaxdNode


def test_a_request_over_16_mib_gets_a_dax_error(dax_node: DaxdNode, open_dax: Any, tables: dict[str, str]) -> None:
    dax = open_dax(dax_url(dax_node))
    with pytest.raises(ClientError) as refused:
        dax.put_item(TableName=tables["hash"], Item={"pk": {"S": "huge"}, "v": {"B": b"z" * (16 * 1024 * 1024 + 1)}})
    assert "exceeds the limit" in str(refused.value)
    dax.put_item(TableName=tables["hash"], Item={"pk": {"S": "after"}})  # the client reconnects and carries on
    assert dax.get_item(TableName=tables["hash"], Key={"pk": {"S": "after"}})["Item"] == {"pk": {"S": "after"}}
