"""``--auth-keys``: SigV4 on DAX ``authorizeConnection`` and on every HTTP request.

A refused DAX connection is answered as real DAX does (protocol addendum A4):
silence on ``authorizeConnection``, then "Connection requires authentication"
(codes ``[4, 23, 31, 33]``) on the next request, and the connection stays open.
"""

from __future__ import annotations

import datetime
import hashlib
import socket
from pathlib import Path
from typing import Any

import cbor2
import pytest
from botocore.exceptions import ClientError

from daxd.sigv4 import EMPTY_SHA256, signing_key
from tests.compat.conftest import dax_url
from tests.harness import DaxdNode, client
from tests.integration.dax_wire import PREAMBLE, endpoints_request, read_items

KEYS = '[keys]\nAKIDEXAMPLE = "secret"\nSECOND = "other"\n'


@pytest.fixture
def auth_node(start_node: Any, tmp_path: Path) -> DaxdNode:
    keys = tmp_path / "keys.toml"
    keys.write_text(KEYS)
    node: DaxdNode = start_node("--auth-keys", str(keys))
    return node


def test_python_client_with_a_known_key(auth_node: DaxdNode, open_dax: Any, tables: dict[str, str]) -> None:
    dax = open_dax(dax_url(auth_node))
    dax.put_item(TableName=tables["hash"], Item={"pk": {"S": "auth"}})
    assert dax.get_item(TableName=tables["hash"], Key={"pk": {"S": "auth"}})["Item"] == {"pk": {"S": "auth"}}


@pytest.mark.parametrize(("key_id", "secret"), [("AKIDEXAMPLE", "wrong"), ("UNKNOWN", "secret")])
def test_python_client_with_bad_credentials_is_refused(auth_node: DaxdNode, open_dax: Any,
                                                       key_id: str, secret: str) -> None:
    with pytest.raises(Exception, match=r"authentication|NoRoute|Signature|security token"):
        open_dax(dax_url(auth_node), aws_access_key_id=key_id, aws_secret_access_key=secret,
                 config=_short_timeouts())


def _short_timeouts() -> Any:
    from botocore.config import Config
    return Config(connect_timeout=2, read_timeout=5)


def _authorize(key_id: str, secret: str, now: datetime.datetime) -> bytes:
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    creq = f"POST\n/\n\nhost:dax.amazonaws.com\nx-amz-date:{stamp}\n\nhost;x-amz-date\n{EMPTY_SHA256}"
    to_sign = (f"AWS4-HMAC-SHA256\n{stamp}\n{stamp[:8]}/us-east-1/dax/aws4_request\n"
               f"{hashlib.sha256(creq.encode()).hexdigest()}").encode()
    signature = signing_key(secret, stamp[:8], "us-east-1", "dax").hexdigest(to_sign)
    return b"\x01" + cbor2.dumps(1489122155) + b"".join(
        cbor2.dumps(part) for part in (key_id, signature, to_sign, None, "raw-test"))


def test_refused_connection_is_answered_on_the_next_request_and_kept_open(auth_node: DaxdNode) -> None:
    now = datetime.datetime.now(datetime.UTC)
    with socket.create_connection(("127.0.0.1", auth_node.ports["dax"]), timeout=5) as sock:
        sock.sendall(PREAMBLE + endpoints_request())  # no auth at all
        codes, message, detail = read_items(sock, 3)
        assert codes == [4, 23, 31, 33] and message == "Connection requires authentication"
        assert detail[1] == "MissingAuthenticationTokenException"
        sock.sendall(_authorize("AKIDEXAMPLE", "wrong", now) + endpoints_request())
        codes, message, detail = read_items(sock, 3)
        assert codes == [4, 23, 31, 33] and detail[1] == "InvalidSignatureException"
        sock.sendall(_authorize("SECOND", "other", now) + endpoints_request())  # same connection, good key
        marker, nodes = read_items(sock, 2)
        assert marker == [] and nodes[0][3] == auth_node.ports["dax"]


def test_http_requires_a_valid_signature(auth_node: DaxdNode, tables: dict[str, str]) -> None:
    good = client(auth_node.endpoint, aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")
    good.put_item(TableName=tables["hash"], Item={"pk": {"S": "http-auth"}})
    for key_id, secret, expected in (("AKIDEXAMPLE", "wrong", "InvalidSignatureException"),
                                     ("UNKNOWN", "secret", "UnrecognizedClientException")):
        bad = client(auth_node.endpoint, aws_access_key_id=key_id, aws_secret_access_key=secret)
        with pytest.raises(ClientError) as failed:
            bad.get_item(TableName=tables["hash"], Key={"pk": {"S": "http-auth"}})
        assert failed.value.response["Error"]["Code"] == expected
        assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_keys_table_in_the_config_file(start_node: Any, tmp_path: Path, tables: dict[str, str]) -> None:
    config = tmp_path / "daxd.toml"
    config.write_text("item_ttl = 60\n" + KEYS)
    node = start_node("--config", str(config))
    with pytest.raises(ClientError) as failed:
        node.client(aws_access_key_id="UNKNOWN").get_item(TableName=tables["hash"], Key={"pk": {"S": "x"}})
    assert failed.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert "authentication on: 2 access key(s)" in "".join(node.output)


def test_without_keys_any_key_is_accepted_and_the_node_says_so(dax_node: DaxdNode, open_dax: Any) -> None:
    assert "any access key is accepted" in "".join(dax_node.output)
    dax = open_dax(dax_url(dax_node), aws_access_key_id="anything", aws_secret_access_key="at-all")
    with pytest.raises(ClientError):
        dax.get_item(TableName="no-such-table", Key={"pk": {"S": "x"}})
