"""The accelerated boto3 resource: ``Table`` objects, ``Key``/``Attr`` conditions, Python types.

A boto3 DynamoDB resource converts between Python values and DynamoDB's typed
JSON in hooks it registers on its client's event system (``before-parameter-
build``/``after-call``). Hits never fire botocore's events, so the accelerated
resource's client applies boto3's own transformations itself
(:class:`~boto3.dynamodb.transform.TransformationInjector`, one per thread: it
keeps placeholder counters) and talks typed JSON to the Accelerator. Its misses
go through a twin of the original client from which those hooks are removed:
the values it receives are already typed. The resource's own hooks land on a
private event emitter that nothing fires.

Every action of the resource (``Table.get_item``, ``Table.batch_writer()``,
``Table.query`` ...) calls ``resource.meta.client``, which is the accelerated
client, so no write bypasses the cache.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.hooks import HierarchicalEmitter

from daxd.inprocess.client import AcceleratedClient, Operation
from daxd.inprocess.driver import ThreadedDriver

#: The hooks ``boto3.dynamodb.transform.DynamoDBHighLevelResource`` registers (event, unique id).
_RESOURCE_HOOKS = (
    ("provide-client-params.dynamodb", "dynamodb-create-params-copy"),
    ("before-parameter-build.dynamodb", "dynamodb-condition-expression"),
    ("before-parameter-build.dynamodb", "dynamodb-attr-value-input"),
    ("after-call.dynamodb", "dynamodb-attr-value-output"),
)


_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


def plain_twin(client: Any) -> Any:
    """A client sharing ``client``'s endpoint, credentials and config, minus the resource hooks.

    The original is left untouched (tables made from the original resource keep working).
    """
    twin = object.__new__(type(client))
    twin.__dict__.update(client.__dict__)
    twin.meta = copy.copy(client.meta)
    twin.meta.events = copy.copy(client.meta.events)
    for event, unique_id in _RESOURCE_HOOKS:
        twin.meta.events.unregister(event, unique_id=unique_id)
    return twin


class ResourceClient(AcceleratedClient):
    """The client under an accelerated resource: Python values in and out, like the resource's own."""

    _daxd_pickle_name = "boto3-resource-pickle"

    def __init__(self, client: Any, driver: ThreadedDriver) -> None:
        super().__init__(client, driver)
        self._daxd_meta = copy.copy(client.meta)
        self._daxd_meta.events = HierarchicalEmitter()
        self._daxd_local = threading.local()

    @property
    def meta(self) -> Any:
        """The wrapped client's meta, with a private event emitter for the resource's hooks."""
        return self._daxd_meta

    def _daxd_call(self, op: Operation, params: dict[str, Any], fast: bool = True) -> Any:
        if fast and op.name == "GetItem" and isinstance(params.get("Key"), dict):
            hit = self._daxd_typed_get_item_hit(op, params)
            if hit is not None:
                return hit
        injector = self._daxd_injector()
        params = copy.deepcopy(params)  # the caller's dict is theirs, as in boto3
        injector.inject_condition_expressions(params, op.model)
        injector.inject_attribute_value_input(params, op.model)
        response = super()._daxd_call(op, params, fast=False)
        injector.inject_attribute_value_output(response, op.model)
        return response

    def _daxd_typed_get_item_hit(self, op: Operation, params: dict[str, Any]) -> dict[str, Any] | None:
        """A GetItem hit without boto3's shape-walking transformer: only the key is serialized.

        GetItem has no condition or value placeholders, so typing its ``Key`` is
        all the input transformation does; the response is deserialized once per
        entry and kept pickled (see :meth:`AcceleratedClient._daxd_get_item_hit`).
        """
        if self._daxd_validate:
            op.check(params)
        try:
            key = {name: _SERIALIZER.serialize(value) for name, value in params["Key"].items()}
        except (TypeError, ValueError):
            return None  # boto3's own path raises its own error for this
        return self._daxd_get_item_hit(op, {**params, "Key": key})

    def _daxd_shape_hit(self, op: Operation, body: bytes) -> dict[str, Any]:
        data = super()._daxd_shape_hit(op, body)
        if "Item" in data:
            data["Item"] = {name: _DESERIALIZER.deserialize(value) for name, value in data["Item"].items()}
        return data

    def _daxd_injector(self) -> Any:
        injector = getattr(self._daxd_local, "injector", None)
        if injector is None:
            from boto3.dynamodb.transform import TransformationInjector
            injector = self._daxd_local.injector = TransformationInjector()
        return injector


def accelerate_resource(resource: Any, driver: ThreadedDriver) -> Any:
    """A new resource of the same class whose client is accelerated."""
    client = ResourceClient(plain_twin(resource.meta.client), driver)
    return type(resource)(client=client)
