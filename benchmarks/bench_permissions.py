"""What per-key permissions cost a cached GetItem, in the front ends' application code (no sockets).

The same cached GetItem is answered by the HTTP application (DynamoDBApp) and
the DAX service (a memoized plain getItem) three ways, in one run:

- yardstick: no key file (no permission check at all);
- a key without rules (one dict lookup per request);
- a key whose rules allow the table (the request's table is checked).

SigV4 verification is left out (the HTTP authorizer is a stub returning the
key; a DAX connection authenticates once), so the figures are the check's own
cost. Reports µs per request (best of 7 interleaved rounds) and the difference.

    python -m benchmarks.bench_permissions [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from benchmarks.bench_dax import PREAMBLE, get_item_request
from daxd.accelerator import Accelerator
from daxd.auth import KeyRing
from daxd.drivers import AsyncDriver
from daxd.frontends.dax.attrs import AttributeListTable
from daxd.frontends.dax.codec import DaxConnection
from daxd.frontends.dax.events import PlainGetItem
from daxd.frontends.dax.service import DaxService
from daxd.frontends.http import DynamoDBApp
from daxd.frontends.httpserver import HttpRequest
from daxd.model.keys import TableSchema
from daxd.observability import Metrics

TABLE = "bench"
KEY = {"pk": {"S": "user#000001"}, "sk": {"N": "0"}}
KEYS = '[keys]\nFULL = "a"\nLIMITED = "b"\n[permissions.LIMITED]\ntables = ["other", "bench*"]\noperations = ["read"]\n'


def accelerator() -> Accelerator:
    acc = Accelerator()
    acc.schemas[TABLE] = TableSchema.from_description({
        "TableName": TABLE, "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                                          {"AttributeName": "sk", "KeyType": "RANGE"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                 {"AttributeName": "sk", "AttributeType": "N"}]})
    ref = acc.item_ref({"TableName": TABLE, "Key": KEY})
    assert ref is not None
    item = {**KEY, "payload": {"S": "x" * 1000}}
    acc.items.fill(*ref, orjson.dumps(item), acc.items.token(ref[0], ref[1]))
    return acc


def per_call(calls: list[Callable[[], Any]], count: int, rounds: int = 7) -> list[float]:
    """µs per call of each, best of ``rounds``; the cases take turns within each round (a busy box's
    noise then falls on all of them alike)."""
    best = [float("inf")] * len(calls)
    for _ in range(rounds):
        for index, call in enumerate(calls):
            started = time.perf_counter()
            for _ in range(count):
                call()
            best[index] = min(best[index], (time.perf_counter() - started) / count)
    return [b * 1e6 for b in best]


def http_case(keyring: KeyRing | None, key: str) -> Callable[[], Any]:
    acc = accelerator()
    app = DynamoDBApp(AsyncDriver(acc, None), acc.metrics, lambda _request: key, keyring)  # type: ignore[arg-type]
    headers = {b"x-amz-target": b"DynamoDB_20120810.GetItem", b"content-type": b"application/x-amz-json-1.0"}
    request = HttpRequest("POST", "/", headers, orjson.dumps({"TableName": TABLE, "Key": KEY}))
    assert app(request).status == 200  # type: ignore[union-attr]
    return lambda: app(request)


def dax_case(keyring: KeyRing | None, key: str) -> Callable[[], Any]:
    acc = accelerator()
    service = DaxService(AsyncDriver(acc, None), AttributeListTable(1000), keyring=keyring)  # type: ignore[arg-type]
    session = service.session(("127.0.0.1", 8111), "bench")
    session.access_key = key
    codec = DaxConnection()
    codec.receive_data(PREAMBLE + get_item_request(TABLE, "user#000001"))
    event = codec.next_event()
    while not isinstance(event, PlainGetItem):
        event = codec.next_event()
    for _ in range(2):  # the first fills the memo; both are hits answered at once
        reply = service.handle(session, event)
        assert isinstance(reply, bytes) and len(reply) > 1000, reply
    return lambda: service.handle(session, event)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    count = 10_000 if parser.parse_args().quick else 50_000
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "keys.toml"
        path.write_text(KEYS)
        ring = KeyRing(path, Metrics())
        print(f"cached GetItem, µs per request in the application (best of 7 x {count:,}):")
        print("| front end | no key file | key without rules | Δ | key with rules | Δ |")
        print("|---|---|---|---|---|---|")
        for name, case in (("HTTP (DynamoDBApp)", http_case), ("DAX (DaxService)", dax_case)):
            base, full, limited = per_call([case(None, "FULL"), case(ring, "FULL"), case(ring, "LIMITED")], count)
            print(f"| {name} | {base:.2f} | {full:.2f} | {full - base:+.2f} | {limited:.2f} | {limited - base:+.2f} |")


if __name__ == "__main__":
    main()
