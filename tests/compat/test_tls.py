"""``--tls-cert``/``--tls-key``: DAX over TLS (``daxs://``) and the DynamoDB API over HTTPS.

The certificate is self-signed for ``localhost``/127.0.0.1 and made trusted to
each client the way an operator with a private CA would: ``SSL_CERT_FILE`` for
Python's OpenSSL, ``NODE_EXTRA_CA_CERTS`` for Node, ``verify=`` for boto3.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.compat.test_js_client import run_js
from tests.harness import DaxdNode, client, create_table


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def tls_node(start_node: Any, tmp_path: Path) -> tuple[DaxdNode, Path, int, int]:
    cert, key = _self_signed(tmp_path)
    node: DaxdNode = start_node("--tls-cert", str(cert), "--tls-key", str(key),
                                "--dax-tls-port", "0", "--http-tls-port", "0")
    output = "".join(node.output)
    dax_port = int(re.search(r"DAX over TLS on daxs://\S+:(\d+)", output).group(1))  # type: ignore[union-attr]
    https_port = int(re.search(r"API over TLS on https://\S+:(\d+)", output).group(1))  # type: ignore[union-attr]
    return node, cert, dax_port, https_port


def test_python_client_over_daxs(tls_node: tuple[DaxdNode, Path, int, int], open_dax: Any,
                                 tables: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    _node, cert, dax_port, _ = tls_node
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    dax = open_dax(f"daxs://localhost:{dax_port}")
    dax.put_item(TableName=tables["hash"], Item={"pk": {"S": "tls"}, "v": {"S": "secret"}})
    assert dax.get_item(TableName=tables["hash"], Key={"pk": {"S": "tls"}})["Item"]["v"] == {"S": "secret"}


def test_boto3_over_https(tls_node: tuple[DaxdNode, Path, int, int], tables: dict[str, str]) -> None:
    _node, cert, _, https_port = tls_node
    api = client(f"https://localhost:{https_port}", verify=str(cert))
    api.put_item(TableName=tables["hash"], Item={"pk": {"S": "https"}})
    assert api.get_item(TableName=tables["hash"], Key={"pk": {"S": "https"}})["Item"] == {"pk": {"S": "https"}}


def test_js_client_over_daxs(tls_node: tuple[DaxdNode, Path, int, int], ddb: Any) -> None:
    _node, cert, dax_port, _ = tls_node
    got = run_js(f"daxs://127.0.0.1:{dax_port}", create_table(ddb, gsi=True), create_table(ddb, range_key=None),
                 extra_env={"NODE_EXTRA_CA_CERTS": str(cert)})
    assert got["get"]["s"] == {"S": "x"} and got["conditional_failed"]["error"] == "ConditionalCheckFailedException"


def test_https_pipeliners_that_never_read_are_flow_controlled(tls_node: tuple[DaxdNode, Path, int, int],
                                                               tables: dict[str, str]) -> None:
    """The TLS transports get the same write flow control as the plain ones (docs/limits.md)."""
    import socket
    import ssl
    import time

    import orjson

    from tests.integration.listener_tools import api_request, rss_bytes

    node, cert, _, https_port = tls_node
    api = client(f"https://localhost:{https_port}", verify=str(cert))
    api.put_item(TableName=tables["hash"], Item={"pk": {"S": "big-tls"}, "v": {"S": "x" * 50_000}})
    frame = api_request("GetItem", orjson.dumps({"TableName": tables["hash"], "Key": {"pk": {"S": "big-tls"}}}))
    context = ssl.create_default_context(cafile=str(cert))
    before = rss_bytes(node.process.pid)
    socks = []
    try:
        for _ in range(10):
            sock = context.wrap_socket(socket.create_connection(("127.0.0.1", https_port), timeout=10),
                                       server_hostname="localhost")
            sock.setblocking(False)
            socks.append(sock)
            sent, deadline = 0, time.monotonic() + 3
            while sent < 2 << 20 and time.monotonic() < deadline:  # ~40 MB of replies if all were answered
                try:
                    sent += sock.send(frame * 20)
                except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    time.sleep(0.01)
        assert api.get_item(TableName=tables["hash"], Key={"pk": {"S": "big-tls"}})["Item"]["pk"] == {"S": "big-tls"}
        assert rss_bytes(node.process.pid) - before < 100 << 20
    finally:
        for sock in socks:
            sock.close()
