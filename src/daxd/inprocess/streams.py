"""``accelerate(..., streams=True)``: the node's stream tailer, in a background thread.

The tailer (:mod:`daxd.streams.tailer`) is asyncio code; here it runs on a
private event loop in a daemon thread and reaches DynamoDB and DynamoDB
Streams through boto3 clients with the application's own credentials, region
and endpoint. Blocking boto3 calls are fine on that loop: it runs nothing
else. Every use of the Accelerator happens under the wrapper's lock.

DynamoDB Streams allows about two concurrent readers per shard: one or two
processes per table may use ``streams=True``; more should share a daxd node.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import botocore.session

from daxd.inprocess import convert
from daxd.inprocess.client import wrap_upstream
from daxd.inprocess.driver import ThreadedDriver
from daxd.streams.tailer import StreamTailer, TailerSettings

log = logging.getLogger("daxd.inprocess.streams")


class Boto3Streams:
    """The tailer's client (DescribeTable; DescribeStream, GetShardIterator, GetRecords) over boto3."""

    def __init__(self, dynamodb: Any, streams: Any) -> None:
        self.dynamodb = dynamodb
        self.streams = streams

    async def call(self, operation: str, body: bytes) -> bytes:
        return self._call(self.dynamodb, operation, body)

    async def call_streams(self, operation: str, body: bytes) -> bytes:
        return self._call(self.streams, operation, body)

    @staticmethod
    def _call(client: Any, operation: str, body: bytes) -> bytes:
        model = client.meta.service_model.operation_model(operation)
        method = getattr(client, _python_name(client, operation))
        try:
            response = method(**convert.request_params(body, model.input_shape))
        except Exception as exc:
            raise wrap_upstream(exc, operation) from exc
        return convert.response_json(response)

    async def close(self) -> None:
        self.streams.close()


def _python_name(client: Any, operation: str) -> str:
    mapping: dict[str, str] = client.meta.method_to_api_mapping
    return next(name for name, api in mapping.items() if api == operation)


def streams_client_for(dynamodb: Any) -> Any:
    """A ``dynamodbstreams`` client with the DynamoDB client's region, endpoint and credentials.

    AWS serves Streams on its own endpoint (botocore picks it); DynamoDB Local,
    Alternator and LocalStack serve them on the DynamoDB endpoint itself.
    """
    session = botocore.session.get_session()
    endpoint = dynamodb.meta.endpoint_url
    credentials = dynamodb._request_signer._credentials  # botocore keeps no public handle on them
    frozen = credentials.get_frozen_credentials() if credentials is not None else None
    return session.create_client(
        "dynamodbstreams", region_name=dynamodb.meta.region_name,
        endpoint_url=None if "amazonaws.com" in endpoint else endpoint,
        aws_access_key_id=frozen.access_key if frozen else None,
        aws_secret_access_key=frozen.secret_key if frozen else None,
        aws_session_token=frozen.token if frozen else None)


class StreamsThread:
    """A StreamTailer on its own loop in a daemon thread; :meth:`stop` ends both."""

    def __init__(self, driver: ThreadedDriver, client: Boto3Streams, settings: TailerSettings | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.tailer = StreamTailer(driver.accelerator, client, settings=settings, guard=driver.lock)
        self.client = client
        self._thread = threading.Thread(target=self._run, name="daxd-streams", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self.tailer.start)
        self.loop.run_forever()
        self.loop.run_until_complete(self.client.close())
        self.loop.close()

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self.tailer.stop(), self.loop)
        try:
            future.result(timeout=10)
        except Exception:
            log.exception("stopping the streams tailer")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
