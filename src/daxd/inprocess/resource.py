"""The accelerated boto3 resource: ``Table`` objects, ``Key``/``Attr`` conditions, Python types.

A boto3 DynamoDB resource converts between Python values and DynamoDB's typed
JSON in hooks it registers on its client's event emitter
(``provide-client-params``, ``before-parameter-build``, ``after-call``). The
accelerated client fires those events for every call, hits included
(:mod:`daxd.inprocess.events`), on the emitter of the client it wraps, so the
resource's own hooks do the conversion, and a hook that a caller adds or
removes there (to turn the transformation off, say) takes effect.

Every action of the resource (``Table.get_item``, ``Table.batch_writer()``,
``Table.query`` ...) calls ``resource.meta.client``, which is the accelerated
client, so no write bypasses the cache.
"""

from __future__ import annotations

from typing import Any

from daxd.inprocess.client import AcceleratedClient
from daxd.inprocess.driver import ThreadedDriver


def accelerate_resource(resource: Any, driver: ThreadedDriver) -> Any:
    """A new resource of the same class whose client is the accelerated ``resource.meta.client``.

    The new resource registers its hooks on the same emitter as ``resource``
    (under the same unique ids, so nothing is registered twice).
    """
    return type(resource)(client=AcceleratedClient(resource.meta.client, driver))
