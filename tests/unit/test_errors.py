"""The error taxonomy: classes register themselves by code; retryable and throttling are decided once."""

from __future__ import annotations

import inspect

import pytest

from daxd.model import errors
from daxd.model.errors import (
    ERROR_CLASSES,
    ClientError,
    DaxdError,
    ServerError,
    ThrottlingException,
    ValidationException,
    from_code,
    from_upstream,
)
from daxd.observability import Metrics


def _concrete_classes() -> list[type[DaxdError]]:
    """Every class in the module that declares its own code (what the registry must hold)."""
    return [cls for _, cls in inspect.getmembers(errors, inspect.isclass)
            if issubclass(cls, DaxdError) and "code" in cls.__dict__
            and cls not in (DaxdError, ClientError, ServerError, errors.ProtocolError)]


def test_every_class_with_a_code_is_registered_under_it() -> None:
    classes = _concrete_classes()
    assert len(classes) >= 19
    for cls in classes:
        assert ERROR_CLASSES[cls.code] is cls
        assert isinstance(from_code(cls.code, "m", status=cls.status), cls)


def test_a_second_class_with_a_taken_code_fails_at_definition() -> None:
    before = dict(ERROR_CLASSES)
    with pytest.raises(TypeError, match="ThrottlingException"):
        type("AnotherThrottle", (ClientError,), {"code": "ThrottlingException"})
    assert before == ERROR_CLASSES


def test_subclasses_without_their_own_code_and_grouping_bases_do_not_register() -> None:
    before = dict(ERROR_CLASSES)

    class Narrower(ValidationException):
        pass

    assert before == ERROR_CLASSES and ERROR_CLASSES["ValidationException"] is ValidationException
    assert "ProtocolError" not in ERROR_CLASSES


def test_a_new_class_is_found_by_its_code_without_being_listed_anywhere() -> None:
    code = "DaxdTestOnlyException"
    assert type(from_code(code, "x")) is ClientError  # unknown: the generic class keeps the code
    registered = type("Registered", (ClientError,), {"code": code})
    try:
        assert type(from_code(code, "x")) is registered
    finally:
        del ERROR_CLASSES[code]


@pytest.mark.parametrize(("code", "status", "retryable", "throttling"), [
    ("ProvisionedThroughputExceededException", 400, True, True),
    ("ThrottlingException", 400, True, True),
    ("RequestLimitExceeded", 400, True, True),
    ("ValidationException", 400, False, False),
    ("ConditionalCheckFailedException", 400, False, False),
    ("SomeNewClientCode", 400, False, False),
    ("InternalServerError", 500, True, False),
    ("ServiceUnavailable", 503, True, False),
    ("SomeNewServerCode", 502, True, False),
])
def test_retryable_and_throttling_have_one_definition(code: str, status: int, retryable: bool,
                                                      throttling: bool) -> None:
    error = from_upstream(status, b'{"__type":"x#%s","message":"m"}' % code.encode())
    assert (error.code, error.retryable, error.throttling) == (code, retryable, throttling)


def test_metrics_count_throttling_by_the_same_definition() -> None:
    metrics = Metrics()
    metrics.request("GetItem", 0.001, ThrottlingException("slow down"))
    metrics.request("GetItem", 0.001, ValidationException("bad"))
    assert metrics.counts["daxd_throttled_request_count"] == {"GetItem": 1}
    assert metrics.counts["daxd_error_request_count"] == {"GetItem": 2}
