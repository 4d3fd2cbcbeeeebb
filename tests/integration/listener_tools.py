"""Helpers for the listener tests: raw HTTP over sockets, metrics, a node's RSS from /proc."""

from __future__ import annotations

import re
import socket
import urllib.request

import orjson

from tests.harness import DaxdNode


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, read from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def fd_count(pid: int) -> int:
    import os
    return len(os.listdir(f"/proc/{pid}/fd"))


def metrics(node: DaxdNode) -> str:
    with urllib.request.urlopen(f"{node.admin}/metrics", timeout=10) as response:
        return str(response.read().decode())


def refused(node: DaxdNode, listener: str, reason: str) -> float:
    """``daxd_connections_refused_total{listener, reason}`` (0 when absent)."""
    pattern = rf'daxd_connections_refused_total\{{listener="{listener}",reason="{reason}"\}} (\S+)'
    match = re.search(pattern, metrics(node))
    return float(match.group(1)) if match else 0.0


def api_request(operation: str, body: dict[str, object] | bytes, *, extra: bytes = b"",
                version: bytes = b"HTTP/1.1") -> bytes:
    """A DynamoDB API request's bytes (``extra``: more header lines, each ending in CRLF)."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return (b"POST / %s\r\nHost: localhost\r\nX-Amz-Target: DynamoDB_20120810.%s\r\n"
            b"Content-Type: application/x-amz-json-1.0\r\nContent-Length: %d\r\n%s\r\n"
            % (version, operation.encode(), len(data), extra)) + data


class RawResponse:
    """One response read off a socket: status, headers (lower-cased names), body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


def read_response(sock: socket.socket, buffer: bytearray, *, head: bool = False) -> RawResponse:
    """Read one response (Content-Length framed) from ``sock``; leftover bytes stay in ``buffer``."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {bytes(buffer)!r}")
        buffer += chunk
    end = buffer.index(b"\r\n\r\n")
    lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    del buffer[:end + 4]
    status = int(lines[0].split()[1])
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    length = 0 if head or status == 100 else int(headers.get("content-length", "0"))
    while len(buffer) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the middle of a body")
        buffer += chunk
    body = bytes(buffer[:length])
    del buffer[:length]
    return RawResponse(status, headers, body)


def closed_by_peer(sock: socket.socket, buffer: bytearray = bytearray()) -> bool:  # noqa: B008
    """True when the peer has closed (EOF, or a reset) with nothing more to read."""
    try:
        return not buffer and sock.recv(1) == b""
    except ConnectionResetError:
        return True


def connect(node: DaxdNode, port: str = "http") -> socket.socket:
    return socket.create_connection(("127.0.0.1", node.ports[port]), timeout=15)
