"""SigV4: AWS's published vectors, byte equality with botocore, verification, DAX auth."""

from __future__ import annotations

import collections
import datetime
import hashlib
import hmac
from typing import Any
from unittest import mock

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest
from amazondax import SigV4Gen
from hypothesis import given
from hypothesis import strategies as st

from daxd import sigv4
from daxd.model.errors import (
    ClientError,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)
from daxd.sigv4 import Credentials, Signer, verify, verify_dax_authorization

# --- AWS Signature Version 4 test suite ----------------------------------------------------------
# Source: aws-sig-v4-test-suite, https://docs.aws.amazon.com/general/latest/gr/signature-v4-test-suite.html
# (also shipped in awslabs/aws-c-auth tests and aws-sdk-js-v3 signature-v4 suite.fixture).
# All cases: access key AKIDEXAMPLE, region us-east-1, service "service", 20150830T123600Z,
# host example.amazonaws.com. Only the cases whose headers this signer signs are embedded.
SUITE_CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SUITE_TIME = datetime.datetime(2015, 8, 30, 12, 36, 0, tzinfo=datetime.UTC)
SUITE_SCOPE = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
SUITE = [  # (name, method, path?query, headers, body, expected Authorization tail)
    ("get-vanilla", "GET", "/", {}, b"",
     "SignedHeaders=host;x-amz-date, "
     "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
    ("post-vanilla", "POST", "/", {}, b"",
     "SignedHeaders=host;x-amz-date, "
     "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
    ("get-vanilla-query-order-key-case", "GET", "/?Param2=value2&Param1=value1", {}, b"",
     "SignedHeaders=host;x-amz-date, "
     "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
    ("post-header-key-sort", "POST", "/", {"My-Header1": "value1"}, b"",
     "SignedHeaders=host;my-header1;x-amz-date, "
     "Signature=c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c"),
    ("post-header-value-case", "POST", "/", {"My-Header1": "VALUE1"}, b"",
     "SignedHeaders=host;my-header1;x-amz-date, "
     "Signature=cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d"),
    ("post-x-www-form-urlencoded", "POST", "/",
     {"Content-Type": "application/x-www-form-urlencoded"}, b"Param1=value1",
     "SignedHeaders=content-type;host;x-amz-date, "
     "Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"),
]


@pytest.mark.parametrize(("name", "method", "target", "headers", "body", "want"), SUITE)
def test_aws_test_suite_sign(name: str, method: str, target: str, headers: dict[str, str], body: bytes,
                             want: str) -> None:
    signed = Signer("us-east-1", "service").sign(method, "example.amazonaws.com", target, headers, body,
                                                 SUITE_CREDENTIALS, SUITE_TIME)
    assert signed == {"X-Amz-Date": "20150830T123600Z", "Authorization": SUITE_SCOPE + want}


@pytest.mark.parametrize(("name", "method", "target", "headers", "body", "want"), SUITE)
def test_aws_test_suite_verify(name: str, method: str, target: str, headers: dict[str, str],
                               body: bytes, want: str) -> None:
    path, _, query = target.partition("?")
    request = {k.lower(): v for k, v in headers.items()}
    request |= {"host": "example.amazonaws.com", "x-amz-date": "20150830T123600Z",
                "authorization": SUITE_SCOPE + want}
    secrets = {"AKIDEXAMPLE": SUITE_CREDENTIALS.secret_key}
    assert verify(method, path, query, request, body, secrets, SUITE_TIME, service="service") == "AKIDEXAMPLE"


# --- byte equality with botocore -----------------------------------------------------------------
NOW = datetime.datetime(2026, 5, 1, 12, 34, 56, tzinfo=datetime.UTC)
DDB_REQUESTS = [
    ("dynamodb.us-east-1.amazonaws.com", "GetItem", b'{"TableName":"t","Key":{"id":{"S":"1"}}}'),
    ("127.0.0.1:8000", "PutItem", b'{"TableName":"t","Item":{"id":{"S":"\xc3\xa9"}}}'),
    ("localhost:8000", "ListTables", b"{}"),
    ("dynamodb.eu-west-1.amazonaws.com", "Query", b""),
]


def botocore_sign(host: str, target: str, body: bytes, creds: Credentials, region: str) -> dict[str, str]:
    headers = {"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.0"}
    request = botocore.awsrequest.AWSRequest("POST", f"https://{host}/", headers=headers, data=body)
    auth = botocore.auth.SigV4Auth(
        botocore.credentials.Credentials(creds.access_key, creds.secret_key, creds.token), "dynamodb", region)
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        auth.add_auth(request)
    wanted = ("Authorization", "X-Amz-Date", "X-Amz-Security-Token")
    return {name: request.headers[name] for name in wanted if name in request.headers}


@pytest.mark.parametrize("token", [None, "FQoGZXIvYXdzEJr//////////wEaDH+session/token=="])
@pytest.mark.parametrize(("host", "operation", "body"), DDB_REQUESTS)
def test_sign_matches_botocore_byte_for_byte(host: str, operation: str, body: bytes,
                                             token: str | None) -> None:
    creds = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", token)
    target = f"DynamoDB_20120810.{operation}"
    headers = {"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.0"}
    ours = Signer("eu-west-1").sign("POST", host, "/", headers, body, creds, NOW)
    assert ours == botocore_sign(host, target, body, creds, "eu-west-1")


def test_one_signer_reused_matches_botocore_for_every_request() -> None:
    """The canonical-request templates a Signer keeps never leak one request's parts into another's."""
    signer = Signer("eu-west-1")
    plain = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    session = Credentials("ASIAEXAMPLE", "secret2", "FQoGZXIvYXdzEJr//////////wEaDH+session/token==")
    for _round in range(2):  # the second round only uses kept templates
        for creds in (plain, session):
            for host, operation, body in DDB_REQUESTS:
                target = f"DynamoDB_20120810.{operation}"
                headers = {"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.0"}
                ours = signer.sign("POST", host, "/", headers, body, creds, NOW)
                assert ours == botocore_sign(host, target, body, creds, "eu-west-1")


def test_naive_time_is_utc() -> None:
    creds = Credentials("AK", "SK")
    signer = Signer("us-east-1")
    aware = signer.sign("POST", "h", "/", {}, b"", creds, NOW)
    assert signer.sign("POST", "h", "/", {}, b"", creds, NOW.replace(tzinfo=None)) == aware
    tokyo = NOW.astimezone(datetime.timezone(datetime.timedelta(hours=9)))
    assert signer.sign("POST", "h", "/", {}, b"", creds, tokyo) == aware


@given(st.binary(max_size=300), st.text(max_size=50))
def test_prekeyed_hmac_equals_hmac(message: bytes, secret: str) -> None:
    key = sigv4.signing_key(secret, "20260501", "us-east-1", "dynamodb")
    assert key.hexdigest(message) == hmac.new(key.raw, message, hashlib.sha256).hexdigest()


# --- verification ----------------------------------------------------------------------------------
SECRETS = {"AKID": "SECRET"}
BODY = b'{"TableName":"t","Key":{"id":{"S":"1"}}}'


KEY = Credentials("AKID", "SECRET")


def signed_request(creds: Credentials = KEY, body: bytes = BODY,
                   when: datetime.datetime = NOW) -> dict[str, str]:
    headers = {"X-Amz-Target": "DynamoDB_20120810.GetItem", "Content-Type": "application/x-amz-json-1.0"}
    headers |= Signer("us-east-1").sign("POST", "localhost:8111", "/", headers, body, creds, when)
    headers["Host"] = "localhost:8111"
    headers["User-Agent"] = "not signed"
    return {k.lower(): v for k, v in headers.items()}


def test_verify_round_trip() -> None:
    assert verify("POST", "/", "", signed_request(), BODY, SECRETS, NOW) == "AKID"
    with_token = signed_request(Credentials("AKID", "SECRET", "TOKEN"))
    assert verify("POST", "/", "", with_token, BODY, SECRETS, NOW, region="us-east-1",
                  service="dynamodb") == "AKID"


def test_verify_missing_authorization() -> None:
    headers = signed_request()
    del headers["authorization"]
    with pytest.raises(MissingAuthenticationTokenException):
        verify("POST", "/", "", headers, BODY, SECRETS, NOW)


def test_verify_unknown_key() -> None:
    with pytest.raises(UnrecognizedClientException, match="security token included in the request is invalid"):
        verify("POST", "/", "", signed_request(Credentials("OTHER", "SECRET")), BODY, SECRETS, NOW)


@pytest.mark.parametrize("tamper", ["secret", "body", "target", "signature", "unsigned-host"])
def test_verify_rejects_tampering(tamper: str) -> None:
    headers = signed_request(Credentials("AKID", "WRONG") if tamper == "secret" else Credentials("AKID", "SECRET"))
    body = BODY + b" " if tamper == "body" else BODY
    if tamper == "target":
        headers["x-amz-target"] = "DynamoDB_20120810.DeleteItem"
    if tamper == "signature":
        headers["authorization"] = headers["authorization"][:-1] + "0"
    if tamper == "unsigned-host":
        del headers["host"]
    with pytest.raises(InvalidSignatureException, match="signature we calculated does not match"):
        verify("POST", "/", "", headers, body, SECRETS, NOW)


def test_verify_expired_and_future_dates() -> None:
    headers = signed_request()
    later = NOW + datetime.timedelta(minutes=6)
    with pytest.raises(InvalidSignatureException, match=r"Signature expired: 20260501T123456Z is now earlier "
                                                        r"than 20260501T123556Z \(20260501T124056Z - 5 min.\)"):
        verify("POST", "/", "", headers, BODY, SECRETS, later)
    with pytest.raises(InvalidSignatureException, match="Signature not yet current"):
        verify("POST", "/", "", headers, BODY, SECRETS, NOW - datetime.timedelta(minutes=6))
    assert verify("POST", "/", "", headers, BODY, SECRETS, NOW + datetime.timedelta(minutes=4)) == "AKID"


def test_verify_scope_and_malformed_header() -> None:
    with pytest.raises(InvalidSignatureException, match="scoped"):
        verify("POST", "/", "", signed_request(), BODY, SECRETS, NOW, region="eu-west-1")
    headers = signed_request() | {"authorization": "AWS4-HMAC-SHA256 Credential=AKID"}
    with pytest.raises(ClientError) as info:
        verify("POST", "/", "", headers, BODY, SECRETS, NOW)
    assert info.value.code == "IncompleteSignatureException" and info.value.status == 400


class _Captured(Exception):
    pass


def test_verify_accepts_what_boto3_sends() -> None:
    """A real boto3 client chooses its own signed headers; verification follows SignedHeaders."""
    seen: list[botocore.awsrequest.AWSPreparedRequest] = []

    def capture(request: botocore.awsrequest.AWSPreparedRequest, **_: Any) -> None:
        seen.append(request)
        raise _Captured

    client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url="http://localhost:8111",
                          aws_access_key_id="AKID", aws_secret_access_key="SECRET", aws_session_token="TOK")
    client.meta.events.register("before-send.dynamodb", capture)
    with pytest.raises(_Captured):
        client.get_item(TableName="t", Key={"id": {"S": "1"}})
    request = seen[0]
    headers = {k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()}
    headers["host"] = "localhost:8111"  # added by the HTTP layer after signing
    when = sigv4.parse_amz_date(headers["x-amz-date"])
    body = request.body if isinstance(request.body, bytes) else str(request.body).encode()
    assert verify("POST", "/", "", headers, body, SECRETS, when, region="us-east-1") == "AKID"
    with pytest.raises(InvalidSignatureException):
        verify("POST", "/", "", headers, body + b"x", SECRETS, when)


# --- DAX authorizeConnection ----------------------------------------------------------------------
DaxCreds = collections.namedtuple("DaxCreds", "access_key secret_key token")
DAX_TIME = datetime.datetime(2026, 11, 26, 14, 6, 44)


def dax_signature(secret: str = "SECRET", when: datetime.datetime = DAX_TIME,
                  region: str = "us-east-1") -> tuple[str, bytes]:
    """Signed exactly as the amazondax client's Tube._auth does."""
    sig = SigV4Gen.generate_signature(DaxCreds("AKID", secret, "TOKEN"), "https://dax.amazonaws.com",
                                      region, b"", when)
    return sig.signature, sig.string_to_sign.encode()


def test_dax_client_signature_verifies() -> None:
    signature, sts = dax_signature()
    assert sts.split(b"\n")[3] == b"3a5e09b4e4213e497e5a903b7ecc008154b9c8746780ad559c51998ec940a2aa"  # §1.3
    assert verify_dax_authorization("AKID", signature, sts, SECRETS, DAX_TIME, region="us-east-1") == "AKID"
    aware = DAX_TIME.replace(tzinfo=datetime.UTC) + datetime.timedelta(seconds=100)
    assert verify_dax_authorization("AKID", signature, sts, SECRETS, aware) == "AKID"


def test_dax_go_client_form_verifies() -> None:
    """Go clients hash a canonical request with host ``https://dax.amazonaws.com`` (addendum A)."""
    creq = ("POST\n/\n\nhost:https://dax.amazonaws.com\nx-amz-date:20261126T140644Z\n\nhost;x-amz-date\n"
            + sigv4.EMPTY_SHA256)
    sts = ("AWS4-HMAC-SHA256\n20261126T140644Z\n20261126/us-east-1/dax/aws4_request\n"
           + hashlib.sha256(creq.encode()).hexdigest()).encode()
    assert sts.split(b"\n")[3].startswith(b"8f671883")  # the hash the addendum quotes
    key = sigv4.signing_key("SECRET", "20261126", "us-east-1", "dax")
    signature = key.hexdigest(sts)
    assert verify_dax_authorization("AKID", signature, sts, SECRETS, DAX_TIME) == "AKID"


def test_dax_rejections() -> None:
    signature, sts = dax_signature()
    with pytest.raises(UnrecognizedClientException):
        verify_dax_authorization("NOPE", signature, sts, SECRETS, DAX_TIME)
    with pytest.raises(InvalidSignatureException, match="does not match"):
        verify_dax_authorization("AKID", dax_signature(secret="WRONG")[0], sts, SECRETS, DAX_TIME)
    with pytest.raises(InvalidSignatureException, match="Signature expired"):
        verify_dax_authorization("AKID", signature, sts, SECRETS, DAX_TIME + datetime.timedelta(minutes=6))
    with pytest.raises(InvalidSignatureException, match="region"):
        verify_dax_authorization("AKID", signature, sts, SECRETS, DAX_TIME, region="eu-west-1")
    with pytest.raises(InvalidSignatureException, match="dax service"):
        verify_dax_authorization("AKID", signature, sts.replace(b"/dax/", b"/dynamodb/"), SECRETS, DAX_TIME)
    with pytest.raises(InvalidSignatureException, match="Malformed"):
        verify_dax_authorization("AKID", signature, sts + b"\nextra", SECRETS, DAX_TIME)
    odd = sts[:-64] + hashlib.sha256(b"other").hexdigest().encode()
    with pytest.raises(InvalidSignatureException, match="does not match"):
        verify_dax_authorization("AKID", signature, odd, SECRETS, DAX_TIME)
