"""Micro-benchmark: lean SigV4 sign/verify vs botocore's SigV4Auth.

Run: ``.venv/bin/python -m benchmarks.bench_sigv4``. Prints the median µs/op of 7 repeats.
"""

from __future__ import annotations

import datetime
import statistics
import time
from collections.abc import Callable

import botocore.auth
import botocore.awsrequest
import botocore.credentials

from daxd.sigv4 import (
    Credentials,
    Signer,
    dax_canonical_request_hashes,
    signing_key,
    verify,
    verify_dax_authorization,
)

NOW = datetime.datetime(2026, 5, 1, 12, 0, 0, tzinfo=datetime.UTC)
BODY = b'{"TableName":"bench","Key":{"id":{"S":"user#12345"}}}'
HEADERS = {"X-Amz-Target": "DynamoDB_20120810.GetItem", "Content-Type": "application/x-amz-json-1.0"}
CREDS = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")


def median_us(fn: Callable[[], object], number: int = 20000, repeats: int = 7) -> float:
    """Median over ``repeats`` of the mean µs per call over ``number`` calls."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - start) / number * 1e6)
    return statistics.median(runs)


def botocore_sign() -> None:
    """What boto3 pays per request for signing (request object + add_auth)."""
    request = botocore.awsrequest.AWSRequest("POST", "https://dynamodb.us-east-1.amazonaws.com/",
                                             headers=dict(HEADERS), data=BODY)
    AUTH.add_auth(request)


AUTH = botocore.auth.SigV4Auth(botocore.credentials.Credentials(CREDS.access_key, CREDS.secret_key),
                               "dynamodb", "us-east-1")


def main() -> None:
    """Print sign and verify costs."""
    signer = Signer("us-east-1")
    host = "dynamodb.us-east-1.amazonaws.com"
    signed = signer.sign("POST", host, "/", HEADERS, BODY, CREDS, NOW)
    request = {k.lower(): v for k, v in (HEADERS | signed).items()} | {"host": host}
    secrets = {CREDS.access_key: CREDS.secret_key}
    stamp = "20260501T120000Z"
    dax_hash = sorted(dax_canonical_request_hashes(stamp))[0]
    dax_sts = f"AWS4-HMAC-SHA256\n{stamp}\n20260501/us-east-1/dax/aws4_request\n{dax_hash}".encode()
    dax_sig = signing_key(CREDS.secret_key, "20260501", "us-east-1", "dax").hexdigest(dax_sts)
    sign = median_us(lambda: signer.sign("POST", host, "/", HEADERS, BODY, CREDS, NOW))
    print(f"lean sign            {sign:7.2f} µs")
    print(f"botocore SigV4Auth   {median_us(botocore_sign, number=2000):7.2f} µs")
    check = median_us(lambda: verify("POST", "/", "", request, BODY, secrets, NOW))
    print(f"lean verify          {check:7.2f} µs")
    dax = median_us(lambda: verify_dax_authorization(CREDS.access_key, dax_sig, dax_sts, secrets, NOW))
    print(f"lean verify (DAX)    {dax:7.2f} µs")


if __name__ == "__main__":
    main()
