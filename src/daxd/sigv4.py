"""A lean AWS Signature Version 4 signer and verifier.

Why not botocore: ``SigV4Auth.add_auth`` costs about 61 µs per request, this
module about a tenth of that (``benchmarks/bench_sigv4.py``),
and botocore reads the clock itself. Here the
time is always a parameter.

Three entry points:

* :class:`Signer` signs the requests the upstream client sends to DynamoDB.
* :func:`verify` checks a SigV4 ``Authorization`` header on a request a client
  sent to daxd's HTTP front end (whatever headers the client chose to sign).
* :func:`verify_dax_authorization` checks the ``authorizeConnection`` message of
  the DAX protocol, whose signature covers a client-built string to sign
  (docs/protocol.md, "Authentication").

Derived signing keys are cached per (secret, date, region, service), so the
steady state costs two SHA-256 and one pre-keyed HMAC per request.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import quote

from daxd.model.errors import (
    ClientError,
    DaxdError,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
    from_code,
)

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
#: Headers never signed, as botocore (``SIGNED_HEADERS_BLACKLIST``) plus framing headers.
_UNSIGNED = frozenset({
    "authorization", "connection", "content-length", "expect", "transfer-encoding",
    "user-agent", "x-amzn-trace-id",
})
#: Headers :meth:`Signer.sign` computes itself and so skips in the caller's dict.
_COMPUTED = _UNSIGNED | {"host", "x-amz-date", "x-amz-security-token"}
#: The host DAX clients put in their synthetic canonical request (Python/JS, then Go).
DAX_HOSTS = ("dax.amazonaws.com", "https://dax.amazonaws.com")

INVALID_TOKEN = "The security token included in the request is invalid."
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)
_KEY_CACHE_MAX = 256


class SigningKey:
    """A derived SigV4 key with its HMAC pads pre-hashed.

    HMAC(k, m) = H(k^opad || H(k^ipad || m)); copying the two pre-keyed SHA-256
    states costs ~1 µs per signature, against ~2.5-4.5 µs for ``hmac.new`` or
    ``hmac.digest`` (OpenSSL 3 fetches the digest on every call).
    """

    __slots__ = ("_inner", "_outer", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        block = raw.ljust(64, b"\0")  # a SHA-256 key is 32 bytes, under the 64-byte block
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def hexdigest(self, message: bytes) -> str:
        """Lower-case hex HMAC-SHA256 of ``message``."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


_keys: dict[tuple[str, str, str, str], SigningKey] = {}


@dataclass(frozen=True, slots=True)
class Credentials:
    """An access key pair, with the session token of temporary credentials."""

    access_key: str
    secret_key: str
    token: str | None = None


def signing_key(secret: str, date: str, region: str, service: str) -> SigningKey:
    """The derived SigV4 key, cached: it only changes once a day per secret."""
    cache_key = (secret, date, region, service)
    key = _keys.get(cache_key)
    if key is None:
        raw = _hmac(("AWS4" + secret).encode(), date)
        for part in (region, service, "aws4_request"):
            raw = _hmac(raw, part)
        if len(_keys) >= _KEY_CACHE_MAX:
            _keys.clear()
        key = _keys[cache_key] = SigningKey(raw)
    return key


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.digest(key, msg.encode(), "sha256")


def amz_date(now: datetime.datetime) -> str:
    """``YYYYMMDDTHHMMSSZ`` in UTC; a naive ``now`` is taken to be UTC already."""
    if now.tzinfo is not None and now.tzinfo is not datetime.UTC:
        now = now.astimezone(datetime.UTC)
    return f"{now.year:04d}{now.month:02d}{now.day:02d}T{now.hour:02d}{now.minute:02d}{now.second:02d}Z"


def _canonical_uri(path: str) -> str:
    # botocore quotes the (already URL-encoded) path once more for non-S3 services.
    return "/" if path == "/" else quote(path, safe="/~")


def _canonical_query(query: str) -> str:
    # As botocore's ``_canonical_query_string_url``: sort the raw pairs.
    if not query:
        return ""
    pairs = sorted(pair.partition("=")[::2] for pair in query.split("&"))
    return "&".join(f"{k}={v}" for k, v in pairs)


def _trim(value: str) -> str:
    return " ".join(value.split())


def _string_to_sign(date: str, scope: str, canonical_request: str) -> bytes:
    digest = hashlib.sha256(canonical_request.encode()).hexdigest()
    return f"{ALGORITHM}\n{date}\n{scope}\n{digest}".encode()


def canonical_request(method: str, path: str, query: str, headers: list[tuple[str, str]],
                      payload_hash: str) -> tuple[str, str]:
    """The canonical request and its signed-header list, from sorted lower-case headers."""
    names = ";".join([name for name, _ in headers])
    lines = "".join([f"{name}:{_trim(value)}\n" for name, value in headers])
    uri, canonical_query = _canonical_uri(path), _canonical_query(query)
    return f"{method}\n{uri}\n{canonical_query}\n{lines}\n{names}\n{payload_hash}", names


class Signer:
    """Signs DynamoDB requests for one region and service.

    Signs ``host``, ``x-amz-date``, the token header when there is a token, and
    every header the caller passes except framing headers and ``user-agent``
    (so pass ``X-Amz-Target`` and ``Content-Type`` to sign as botocore does).
    """

    __slots__ = ("_last", "_templates", "region", "service")

    #: Canonical-request templates kept (one per distinct target and host, in practice a handful).
    MAX_TEMPLATES = 256

    def __init__(self, region: str, service: str = "dynamodb") -> None:
        self.region = region
        self.service = service
        self._last = (-1.0, "")  # (UTC second, its X-Amz-Date): one tuple, so readers never see a mix
        self._templates: dict[tuple[object, ...], tuple[str, str, str]] = {}

    def _amz_date(self, now: datetime.datetime) -> str:
        # Formatting costs ~2 µs; consecutive requests mostly share their second.
        aware = now if now.tzinfo is not None else now.replace(tzinfo=datetime.UTC)
        second = aware.timestamp() // 1
        last = self._last
        if second != last[0]:
            last = self._last = (second, amz_date(aware))
        return last[1]

    def _template(self, method: str, host: str, path: str, headers: Mapping[str, str],
                  token: str | None) -> tuple[str, str, str]:
        """The canonical request around its two varying parts, the date and the payload hash.

        Returns (text before the date, text between the date and the payload
        hash, signed header names). Building it is most of the cost of signing;
        the upstream client sends the same few header sets again and again.
        """
        signed = [(low, value) for name, value in headers.items() if (low := name.lower()) not in _COMPUTED]
        signed += (("host", host), ("x-amz-date", "\0"))
        if token:
            signed.append(("x-amz-security-token", token))
        signed.sort()
        path, _, query = path.partition("?")
        creq, names = canonical_request(method.upper(), path, query, signed, "")
        head, _, tail = creq.partition("\0")
        return head, tail, names

    def sign(self, method: str, host: str, path: str, headers: dict[str, str], body: bytes,
             credentials: Credentials, now: datetime.datetime) -> dict[str, str]:
        """The headers to add: ``X-Amz-Date``, ``Authorization`` (and ``X-Amz-Security-Token``).

        Args:
            path: the request target; a ``?query`` part is canonicalised too.
            now: the signing time (UTC); never read from the clock here.
        """
        stamp = self._amz_date(now)
        token = credentials.token
        template_key = (method, host, path, token, *headers.items())
        template = self._templates.get(template_key)
        if template is None:
            if len(self._templates) >= self.MAX_TEMPLATES:
                self._templates.clear()
            template = self._templates[template_key] = self._template(method, host, path, headers, token)
        head, tail, names = template
        payload = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        scope = f"{stamp[:8]}/{self.region}/{self.service}/aws4_request"
        key = signing_key(credentials.secret_key, stamp[:8], self.region, self.service)
        signature = key.hexdigest(_string_to_sign(stamp, scope, f"{head}{stamp}{tail}{payload}"))
        added = {"X-Amz-Date": stamp}
        if token:
            added["X-Amz-Security-Token"] = token
        added["Authorization"] = f"{ALGORITHM} Credential={credentials.access_key}/{scope}, " \
                                 f"SignedHeaders={names}, Signature={signature}"
        return added


class Authorization(NamedTuple):
    """The parsed fields of a SigV4 ``Authorization`` header (a tuple: built per request)."""

    access_key: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def scope(self) -> str:
        """``date/region/service/aws4_request``."""
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def _incomplete(message: str) -> DaxdError:
    return from_code("IncompleteSignatureException", message, status=400)


def parse_authorization(value: str) -> Authorization:
    """Parse ``AWS4-HMAC-SHA256 Credential=.., SignedHeaders=.., Signature=..``.

    Raises:
        ClientError: ``IncompleteSignatureException`` when a part is missing.
    """
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _incomplete(f"Unsupported authorization algorithm: {algorithm!r}")
    fields = dict(part.strip().partition("=")[::2] for part in rest.split(","))
    credential = fields.get("Credential", "").split("/")
    names, signature = fields.get("SignedHeaders", ""), fields.get("Signature", "")
    if len(credential) != 5 or credential[4] != "aws4_request" or not names or not signature:
        raise _incomplete(f"Authorization header requires 'Credential', 'SignedHeaders' and "
                          f"'Signature' parameters. Authorization={value}")
    return Authorization(credential[0], credential[1], credential[2], credential[3],
                         tuple(names.split(";")), signature)


@functools.lru_cache(maxsize=256)
def parse_amz_date(stamp: str) -> datetime.datetime:
    """Parse ``YYYYMMDDTHHMMSSZ`` into an aware UTC datetime (cached: stamps repeat each second)."""
    # Sliced by hand: strptime costs ~10 µs, a third of a whole verification.
    try:
        if len(stamp) != 16 or stamp[8] != "T" or stamp[15] != "Z" or not stamp[:8].isdigit():
            raise ValueError(stamp)
        return datetime.datetime(int(stamp[0:4]), int(stamp[4:6]), int(stamp[6:8]), int(stamp[9:11]),
                                 int(stamp[11:13]), int(stamp[13:15]), tzinfo=datetime.UTC)
    except ValueError:
        raise _incomplete(f"Date must be in ISO-8601 'basic format'. Got '{stamp}'.") from None


def check_skew(stamp: str, now: datetime.datetime, max_skew: float) -> None:
    """Reject a request date more than ``max_skew`` seconds away from ``now``, as AWS does."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=datetime.UTC)
    skew = (now - parse_amz_date(stamp)).total_seconds()
    window = datetime.timedelta(seconds=max_skew)
    minutes = f"{max_skew / 60:g} min."
    if skew > max_skew:
        limit = amz_date(now - window)
        raise InvalidSignatureException(
            f"Signature expired: {stamp} is now earlier than {limit} ({amz_date(now)} - {minutes})")
    if -skew > max_skew:
        limit = amz_date(now + window)
        raise InvalidSignatureException(
            f"Signature not yet current: {stamp} is still later than {limit} ({amz_date(now)} + {minutes})")


def _lookup_secret(access_key: str, secrets: Mapping[str, str]) -> str:
    secret = secrets.get(access_key)
    if secret is None:
        raise UnrecognizedClientException(INVALID_TOKEN)
    return secret


def _compare(expected: str, given: str) -> None:
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise InvalidSignatureException(SIGNATURE_MISMATCH)


def verify(method: str, path: str, query: str, headers: Mapping[str, str], body: bytes,
           secrets: Mapping[str, str], now: datetime.datetime, max_skew: float = 300, *,
           region: str | None = None, service: str | None = None) -> str:
    """Check a SigV4-signed HTTP request; return the access key id that signed it.

    Args:
        headers: the request headers with lower-case names.
        secrets: access key id -> secret access key.
        region, service: when given, the credential scope must name them.

    Raises:
        MissingAuthenticationTokenException: no ``Authorization`` header.
        UnrecognizedClientException: unknown access key.
        InvalidSignatureException: wrong signature, scope, or a date too far from ``now``.
        ClientError: ``IncompleteSignatureException`` for a malformed header.
    """
    header = headers.get("authorization")
    if not header:
        raise MissingAuthenticationTokenException("Request is missing Authentication Token")
    auth = parse_authorization(header)
    secret = _lookup_secret(auth.access_key, secrets)
    stamp = headers.get("x-amz-date", "")
    if not stamp.startswith(auth.date):
        raise InvalidSignatureException(f"Credential date {auth.date} does not match X-Amz-Date {stamp!r}.")
    if (region and auth.region != region) or (service and auth.service != service):
        raise InvalidSignatureException(f"Credential should be scoped to a valid region and service, "
                                        f"not '{auth.region}/{auth.service}'.")
    check_skew(stamp, now, max_skew)
    if "host" not in auth.signed_headers or any(name not in headers for name in auth.signed_headers):
        raise InvalidSignatureException(SIGNATURE_MISMATCH)
    signed = [(name, headers[name]) for name in auth.signed_headers]
    payload = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
    creq, _ = canonical_request(method.upper(), path, query, signed, payload)
    key = signing_key(secret, auth.date, auth.region, auth.service)
    _compare(key.hexdigest(_string_to_sign(stamp, auth.scope, creq)), auth.signature)
    return auth.access_key


@functools.lru_cache(maxsize=64)
def dax_canonical_request_hashes(stamp: str) -> frozenset[str]:
    """SHA-256 hex of each canonical request a known DAX client builds at ``stamp``."""
    return frozenset(
        hashlib.sha256(
            f"POST\n/\n\nhost:{host}\nx-amz-date:{stamp}\n\nhost;x-amz-date\n{EMPTY_SHA256}".encode()
        ).hexdigest()
        for host in DAX_HOSTS
    )


def _dax_scope(lines: list[str], region: str | None) -> tuple[str, str]:
    """Check the 4-line DAX string to sign; return its (date, region)."""
    if len(lines) != 4 or lines[0] != ALGORITHM:
        raise InvalidSignatureException("Malformed string to sign in authorizeConnection.")
    scope = lines[2].split("/")
    if len(scope) != 4 or scope[2:] != ["dax", "aws4_request"] or not lines[1].startswith(scope[0]):
        raise InvalidSignatureException(f"Credential should be scoped to the dax service, not {lines[2]!r}.")
    if region is not None and scope[1] != region:
        raise InvalidSignatureException(f"Credential should be scoped to a valid region, not '{scope[1]}'.")
    return scope[0], scope[1]


def verify_dax_authorization(access_key: str, signature: str, string_to_sign: bytes,
                             secrets: Mapping[str, str], now: datetime.datetime, *,
                             region: str | None = None, max_skew: float = 300,
                             check_canonical: bool = True) -> str:
    """Check a DAX ``authorizeConnection`` (docs/protocol.md, "Authentication"); return the key id.

    The HMAC covers the exact bytes received; the canonical request hash (line
    4) is only compared against the forms the Python/JS and Go clients build.
    The session token is not covered by the signature: judging it is the
    caller's policy.

    Raises:
        UnrecognizedClientException: unknown access key.
        InvalidSignatureException: malformed string to sign, wrong scope,
            unknown canonical request, expired date or wrong signature.
    """
    secret = _lookup_secret(access_key, secrets)
    try:
        lines = string_to_sign.decode().split("\n")
    except UnicodeDecodeError:
        raise InvalidSignatureException("String to sign is not UTF-8.") from None
    date, scope_region = _dax_scope(lines, region)
    try:
        check_skew(lines[1], now, max_skew)
    except ClientError as exc:
        if exc.code != "IncompleteSignatureException":
            raise
        raise InvalidSignatureException(exc.message) from None
    if check_canonical and lines[3] not in dax_canonical_request_hashes(lines[1]):
        raise InvalidSignatureException(SIGNATURE_MISMATCH)
    _compare(signing_key(secret, date, scope_region, "dax").hexdigest(string_to_sign), signature)
    return access_key
