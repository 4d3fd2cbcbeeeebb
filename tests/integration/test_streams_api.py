"""The DynamoDB Streams API through daxd's HTTP port: forwarded to the upstream's Streams endpoint."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.harness import CLIENT_CONFIG, CREDENTIALS, DaxdNode, DynamoDBLocal, create_table


def streams_client(endpoint: str) -> Any:
    return boto3.client("dynamodbstreams", endpoint_url=endpoint, config=CLIENT_CONFIG, **CREDENTIALS)


def test_a_streams_client_pointed_at_daxd_reads_the_writes_made_through_it(node: DaxdNode, ddb: Any) -> None:
    table = create_table(ddb, stream=True)
    node.client().put_item(TableName=table, Item={"pk": {"S": "s1"}, "sk": {"N": "1"}, "v": {"S": "one"}})
    streams = streams_client(node.endpoint)

    listed = streams.list_streams(TableName=table)["Streams"]
    assert [s["TableName"] for s in listed] == [table]
    arn = listed[0]["StreamArn"]
    description = streams.describe_stream(StreamArn=arn)["StreamDescription"]
    assert description["StreamArn"] == arn and description["KeySchema"][0]["AttributeName"] == "pk"
    records = []
    for shard in description["Shards"]:
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records += streams.get_records(ShardIterator=iterator)["Records"]
    images = [r["dynamodb"].get("NewImage") for r in records if r["eventName"] == "INSERT"]
    assert {"pk": {"S": "s1"}, "sk": {"N": "1"}, "v": {"S": "one"}} in images


def test_streams_errors_are_the_upstreams_own(node: DaxdNode, dynamodb_local: DynamoDBLocal) -> None:
    answers = []
    for endpoint in (node.endpoint, dynamodb_local.endpoint):
        with pytest.raises(ClientError) as caught:
            streams_client(endpoint).describe_stream(
                StreamArn="arn:aws:dynamodb:ddblocal:000000000000:table/missing/stream/2020-01-01T00:00:00.000")
        error = caught.value.response
        answers.append((error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"], error["Error"]["Message"]))
    assert answers[0] == answers[1]
    assert 400 <= answers[0][0] < 500
