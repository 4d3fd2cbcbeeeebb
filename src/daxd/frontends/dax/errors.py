"""DaxdError -> DAX error reply (docs/protocol.md, "Errors").

An error reply is three items: the code sequence, the message, and
``[requestId, errorCode, httpStatus(, cancellationReasons)]``. The clients pick
the exception class from the code sequence (Go *only* from it) and fall back to
the errorCode string, so we always send a recognised sequence together with
DynamoDB's code. One static table maps codes to sequences:

* DynamoDB errors: ``[4, 37, 38, 39, X]`` (X per the table below);
* AccessDenied: ``[4, 37, 38, 42]``;
* authentication failures: ``[4, 23, 31, 33]`` (Go/JS re-authenticate and retry);
* transient server faults (5xx other than InternalServerError): ``[1, 37, 38, 39, 47]``,
  first element 1 = "retryable server error", the only thing Go retries besides throttling;
* any other client error: ``[4, 37, 38, 39, 0]`` - an unrecognised tail, so
  Python and JS use our errorCode string (UNCERTAIN what real DAX sends).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cbor2

from daxd.frontends.dax.attrs import AttributeListTable
from daxd.frontends.dax.keys import encode_values
from daxd.frontends.dax.requests import Operation
from daxd.model.errors import DaxdError, ProtocolError, ServerError, ValidationException

_DYNAMODB = (4, 37, 38, 39)
_AUTH = (4, 23, 31, 33)
ERROR_CODES: dict[str, tuple[int, ...]] = {
    "ProvisionedThroughputExceededException": (*_DYNAMODB, 40),
    "ResourceNotFoundException": (*_DYNAMODB, 41),
    "ConditionalCheckFailedException": (*_DYNAMODB, 43),
    "ResourceInUseException": (*_DYNAMODB, 45),
    "ValidationException": (*_DYNAMODB, 46),
    "SerializationException": (*_DYNAMODB, 46),
    "RequestEntityTooLarge": (*_DYNAMODB, 46),
    "InternalServerError": (*_DYNAMODB, 47),
    "ItemCollectionSizeLimitExceededException": (*_DYNAMODB, 48),
    "LimitExceededException": (*_DYNAMODB, 49),
    "ThrottlingException": (*_DYNAMODB, 50),
    "TransactionConflictException": (*_DYNAMODB, 57),
    "TransactionCanceledException": (*_DYNAMODB, 58),
    "TransactionInProgressException": (*_DYNAMODB, 59),
    "IdempotentParameterMismatchException": (*_DYNAMODB, 60),
    "RequestLimitExceeded": (*_DYNAMODB, 61),
    "AccessDeniedException": (4, 37, 38, 42),
    "MissingAuthenticationTokenException": _AUTH,
    "UnrecognizedClientException": _AUTH,
    "InvalidSignatureException": _AUTH,
}
_UNKNOWN_CLIENT = (*_DYNAMODB, 0)
_TRANSIENT_SERVER = (1, 37, 38, 39, 47)


def error_codes(err: DaxdError) -> tuple[int, ...]:
    """The DAX code sequence for an error."""
    if isinstance(err, ProtocolError):
        return ERROR_CODES["ValidationException"]
    known = ERROR_CODES.get(err.code)
    if known is not None:
        return known
    return _TRANSIENT_SERVER if isinstance(err, ServerError) or err.status >= 500 else _UNKNOWN_CLIENT


def _reason(reason: Mapping[str, Any], action: Mapping[str, Any] | None, op: Operation | None,
            lists: AttributeListTable | None) -> list[Any]:
    """One cancellation-reason triple: code, message, ``V`` of the old item or null."""
    item = reason.get("Item")
    encoded = None
    if item and action is not None and op is not None and lists is not None:
        table = next(iter(action.values()))["TableName"]
        encoded = encode_values(item, op.context.schemas[table], lists)
    return [reason.get("Code"), reason.get("Message"), encoded]


def _cancellation_reasons(err: DaxdError, op: Operation | None,
                          lists: AttributeListTable | None) -> list[Any]:
    """Flat list of triples, exactly one per action in request order (Go requires it)."""
    reasons = err.payload.get("CancellationReasons") or []
    actions = list(op.request.get("TransactItems", [])) if op is not None else []
    if actions and len(reasons) != len(actions):
        reasons = (list(reasons) + [{"Code": "None"}] * len(actions))[:len(actions)]
    flat: list[Any] = []
    for index, reason in enumerate(reasons):
        flat.extend(_reason(reason, actions[index] if index < len(actions) else None, op, lists))
    return flat


def encode_error(err: DaxdError, *, operation: Operation | None = None,
                 attr_lists: AttributeListTable | None = None) -> bytes:
    """The DAX error reply for ``err``.

    Args:
        err: the error to report.
        operation: the request it answers; needed to encode the items of
            TransactionCanceledException cancellation reasons.
        attr_lists: the node's attribute-list registry (same purpose).
    """
    code = "ValidationException" if isinstance(err, ProtocolError) else err.code
    status = ValidationException.status if isinstance(err, ProtocolError) else err.status
    detail: list[Any] = [None, code, status]
    if code == "TransactionCanceledException":
        detail.append(_cancellation_reasons(err, operation, attr_lists))
    return (cbor2.dumps(list(error_codes(err))) + cbor2.dumps(err.message or str(err) or code)
            + cbor2.dumps(detail))
