"""botocore's event sequence for accelerated calls, hits included.

A boto3 call fires, on its client's event emitter: ``provide-client-params``
and ``before-parameter-build`` (hooks may replace or change the parameters:
boto3's DynamoDB resource types its values here), then the request is built
and ``before-call`` fires (a hook may answer instead of DynamoDB), the
transport events fire while it is sent, and ``after-call`` fires with the
parsed response (the resource turns it back into Python values here).

An accelerated call fires the same events on the caller's own emitter:

- the two parameter events are fired by :class:`Events`, once, before the
  cache sees the parameters, so the cache works on what boto3 would send;
- ``before-call`` fires inside botocore for a request daxd sends on the
  caller's behalf; for an answer that sends nothing (a hit) :class:`Events`
  fires it itself, with the request botocore would have built, when a hook
  other than botocore's own listens (building it costs what a hit saves);
- ``after-call`` is fired by :class:`Events` once the caller's answer is
  known, with that answer (a hit's stands in for an HTTP 200).

daxd's upstream calls go through a *relay* client: the wrapped client with a
:class:`Relay` for emitter, which drops the parameter events (already fired),
captures ``after-call`` (fired later, with the caller's answer) and keeps the
caller's hooks away from calls the caller did not make (the table-schema
lookup). Transport events go to the caller's emitter unchanged.
"""

from __future__ import annotations

import copy
import itertools
import os
import threading
import time
import zlib
from email.utils import formatdate
from typing import Any

from botocore.awsrequest import AWSResponse, HeadersDict
from botocore.hooks import first_non_none_response

#: The hooks boto3's DynamoDB resource registers (unique ids), in the order their events fire.
RESOURCE_HOOKS = ("dynamodb-create-params-copy", "dynamodb-condition-expression", "dynamodb-attr-value-input",
                  "dynamodb-attr-value-output")
#: The events a relay never passes on: :class:`Events` fires them for the caller's call.
_PARAMETER_EVENTS = frozenset({"provide-client-params", "before-parameter-build"})


class Trip:
    """One caller's call as the relay sees it: whether it was sent, what botocore's after-call carried."""

    __slots__ = ("context", "http", "lookup", "parsed", "sent")

    def __init__(self, context: dict[str, Any]) -> None:
        self.context = context
        self.sent = False
        self.lookup = False
        self.http: Any = None
        self.parsed: Any = None


class Relay:
    """The emitter of the client daxd sends through; see the module docstring.

    Registrations go to the caller's emitter, so hooks added later take effect.
    """

    def __init__(self, events: Any) -> None:
        self._events = events
        self._local = threading.local()

    def enter(self, trip: Trip | None) -> Trip | None:
        """Make ``trip`` the current thread's call; returns the previous one (to restore)."""
        previous: Trip | None = getattr(self._local, "trip", None)
        self._local.trip = trip
        return previous

    def emit(self, event_name: str, **kwargs: Any) -> list[Any]:
        kind = event_name.partition(".")[0]
        if kind in _PARAMETER_EVENTS:
            return []
        trip: Trip | None = getattr(self._local, "trip", None)
        if trip is not None:
            if trip.lookup:
                return []  # the caller never made this call: their hooks do not hear of it
            if kind == "after-call":  # fired later by Events, with the caller's answer
                trip.http, trip.parsed = kwargs.get("http_response"), kwargs.get("parsed")
                return []
        responses: list[Any] = self._events.emit(event_name, **kwargs)
        return responses

    def emit_until_response(self, event_name: str, **kwargs: Any) -> tuple[Any, Any]:
        trip: Trip | None = getattr(self._local, "trip", None)
        if trip is not None:
            if trip.lookup:
                return None, None
            if event_name.startswith("before-call."):
                context = kwargs.get("context")
                if isinstance(context, dict):  # one context per call, as in boto3: keep what hooks stored
                    for name, value in trip.context.items():
                        context.setdefault(name, value)
                    trip.context = context
                trip.sent = True
        result: tuple[Any, Any] = self._events.emit_until_response(event_name, **kwargs)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._events, name)


def relay_client(client: Any) -> tuple[Any, Relay]:
    """A client sharing ``client``'s endpoint, credentials, config and emitter, whose
    client-level events pass through a :class:`Relay`. ``client`` itself is untouched."""
    relay = Relay(client.meta.events)
    twin = object.__new__(type(client))
    twin.__dict__.update(client.__dict__)
    twin.meta = copy.copy(client.meta)
    twin.meta.events = relay
    return twin, relay


class Events:
    """Fires botocore's client-level events of accelerated calls on the caller's emitter."""

    def __init__(self, client: Any, relay_twin: Any) -> None:
        self.client = client
        self.twin = relay_twin
        self.service_id = client.meta.service_model.service_id.hyphenize()
        self.endpoint_url = client.meta.endpoint_url
        self._names: dict[str, tuple[str, str, str, str]] = {}
        self._judged_for: Any = None
        self._judged: dict[str, str] = {}
        retries = client.meta.config.retries or {}
        #: botocore's standard retry mode marks every response of a client allowed one attempt.
        self.last_attempt = retries.get("mode") in ("standard", "adaptive") and retries.get("total_max_attempts") == 1

    def hooks(self, operation: str) -> str:
        """Who hooks ``operation``'s client-level events, botocore's own handlers aside: ``"none"``,
        ``"resource"`` (only boto3's resource transformation, as the resource registered it) or
        ``"other"``. With none, or the resource's alone, a GetItem hit may skip the events and do
        what they would do directly (same answer, a fraction of the cost). Re-judged whenever a
        hook is registered or removed."""
        events = self.client.meta.events
        inner = getattr(events, "_emitter", events)
        registered = getattr(inner, "_lookup_cache", None)
        if registered is not self._judged_for:  # the emitter replaces this dict on every (un)registration
            self._judged_for, self._judged = registered, {}
        verdict = self._judged.get(operation)
        if verdict is None:
            verdict = self._judged[operation] = "other" if registered is None else self._judge(events, operation)
        return verdict

    def _judge(self, events: Any, operation: str) -> str:
        found: list[Any] = []
        for name in self.names(operation):
            handlers = _handlers(events, name)
            if handlers is None:
                return "other"
            found.extend(_foreign(handlers))
        if not found:
            return "none"
        inner = getattr(events, "_emitter", events)
        unique = getattr(inner, "_unique_id_handlers", {})
        if all(hook in unique for hook in RESOURCE_HOOKS) and found == [unique[h]["handler"] for h in RESOURCE_HOOKS]:
            return "resource"
        return "other"

    def metadata(self, body: bytes, facts: tuple[str, str] | None = None) -> dict[str, Any]:
        """The ``ResponseMetadata`` of an answer that sent nothing (see :func:`hit_metadata`)."""
        return hit_metadata(body, self.last_attempt, facts)

    def names(self, operation: str) -> tuple[str, str, str, str]:
        names = self._names.get(operation)
        if names is None:
            s = self.service_id
            names = self._names[operation] = (
                f"provide-client-params.{s}.{operation}", f"before-parameter-build.{s}.{operation}",
                f"before-call.{s}.{operation}", f"after-call.{s}.{operation}")
        return names

    def context(self, model: Any) -> dict[str, Any]:
        """The request context botocore starts a call with (hooks may store their own things in it)."""
        meta = self.client.meta
        return {"client_region": meta.region_name, "client_config": meta.config,
                "has_streaming_input": model.has_streaming_input, "auth_type": model.resolved_auth_type,
                "unsigned_payload": model.unsigned_payload,
                "auth_options": meta.service_model.metadata.get("auth")}

    def parameters(self, model: Any, params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        """``provide-client-params`` then ``before-parameter-build``: the parameters the call proceeds with."""
        provide, build, _, _ = self.names(model.name)
        events = self.client.meta.events
        params = first_non_none_response(events.emit(provide, params=params, model=model, context=context),
                                         default=params)
        events.emit(build, params=params, model=model, context=context)
        return params

    def before_call(self, model: Any, params: dict[str, Any], context: dict[str, Any]) -> Any:
        """``before-call`` for a call that sends nothing; a hook's ``(http, parsed)`` answer or None.

        Fired only if a hook other than botocore's own listens: the request
        must be built for it (endpoint resolution, serialization), which costs
        more than the hit.
        """
        name = self.names(model.name)[2]
        events = self.client.meta.events
        if not _listened(events, name):
            return None
        twin = self.twin
        endpoint_url, headers, properties = twin._resolve_endpoint_ruleset(model, params, context)
        if properties:
            context["endpoint_properties"] = properties
        request = twin._convert_to_request_dict(api_params=params, operation_model=model, endpoint_url=endpoint_url,
                                                context=context, headers=headers)
        _, response = events.emit_until_response(name, model=model, params=request,
                                                  request_signer=self.client._request_signer, context=context)
        return response

    def after_call(self, model: Any, http: Any, parsed: Any, context: dict[str, Any]) -> None:
        self.client.meta.events.emit(self.names(model.name)[3], http_response=http, parsed=parsed, model=model,
                                     context=context)

    def hit_http(self, metadata: dict[str, Any], body: bytes) -> AWSResponse:
        """The HTTP response a hit stands for (``after-call``'s ``http_response``)."""
        return HitResponse(self.endpoint_url, metadata, body)


class HitResponse(AWSResponse):  # type: ignore[misc]  # botocore is untyped
    """botocore's HTTP response for an answer that sent nothing: status 200, the headers of its
    ResponseMetadata (made into botocore's header dict only if someone reads them), the body."""

    def __init__(self, url: str, metadata: dict[str, Any], body: bytes) -> None:
        self.url = url
        self.status_code = 200
        self.raw = None
        self._content = body
        self._metadata = metadata
        self._headers: Any = None

    @property
    def headers(self) -> Any:
        if self._headers is None:
            self._headers = HeadersDict(self._metadata["HTTPHeaders"])
        return self._headers


def _handlers(events: Any, name: str) -> list[Any] | None:
    """The handlers ``events`` would call for ``name`` (None: an emitter we cannot look into)."""
    inner = getattr(events, "_emitter", events)
    alias = getattr(events, "_alias_event_name", None)
    trie = getattr(inner, "_handlers", None)
    if trie is None or not hasattr(trie, "prefix_search"):
        return None
    name = alias(name) if alias is not None else name
    cache = getattr(inner, "_lookup_cache", None)
    handlers = cache.get(name) if isinstance(cache, dict) else None
    if handlers is None:
        handlers = trie.prefix_search(name)  # as the emitter's own lookup does, and kept where it keeps it
        if isinstance(cache, dict):
            cache[name] = handlers
    return list(handlers)


def _foreign(handlers: list[Any]) -> list[Any]:
    """The handlers botocore did not register itself."""
    return [h for h in handlers if not (getattr(h, "__module__", None) or "").startswith("botocore.")]


def _listened(events: Any, name: str) -> bool:
    """Whether a handler not registered by botocore itself listens to ``name`` on ``events``."""
    handlers = _handlers(events, name)
    return handlers is None or bool(_foreign(handlers))


# -- a hit's ResponseMetadata ------------------------------------------------

_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    """Now as an HTTP ``date`` header; formatted once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


#: Request ids: a random per-process prefix and a counter (unique, cheap: one is made per hit).
_ID_PREFIX = os.urandom(18).hex().upper()
_ID_COUNTER = itertools.count(1)


def request_id() -> str:
    """A fresh request id shaped like DynamoDB's (52 upper-case letters and digits)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016X}"


def body_facts(body: bytes) -> tuple[str, str]:
    """The ``content-length`` and ``x-amz-crc32`` headers of a response body."""
    return str(len(body)), str(zlib.crc32(body))


def hit_metadata(body: bytes, last_attempt: bool = False, facts: tuple[str, str] | None = None) -> dict[str, Any]:
    """The ``ResponseMetadata`` of an answer served from memory: what DynamoDB's HTTP 200 carrying
    ``body`` would have, with a request id of its own (``last_attempt``: botocore would add
    ``MaxAttemptsReached``; ``facts``: :func:`body_facts` of ``body``, if known)."""
    rid = request_id()
    length, crc = facts or body_facts(body)
    metadata = {"RequestId": rid, "HTTPStatusCode": 200,
                "HTTPHeaders": {"server": "Server", "date": _http_date(), "content-type": "application/x-amz-json-1.0",
                                "content-length": length, "connection": "keep-alive",
                                "x-amzn-requestid": rid, "x-amz-crc32": crc},
                "RetryAttempts": 0}
    if last_attempt:
        metadata["MaxAttemptsReached"] = True
    return metadata
