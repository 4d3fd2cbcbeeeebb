"""Errors that speak DynamoDB.

Every error a client can see is a :class:`DaxdError` carrying DynamoDB's error
code (the part after ``#`` in ``__type``), an HTTP status and a message, so each
front end can render it in its own wire format without knowing where it came
from. The tree is split by whose fault it is::

    DaxdError
    ├── ClientError                   the caller's request is wrong (4xx)
    │   ├── ValidationException
    │   ├── SerializationException    body is not JSON
    │   ├── UnknownOperationException bad or missing X-Amz-Target
    │   ├── ResourceNotFoundException
    │   ├── ConditionalCheckFailedException
    │   ├── TransactionCanceledException
    │   ├── ProvisionedThroughputExceededException
    │   ├── ThrottlingException
    │   ├── RequestLimitExceeded
    │   ├── AccessDeniedException     e.g. control plane is read-only
    │   ├── UnrecognizedClientException / InvalidSignatureException
    │   └── RequestTooLarge           body over the frame limit
    ├── ProtocolError                 a peer's bytes cannot be parsed (DAX)
    └── ServerError                   our side or the upstream failed (5xx)
        ├── InternalServerError
        ├── ServiceUnavailable        upstream unreachable or timed out
        └── (any 5xx code the upstream returned)

Each class that declares a ``code`` registers itself in :data:`ERROR_CLASSES`
(a duplicate code fails the import), so a new class cannot be forgotten by
:func:`from_code`. Whether an error is retried (``retryable``: throttling or
5xx) is decided here and nowhere else.

Errors from the upstream keep their original body (``raw``), so the HTTP front
can pass DynamoDB's answer through byte for byte (``CancellationReasons``,
``Item`` on condition failure, and fields we do not know about).
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

#: The prefix DynamoDB puts before its error codes in ``__type``.
DYNAMODB_ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"


#: DynamoDB error code -> the class raised for it. Filled by :meth:`DaxdError.__init_subclass__`:
#: every concrete class (one that declares its own ``code``) registers itself, once.
ERROR_CLASSES: dict[str, type[DaxdError]] = {}


class DaxdError(Exception):
    """Root of every error daxd raises on purpose.

    A subclass that declares its own ``code`` is the class for that DynamoDB
    error code (:func:`from_code` finds it); a second class declaring the same
    code is a programming error, refused when the module is imported. Bases
    that only group others (``ClientError``, ``ServerError``) pass
    ``register=False``.
    """

    code: ClassVar[str] = "InternalServerError"
    status: ClassVar[int] = 500
    #: DynamoDB refused the call for throughput (the SDKs retry it; metrics count it apart).
    throttling: ClassVar[bool] = False

    def __init_subclass__(cls, *, register: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not register or "code" not in cls.__dict__:
            return
        taken = ERROR_CLASSES.get(cls.code)
        if taken is not None:
            raise TypeError(f"error code {cls.code!r} is declared by both {taken.__qualname__} "
                            f"and {cls.__qualname__}")
        ERROR_CLASSES[cls.code] = cls

    def __init__(self, message: str = "", *, raw: bytes | None = None, code: str | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.raw = raw
        if code is not None:
            self.code = code  # type: ignore[misc]
        if status is not None:
            self.status = status  # type: ignore[misc]

    @property
    def payload(self) -> dict[str, Any]:
        """The error as DynamoDB's JSON object (the upstream's own body if we have it)."""
        if self.raw is not None:
            try:
                data = orjson.loads(self.raw)
                if isinstance(data, dict):
                    return data
            except orjson.JSONDecodeError:
                pass
        return {"__type": DYNAMODB_ERROR_PREFIX + self.code, "message": self.message}

    def to_json(self) -> bytes:
        """The HTTP body DynamoDB would send for this error."""
        if self.raw is not None:
            return self.raw
        return orjson.dumps({"__type": DYNAMODB_ERROR_PREFIX + self.code, "message": self.message})

    @property
    def retryable(self) -> bool:
        """Whether the AWS SDKs retry this error: throttling, or any 5xx (an unknown code
        the upstream sent keeps its status). The one definition the upstream client uses."""
        return self.throttling or self.status >= 500

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}: {self.message!r})"


class ClientError(DaxdError, register=False):
    code = "ValidationException"
    status = 400


class ValidationException(ClientError):
    code = "ValidationException"


class SerializationException(ClientError):
    code = "SerializationException"


class UnknownOperationException(ClientError):
    code = "UnknownOperationException"


class ResourceNotFoundException(ClientError):
    code = "ResourceNotFoundException"


class ResourceInUseException(ClientError):
    code = "ResourceInUseException"


class ConditionalCheckFailedException(ClientError):
    code = "ConditionalCheckFailedException"


class TransactionCanceledException(ClientError):
    code = "TransactionCanceledException"


class TransactionConflictException(ClientError):
    code = "TransactionConflictException"


class ItemCollectionSizeLimitExceededException(ClientError):
    code = "ItemCollectionSizeLimitExceededException"


class ProvisionedThroughputExceededException(ClientError):
    code = "ProvisionedThroughputExceededException"
    throttling = True


class ThrottlingException(ClientError):
    code = "ThrottlingException"
    throttling = True


class RequestLimitExceeded(ClientError):
    code = "RequestLimitExceeded"
    throttling = True


class AccessDeniedException(ClientError):
    code = "AccessDeniedException"


class UnrecognizedClientException(ClientError):
    code = "UnrecognizedClientException"
    status = 403


class InvalidSignatureException(ClientError):
    code = "InvalidSignatureException"
    status = 403


class MissingAuthenticationTokenException(ClientError):
    code = "MissingAuthenticationTokenException"
    status = 403


class RequestTooLarge(ClientError):
    """A body over the node's limit; DynamoDB answers 413 with this code."""

    code = "RequestEntityTooLarge"
    status = 413


class ProtocolError(DaxdError, register=False):
    """The peer's bytes cannot be understood (malformed frame, wrong CBOR type...)."""

    code = "ProtocolError"
    status = 400


class ServerError(DaxdError, register=False):
    code = "InternalServerError"
    status = 500


class InternalServerError(ServerError):
    code = "InternalServerError"


class ServiceUnavailable(ServerError):
    """The upstream could not be reached or did not answer in time."""

    code = "ServiceUnavailable"
    status = 503


def from_code(code: str, message: str = "", *, status: int = 400, raw: bytes | None = None) -> DaxdError:
    """The exception for a DynamoDB error code; unknown codes keep their code and status."""
    cls = ERROR_CLASSES.get(code)
    if cls is not None:
        return cls(message, raw=raw, status=status)
    base: type[DaxdError] = ServerError if status >= 500 else ClientError
    return base(message, raw=raw, code=code, status=status)


def from_upstream(status: int, body: bytes) -> DaxdError:
    """Decode an upstream error response (``{"__type": ..., "message": ...}``)."""
    code, message = "InternalServerError" if status >= 500 else "ValidationException", ""
    try:
        data = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        data = {}
    if isinstance(data, dict):
        code = str(data.get("__type", code)).rpartition("#")[2] or code
        message = str(data.get("message", data.get("Message", "")))
    return from_code(code, message, status=status, raw=body if isinstance(data, dict) and data else None)
