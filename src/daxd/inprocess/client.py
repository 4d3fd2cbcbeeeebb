"""The accelerated boto3 client: boto3's surface, the Accelerator's cache behind it.

Theory of operation. Every DynamoDB method of the wrapped client is replaced
by one that (1) fires botocore's parameter events on the caller's emitter and
checks parameter names against botocore's input shape, as boto3 would, (2)
turns the keyword arguments into DynamoDB JSON and (3) runs the Accelerator's
plan for the operation under :class:`ThreadedDriver`. A hit returns without
sending anything. When the plan needs DynamoDB, the call goes through the
wrapped client's own method (on a relay copy of it, see
:mod:`daxd.inprocess.events`), so credentials, retries, hooks and errors are
boto3's: a request the plan forwards as it was given (``Call.body`` is the
very bytes we built) is sent with the caller's own arguments, and if the plan
answers with that response unchanged the caller gets boto3's response object
itself. Anything else is converted (:mod:`daxd.inprocess.convert`).
``after-call`` fires last, with the caller's answer.

Upstream errors are wrapped in the matching :class:`~daxd.model.errors.DaxdError`
(``__cause__`` is boto3's exception) so the plan can evict what a failed write
named; the caller then gets boto3's exception, unchanged. A request that did
not reach DynamoDB because the plan refused it or its schema lookup failed
goes to boto3 as is, so boto3's validation and DynamoDB's answer (with the
caller's ``operation_name``) apply: no daxd exception reaches the caller.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from typing import Any

import orjson
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from botocore.validate import ParamValidationDecorator, validate_parameters

from daxd.accelerator import item_body
from daxd.inprocess import convert
from daxd.inprocess.driver import ThreadedDriver
from daxd.inprocess.events import Events, Trip, body_facts, relay_client
from daxd.messages import Call, Response
from daxd.model.errors import DaxdError, ServiceUnavailable, from_code

_UPSTREAM_MARK = "daxd_from_wrapped_client"
#: Where a cached item keeps the pickled GetItem response in boto3's shape (client; resource).
_PICKLE = "boto3-client-pickle"
_RESOURCE_PICKLE = "boto3-resource-pickle"
_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()
#: Operations that change nothing: a direct (unplanned) success of any other flushes the cache.
_READ_ONLY_PREFIXES = ("Get", "BatchGet", "Query", "Scan", "Describe", "List", "TransactGet")




class Operation:
    """What the hot path needs to know about one DynamoDB operation, looked up once."""

    __slots__ = ("input_shape", "members", "method", "model", "name", "output_shape", "python_name",
                 "read_only", "required")

    def __init__(self, client: Any, python_name: str, name: str) -> None:
        self.name = name
        self.python_name = python_name
        self.model = client.meta.service_model.operation_model(name)
        self.input_shape = self.model.input_shape
        self.output_shape = self.model.output_shape
        self.members = frozenset(self.input_shape.members) if self.input_shape is not None else frozenset()
        self.required = frozenset(self.input_shape.required_members) if self.input_shape is not None else frozenset()
        self.method: Callable[..., Any] = getattr(client, python_name)
        self.read_only = name.startswith(_READ_ONLY_PREFIXES)

    def check(self, params: dict[str, Any]) -> None:
        """Raise boto3's ParamValidationError if a name is unknown or a required one missing."""
        if not (params.keys() <= self.members and self.required <= params.keys()):
            validate_parameters(params, self.input_shape)


def wrap_upstream(exc: Exception, operation: str, http: Any = None) -> DaxdError:
    """boto3's exception as the DaxdError the plan understands; ``__cause__`` keeps the original.

    The wrapper remembers the ``operation`` that failed and the HTTP response
    botocore parsed (for the caller's ``after-call``), also for callers that
    shared the call.
    """
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 400
        wrapped = from_code(str(error.get("Code", "")), str(error.get("Message", "")), status=int(status))
    else:  # connection failures and timeouts: DynamoDB may or may not have acted
        wrapped = ServiceUnavailable(str(exc))
    wrapped.__cause__ = exc
    setattr(wrapped, _UPSTREAM_MARK, (operation, http))  # marks it as not the plan's own error
    return wrapped


def upstream_cause(exc: BaseException) -> tuple[BaseException, str, Any] | None:
    """The wrapped client's exception behind ``exc`` (if :func:`wrap_upstream` made it), the
    operation it answered and its HTTP response."""
    mark = getattr(exc, _UPSTREAM_MARK, None)
    if mark is None or exc.__cause__ is None:
        return None
    return exc.__cause__, mark[0], mark[1]


class Exchange:
    """One caller's trip through a plan: performs its upstream calls and shapes its answer."""

    __slots__ = ("accelerated", "op", "params", "raw", "reply", "response", "sent", "trip")

    def __init__(self, accelerated: AcceleratedClient, op: Operation, params: dict[str, Any], raw: bytes,
                 trip: Trip) -> None:
        self.accelerated = accelerated
        self.op = op
        self.params = params
        self.raw = raw
        self.trip = trip
        self.reply: bytes | None = None
        self.response: dict[str, Any] | None = None
        self.sent = 0

    def send(self, call: Call) -> bytes:
        self.sent += 1
        return self.perform(call)

    def perform(self, call: Call) -> bytes:
        """One upstream call through the relay client (see :mod:`daxd.inprocess.events`)."""
        trip = self.trip
        mine = call.operation == self.op.name  # else the plan's own lookup (the table's schema)
        trip.lookup = not mine
        if mine:
            trip.http = trip.parsed = None
        relay = self.accelerated._daxd_relay
        previous = relay.enter(trip)
        try:
            if call.body is self.raw:  # the caller's own request, as given
                response = self.op.method(**self.params)
            else:
                op = self.accelerated._daxd_operation(call.operation)
                response = op.method(**convert.request_params(call.body, op.input_shape))
        except Exception as exc:
            raise wrap_upstream(exc, call.operation, trip.http) from exc
        finally:
            relay.enter(previous)
            trip.lookup = False
        reply = convert.response_json(response)
        if mine:
            self.response, self.reply = response, reply
        return reply

    def answer(self, response: Response) -> dict[str, Any]:
        """The plan's Response in boto3's shape; boto3's own object when the plan passed it through."""
        body = response.body
        if body is self.reply and self.response is not None:
            return self.response
        data = convert.response_data(body, response.data, self.op.output_shape)
        own = self.response
        data["ResponseMetadata"] = (dict(own["ResponseMetadata"]) if own is not None
                                    else self.accelerated._daxd_events.metadata(body))
        return data


class AcceleratedClient:
    """A boto3 DynamoDB client with the Accelerator in front; see the module docstring.

    Attributes other than DynamoDB operations (``meta``, ``exceptions``,
    ``can_paginate`` ...) are the wrapped client's.
    """

    def __init__(self, client: Any, driver: ThreadedDriver) -> None:
        client.exceptions  # noqa: B018 -- loaded before the relay copies the client: one set of classes
        self._daxd_client = client
        self._daxd_driver = driver
        self._daxd_metrics = driver.accelerator.metrics
        # botocore keeps Config(parameter_validation=...) only in its choice of serializer
        self._daxd_validate = isinstance(getattr(client, "_serializer", None), ParamValidationDecorator)
        self._daxd_twin, self._daxd_relay = relay_client(client)
        self._daxd_events = Events(client, self._daxd_twin)
        self._daxd_ops: dict[str, Operation] = {}
        self._daxd_python_names = {api: py for py, api in client.meta.method_to_api_mapping.items()}
        self._daxd_hooks: list[Callable[[], None]] = []

    def __getattr__(self, name: str) -> Any:
        """DynamoDB operations become accelerated methods (made once); the rest is the wrapped client's."""
        if name.startswith("_daxd"):
            raise AttributeError(name)
        api_name = self._daxd_client.meta.method_to_api_mapping.get(name)
        if api_name is None:
            return getattr(self._daxd_client, name)
        method = self._daxd_method(name, api_name)
        self.__dict__[name] = method
        return method

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(dir(self._daxd_client)))

    def __repr__(self) -> str:
        return f"<daxd accelerated {self._daxd_client!r}>"

    # -- boto3 surface ------------------------------------------------------

    def get_paginator(self, operation_name: str) -> Any:
        """botocore's paginator, bound to this client's accelerated method."""
        return type(self._daxd_client).get_paginator(self, operation_name)

    def get_waiter(self, waiter_name: str) -> Any:
        """botocore's waiter, polling through this client."""
        return type(self._daxd_client).get_waiter(self, waiter_name)

    def close(self) -> None:
        """Stop background work (the streams tailer), then close the wrapped client."""
        for stop in self._daxd_hooks:
            stop()
        self._daxd_client.close()

    # -- daxd additions -----------------------------------------------------

    def daxd_stats(self) -> dict[str, int]:
        """Cache counters: hits, misses, evictions and bytes (the node's metrics, summed over tables)."""
        from daxd.inprocess.stats import stats
        return stats(self._daxd_driver)

    def daxd_flush(self, table: str | None = None) -> int:
        """Drop cached entries (of one table, or all); how many were dropped."""
        flushed: int = self._daxd_driver.locked(lambda acc: acc.flush(table))
        return flushed

    @property
    def daxd_driver(self) -> ThreadedDriver:
        """The driver and, through it, the Accelerator: for the streams tailer, tests and metrics."""
        return self._daxd_driver

    # -- the hot path -------------------------------------------------------

    def _daxd_method(self, python_name: str, api_name: str) -> Callable[..., Any]:
        op = self._daxd_operation(api_name)
        call = self._daxd_call

        def method(*args: Any, **params: Any) -> Any:
            if args:
                raise TypeError(f"{python_name}() only accepts keyword arguments.")
            return call(op, params)

        method.__name__ = python_name
        method.__doc__ = getattr(self._daxd_client, python_name).__doc__
        return method

    def _daxd_operation(self, api_name: str) -> Operation:
        op = self._daxd_ops.get(api_name)
        if op is None:
            op = self._daxd_ops[api_name] = Operation(self._daxd_twin, self._daxd_python_names[api_name], api_name)
        return op

    def _daxd_call(self, op: Operation, params: dict[str, Any]) -> Any:
        """One call of ``op``, with botocore's events around it (:mod:`daxd.inprocess.events`)."""
        events = self._daxd_events
        if op.name == "GetItem":  # hits with nobody to hear their events skip them (see Events.hooks)
            hooks = events.hooks("GetItem")
            if hooks == "none":
                if self._daxd_validate:
                    op.check(params)
                found = self._daxd_get_item_hit(op, params)
                if found is not None:
                    return found[0]
            elif hooks == "resource":
                hit = self._daxd_resource_get_item_hit(op, params)
                if hit is not None:
                    return hit
        trip = Trip(events.context(op.model))
        params = events.parameters(op.model, params, trip.context)
        if self._daxd_validate:
            op.check(params)
        try:
            response, http = self._daxd_answer(op, params, trip)
        except ClientError as exc:
            if trip.http is not None and trip.parsed is exc.response:  # botocore's after-call, held back
                events.after_call(op.model, trip.http, exc.response, trip.context)
            raise
        events.after_call(op.model, http, response, trip.context)
        return response

    def _daxd_answer(self, op: Operation, params: dict[str, Any], trip: Trip) -> tuple[dict[str, Any], Any]:
        """The caller's response and the HTTP response it came in (a hit's stands in for one)."""
        if op.name == "GetItem":
            hit = self._daxd_get_item_hit(op, params)
            if hit is not None:
                return self._daxd_hit(op, params, trip, *hit)
        try:
            raw = convert.request_json(params, op.input_shape)
        except TypeError:
            return self._daxd_direct(op, params, trip)
        exchange = Exchange(self, op, params, raw, trip)
        started = time.perf_counter()
        try:
            response = self._daxd_driver.run(op.name, orjson.loads(raw), raw, exchange.send)
        except Exception as exc:
            failure = exc
        else:
            if exchange.sent:  # hits are counted by the cache's hit counters, and cost no timing
                self._daxd_metrics.request(op.name, time.perf_counter() - started)
            answer = exchange.answer(response)
            if trip.sent:
                return answer, trip.http
            return self._daxd_hit(op, params, trip, answer, response.body)  # nothing of the caller's was sent
        return self._daxd_recover(op, exchange, failure, started)

    def _daxd_hit(self, op: Operation, params: dict[str, Any], trip: Trip, response: dict[str, Any],
                  body: bytes) -> tuple[dict[str, Any], Any]:
        """An answer that sent nothing: ``before-call`` fires as for a request (a hook may answer instead)."""
        events = self._daxd_events
        answered = events.before_call(op.model, params, trip.context)
        if answered is None:
            return response, events.hit_http(response["ResponseMetadata"], body)
        http, parsed = answered
        if http.status_code >= 300:
            trip.http, trip.parsed = http, parsed
            code = trip.context.get("error_code_override") or parsed.get("Error", {}).get("Code")
            raise self._daxd_client.exceptions.from_code(code)(parsed, op.name)
        return parsed, http

    def _daxd_shape_hit(self, op: Operation, body: bytes) -> dict[str, Any]:
        """A cached GetItem response (DynamoDB JSON) in the shape this client answers: binary as bytes."""
        return convert.response_data(body, orjson.loads(body), op.output_shape)

    def _daxd_get_item_hit(self, op: Operation, params: dict[str, Any]) -> tuple[dict[str, Any], bytes] | None:
        """A cached GetItem answered without a plan: a fresh copy of the response, in boto3's shape,
        and the body DynamoDB would have sent.

        The boto3-shaped response (binary values as bytes) is pickled once per
        entry and kept with it; ``pickle.loads`` gives every caller its own copy
        in a few microseconds, where re-decoding base64 through the output shape
        costs tens.
        """
        driver = self._daxd_driver
        with driver.lock:
            try:
                entry = driver.accelerator.cached_item(params)
            except (TypeError, DaxdError):  # bytes in the key, or a malformed one: the plan decides
                return None
            if entry is None:
                return None
            body = item_body(entry.item)
            kept = entry.extra.get(_PICKLE) if entry.extra is not None else None
            if kept is None:
                blob = pickle.dumps(self._daxd_shape_hit(op, body), protocol=pickle.HIGHEST_PROTOCOL)
                kept = (blob, body_facts(body))
                driver.accelerator.items.attach(entry, _PICKLE, kept, len(blob))
        response: dict[str, Any] = pickle.loads(kept[0])
        response["ResponseMetadata"] = self._daxd_events.metadata(body, kept[1])
        return response, body

    def _daxd_resource_get_item_hit(self, op: Operation, params: dict[str, Any]) -> dict[str, Any] | None:
        """A GetItem hit of boto3's resource, whose hooks are all it has (:meth:`Events.hooks`),
        answered as those hooks would: the key typed, the item untyped.

        GetItem has no condition or value placeholders, so typing its ``Key`` is
        all the input hooks do, and untyping ``Item`` all the output hook does;
        the untyped response is pickled once per entry, like the client's.
        """
        key = params.get("Key")
        if not isinstance(key, dict):
            return None
        try:
            typed = {**params, "Key": {name: _SERIALIZER.serialize(value) for name, value in key.items()}}
        except (TypeError, ValueError):
            return None  # the hooks raise boto3's own error for this
        if self._daxd_validate:
            op.check(typed)
        driver = self._daxd_driver
        with driver.lock:
            try:
                entry = driver.accelerator.cached_item(typed)
            except (TypeError, DaxdError):
                return None
            if entry is None:
                return None
            kept = entry.extra.get(_RESOURCE_PICKLE) if entry.extra is not None else None
            if kept is None:
                body = item_body(entry.item)
                data = self._daxd_shape_hit(op, body)
                if "Item" in data:
                    data["Item"] = {name: _DESERIALIZER.deserialize(value) for name, value in data["Item"].items()}
                blob = pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
                kept = (blob, body_facts(body))
                driver.accelerator.items.attach(entry, _RESOURCE_PICKLE, kept, len(blob))
        response: dict[str, Any] = pickle.loads(kept[0])
        response["ResponseMetadata"] = self._daxd_events.metadata(b"", kept[1])
        return response

    def _daxd_recover(self, op: Operation, exchange: Exchange, failure: Exception,
                      started: float) -> tuple[dict[str, Any], Any]:
        """After a plan failed: boto3's own error, or boto3's own answer to the caller's request.

        An error of the caller's operation from DynamoDB is raised as boto3
        raised it. If the caller's request never reached DynamoDB (the plan
        refused it, or its schema lookup failed), the request goes straight
        through boto3, so validation, error and ``operation_name`` are boto3's.
        """
        trip = exchange.trip
        self._daxd_metrics.request(op.name, time.perf_counter() - started,
                                   failure if isinstance(failure, DaxdError) else None)
        upstream = upstream_cause(failure)
        if upstream is not None and upstream[1] == op.name:
            cause, _, http = upstream
            trip.http, trip.parsed = http, getattr(cause, "response", None)
            raise cause
        if not trip.sent:
            return self._daxd_direct(op, exchange.params, trip)
        # the plan broke after the caller's request reached DynamoDB: forget what it may have touched
        self._daxd_driver.locked(lambda acc: acc.flush())
        if op.read_only:
            return self._daxd_direct(op, exchange.params, trip)
        if exchange.response is not None and exchange.reply is not None:
            return exchange.response, trip.http
        if isinstance(failure, DaxdError):
            raise self._daxd_client_error(op, failure) from None
        raise failure

    def _daxd_direct(self, op: Operation, params: dict[str, Any], trip: Trip) -> tuple[dict[str, Any], Any]:
        """The call straight through boto3; a write that succeeds this way flushes the cache."""
        trip.http = trip.parsed = None
        previous = self._daxd_relay.enter(trip)
        try:
            response = op.method(**params)
        finally:
            self._daxd_relay.enter(previous)
        if not op.read_only:
            self._daxd_driver.locked(lambda acc: acc.flush())
        return response, trip.http

    def _daxd_client_error(self, op: Operation, failure: DaxdError) -> ClientError:
        """A daxd error as the exception boto3 raises for that error code."""
        response = {"Error": {"Message": failure.message, "Code": failure.code},
                    "ResponseMetadata": {**self._daxd_events.metadata(failure.to_json()),
                                         "HTTPStatusCode": failure.status}}
        error: ClientError = self._daxd_client.exceptions.from_code(failure.code)(response, op.name)
        return error
