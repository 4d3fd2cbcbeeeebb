"""The only thing in daxd that talks to DynamoDB.

:class:`Upstream` sends raw DynamoDB JSON over the pooled HTTP/1.1 client,
signed with the lean SigV4 signer, retrying throttling, 5xx and connection
failures with exponential backoff and full jitter (as the AWS SDKs do). Clock,
sleep and randomness are parameters so tests run without waiting.

Every failure leaves as a :class:`~daxd.model.errors.DaxdError`: the upstream's
own error (code, message and raw body kept) for non-2xx answers, and
``ServiceUnavailable`` (503) when the endpoint cannot be reached or does not
answer in time. :func:`_translate` is the one place library exceptions are
mapped.
"""

from __future__ import annotations

import asyncio
import datetime
import random as _random
import ssl as _ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit

import botocore.credentials
import botocore.exceptions
import botocore.session

from daxd.model.errors import DaxdError, InternalServerError, ServiceUnavailable, from_upstream
from daxd.sigv4 import Credentials, Signer
from daxd.upstream.health import UpstreamHealth
from daxd.upstream.http11 import ConnectionPool, HTTPResponse

TARGET_PREFIX = "DynamoDB_20120810."
CONTENT_TYPE = "application/x-amz-json-1.0"


class CredentialSource(Protocol):
    """Where the upstream signer gets credentials; called once per request."""

    def get(self) -> Credentials:
        """The credentials to sign with now."""
        ...


class StaticCredentials:
    """Fixed credentials, e.g. ``StaticCredentials("daxd", "daxd")`` for DynamoDB Local."""

    def __init__(self, access_key: str, secret_key: str, token: str | None = None) -> None:
        self._credentials = Credentials(access_key, secret_key, token)

    def get(self) -> Credentials:
        """The same credentials every time."""
        return self._credentials


class BotocoreCredentials:
    """botocore's credential chain (env, profile, SSO, container, IMDS...).

    Frozen credentials are taken on every call so refreshable credentials refresh
    before they expire. A refresh runs synchronously inside ``get`` (botocore
    has no async API); it happens rarely (minutes before expiry).
    """

    def __init__(self, session: botocore.session.Session | None = None, profile: str | None = None, *,
                 fallback: Credentials | None = None) -> None:
        self._session = session
        self._profile = profile
        self._fallback = fallback
        self._source: Any = None  # botocore Credentials or ours; resolved lazily: constructors do no I/O

    def get(self) -> Credentials:
        """Current credentials.

        Raises:
            InternalServerError: botocore found none (and no fallback) or failed to refresh.
        """
        try:
            return self._get()
        except botocore.exceptions.BotoCoreError as exc:
            raise InternalServerError(f"cannot obtain AWS credentials: {exc}") from exc

    def _get(self) -> Credentials:
        if self._source is None:
            session = self._session or botocore.session.Session(profile=self._profile)
            self._source = session.get_credentials() or self._fallback
            if self._source is None:
                raise InternalServerError("no AWS credentials found (environment, profile or instance role)")
            if type(self._source) is botocore.credentials.Credentials:  # static (env, profile keys): never refresh
                frozen = self._source.get_frozen_credentials()
                self._source = Credentials(frozen.access_key, frozen.secret_key, frozen.token)
        if isinstance(self._source, Credentials):
            return self._source
        frozen = self._source.get_frozen_credentials()
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def aws_endpoint(region: str) -> str:
    """The public DynamoDB endpoint of a region."""
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://dynamodb.{region}.{suffix}"


def _pool_for(endpoint: str, max_connections: int, connect_timeout: float) -> ConnectionPool:
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"upstream endpoint must be an http(s) URL, got {endpoint!r}")
    tls = _ssl.create_default_context() if parts.scheme == "https" else None
    port = parts.port or (443 if tls is not None else 80)
    return ConnectionPool(parts.hostname, port, ssl=tls, max_connections=max_connections,
                          connect_timeout=connect_timeout)


class _Unreachable(Exception):
    """Internal: one attempt failed below HTTP (connect, reset, EOF, timeout)."""


class Sent(NamedTuple):
    """A first attempt :meth:`Upstream.send_now` wrote; :meth:`Upstream.finish` completes it."""

    operation: str
    target: str
    body: bytes
    started: float
    waiter: asyncio.Future[HTTPResponse]


class Upstream:
    """Async DynamoDB client: signed raw-JSON calls with bounded retries.

    Args:
        endpoint: ``http://127.0.0.1:8000`` or ``https://dynamodb.<region>.amazonaws.com``.
        timeout: seconds per attempt (connecting, waiting for a free connection, response).
        max_attempts: attempts per call, the first included (botocore's legacy default is 10
            for DynamoDB; a cache front wants to fail fast, so 3).
        base_delay, max_delay: backoff before attempt n is ``random() * min(max_delay,
            base_delay * 2**(n-1))`` (25 ms base as botocore's DynamoDB policy).
        observe: called with (operation, seconds) after every attempt that got a response.
    """

    def __init__(self, endpoint: str, region: str, credentials: CredentialSource, *,
                 timeout: float = 5.0, max_attempts: int = 3, max_connections: int = 64,
                 base_delay: float = 0.025, max_delay: float = 1.0,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 random: Callable[[], float] = _random.random,
                 clock: Callable[[], datetime.datetime] = _utcnow,
                 monotonic: Callable[[], float] = time.monotonic,
                 observe: Callable[[str, float], None] | None = None) -> None:
        if max_attempts < 1 or timeout <= 0:
            raise ValueError("max_attempts must be >= 1 and timeout > 0")
        self.endpoint = endpoint
        self._pool = _pool_for(endpoint, max_connections, min(3.0, timeout))
        self._signer = Signer(region)
        self._credentials = credentials
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self._random = random
        self._clock = clock
        self._monotonic = monotonic
        self.observe = observe
        #: ``monotonic()`` when the upstream last answered (any status); for readiness.
        self.last_success: float | None = None
        #: Up/down state, its transitions logged once each.
        self.health = UpstreamHealth(endpoint, monotonic=monotonic)

    @classmethod
    def for_aws(cls, region: str, profile: str | None = None, **kw: Any) -> Upstream:
        """An upstream for real DynamoDB in ``region`` using botocore's credential chain."""
        return cls(aws_endpoint(region), region, BotocoreCredentials(None, profile), **kw)

    @property
    def pool(self) -> ConnectionPool:
        """The HTTP connection pool (exposed for metrics and tests)."""
        return self._pool

    async def call(self, operation: str, body: bytes) -> bytes:
        """Run a DynamoDB operation; return the 2xx response body.

        Raises:
            DaxdError: the upstream's error (from :func:`from_upstream`) after retries,
                or ``ServiceUnavailable`` when it cannot be reached or times out.
        """
        response = await self._exchange(operation, TARGET_PREFIX + operation, body, errors_too=True)
        return response.body

    def send_now(self, operation: str, body: bytes) -> Sent | None:
        """The first attempt of :meth:`call`, written at once on an idle pooled connection.

        None when no connection is free (then use :meth:`call`). Finish it with
        :meth:`finish`. A cache miss sends before setting up its coroutine and
        task, so that work overlaps the upstream's instead of delaying it.
        """
        if not self._pool.ready():
            return None
        target = TARGET_PREFIX + operation
        headers = self._headers(target, body)
        started = self._monotonic()
        waiter = self._pool.try_send("POST", "/", headers, body, self.timeout)
        return None if waiter is None else Sent(operation, target, body, started, waiter)

    async def finish(self, sent: Sent) -> bytes:
        """The rest of :meth:`call` for a request :meth:`send_now` wrote: its answer, or the retries."""
        outcome: HTTPResponse | Exception
        try:
            outcome = await sent.waiter
        except Exception as exc:
            outcome = exc
        judged = self._judge(sent.operation, sent.started, 1, True, outcome)
        if judged is not None:
            return judged.body
        return (await self._exchange(sent.operation, sent.target, sent.body, errors_too=True, after=1)).body

    async def forward(self, target: str, body: bytes) -> tuple[int, bytes]:
        """Send any ``X-Amz-Target``; return (status, body) whatever the status.

        Only connection failures and timeouts are retried.

        Raises:
            ServiceUnavailable: the upstream cannot be reached or times out.
        """
        response = await self._exchange(target.rpartition(".")[2], target, body, errors_too=False)
        return response.status, response.body

    async def _exchange(self, operation: str, target: str, body: bytes, *, errors_too: bool,
                        after: int = 0) -> HTTPResponse:
        """One call with bounded retries: of unreachable upstreams always, of retryable errors if asked.

        With ``errors_too`` a non-2xx answer raises its DaxdError (after retries);
        without, any answer is returned as it came. ``after`` attempts were
        already made (:meth:`send_now`): back off, then go on from there.
        """
        if after:
            await self._backoff(after)
        for attempt in range(after + 1, self.max_attempts + 1):
            headers = self._headers(target, body)
            started = self._monotonic()
            outcome: HTTPResponse | Exception
            try:
                outcome = await self._pool.request("POST", "/", headers, body, self.timeout)
            except Exception as exc:
                outcome = exc
            judged = self._judge(operation, started, attempt, errors_too, outcome)
            if judged is not None:
                return judged
            await self._backoff(attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _judge(self, operation: str, started: float, attempt: int, errors_too: bool,
               outcome: HTTPResponse | Exception) -> HTTPResponse | None:
        """What one attempt's answer (or failure) means: the response to return, or None to retry.

        Raises what the caller must see: a library failure as ours (:func:`_translate`),
        an unreachable upstream after the last attempt, a non-retryable (or the last) error.
        """
        if isinstance(outcome, Exception):
            failure = _translate(outcome, self.timeout)
            if not isinstance(failure, _Unreachable):
                raise failure from outcome
            if attempt == self.max_attempts:
                self.health.failed(str(failure))
                raise self._unavailable(failure) from outcome
            return None
        self.last_success = self._monotonic()
        self.health.succeeded()
        if self.observe is not None:
            self.observe(operation, self.last_success - started)
        if not errors_too or 200 <= outcome.status < 300:
            return outcome
        error = from_upstream(outcome.status, outcome.body)
        if attempt == self.max_attempts or not error.retryable:
            raise error
        return None

    async def close(self) -> None:
        """Close pooled connections."""
        await self._pool.close()

    def _unavailable(self, exc: _Unreachable) -> ServiceUnavailable:
        return ServiceUnavailable(f"DynamoDB endpoint {self.endpoint} unavailable after "
                                  f"{self.max_attempts} attempt(s): {exc}")

    async def _backoff(self, attempt: int) -> None:
        cap = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        await self._sleep(self._random() * cap)

    def _headers(self, target: str, body: bytes) -> str:
        """The signed request's header lines (CRLF-terminated), as the pool sends them."""
        signed = self._signer.sign("POST", self._pool.host_header, "/",
                                   {"X-Amz-Target": target, "Content-Type": CONTENT_TYPE}, body,
                                   self._credentials.get(), self._clock())
        lines = f"X-Amz-Target: {target}\r\nContent-Type: {CONTENT_TYPE}\r\n"
        return lines + "".join([f"{name}: {value}\r\n" for name, value in signed.items()])


def _translate(exc: Exception, timeout: float) -> Exception:
    """Map an exception from the HTTP layer to one of ours (the only such mapping)."""
    if isinstance(exc, DaxdError):
        return exc
    if isinstance(exc, TimeoutError):
        return _Unreachable(f"no response within {timeout:g} s")
    if isinstance(exc, (ConnectionError, OSError, EOFError)):
        return _Unreachable(str(exc) or type(exc).__name__)
    return InternalServerError(f"unexpected upstream client failure: {exc!r}")
