"""DynamoDB Streams over the upstream client: where its calls go, and the client the tailer uses.

On AWS the Streams API has its own endpoint (``streams.dynamodb.<region>``);
elsewhere (DynamoDB Local, a compatible server) it is the DynamoDB endpoint.
"""

from __future__ import annotations

from typing import Protocol

from daxd.model.errors import from_upstream
from daxd.upstream.client import Upstream

STREAMS_TARGET_PREFIX = "DynamoDBStreams_20120810."


def streams_endpoint(region: str) -> str:
    """The public DynamoDB Streams endpoint of a region (signed as service ``dynamodb``)."""
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://streams.dynamodb.{region}.{suffix}"


class StreamsClient(Protocol):
    """What the tailer needs: DynamoDB (DescribeTable) and DynamoDB Streams calls."""

    async def call(self, operation: str, body: bytes) -> bytes: ...

    async def call_streams(self, operation: str, body: bytes) -> bytes: ...


class StreamsUpstream:
    """DynamoDB and DynamoDB Streams over :class:`Upstream` clients.

    DynamoDB Local (and Alternator) serve Streams on the DynamoDB endpoint, so
    one Upstream does both; AWS serves them at :func:`streams_endpoint`, given
    as ``streams``.
    """

    def __init__(self, dynamodb: Upstream, streams: Upstream | None = None) -> None:
        self.dynamodb = dynamodb
        self.streams = streams or dynamodb

    async def call(self, operation: str, body: bytes) -> bytes:
        """A DynamoDB call; raises the upstream's DaxdError."""
        return await self.dynamodb.call(operation, body)

    async def call_streams(self, operation: str, body: bytes) -> bytes:
        """A DynamoDB Streams call (``DynamoDBStreams_20120810.<operation>``).

        Raises:
            DaxdError: the service's error (e.g. code ``ExpiredIteratorException``),
                or ServiceUnavailable when the endpoint cannot be reached.
        """
        status, reply = await self.streams.forward(STREAMS_TARGET_PREFIX + operation, body)
        if not 200 <= status < 300:
            raise from_upstream(status, reply)
        return reply

    async def close(self) -> None:
        """Close the streams upstream if it is not the DynamoDB one (whose owner closes it)."""
        if self.streams is not self.dynamodb:
            await self.streams.close()


# -- shards: pure decisions ------------------------------------------------------
