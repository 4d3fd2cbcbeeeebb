"""In-process acceleration of boto3: ``daxd.accelerate(boto3.client("dynamodb"))``.

The same cache policy as the node (the Accelerator's plans), driven
synchronously inside the application: a hit costs microseconds and never
leaves the process. docs/inprocess.md has the contract.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry

from daxd.accelerator import Accelerator, CacheSettings
from daxd.config import parse_size
from daxd.inprocess.client import AcceleratedClient
from daxd.inprocess.driver import ThreadedDriver
from daxd.observability import Metrics
from daxd.policy import TablePolicies, parse_tables

__all__ = ["AcceleratedClient", "accelerate"]


def accelerate(target: Any, *, item_ttl: float = 300.0, query_ttl: float = 300.0,
               cache_size: int | str = 1 << 30,
               tables: Iterable[str] | Mapping[str, Mapping[str, Any]] | None = None,
               consistent_window: float = 5.0, streams: bool = False, streams_client: Any = None,
               registry: CollectorRegistry | None = None, timer: Any = None) -> Any:
    """Wrap a boto3 DynamoDB client or resource with an in-process cache.

    Args:
        target: ``boto3.client("dynamodb")`` or ``boto3.resource("dynamodb")``.
        item_ttl: seconds a GetItem/BatchGetItem entry lives (``--item-ttl``).
        query_ttl: seconds a Query/Scan page lives; 0 turns the query cache off (``--query-ttl``).
        cache_size: bytes of cache, or a size such as ``"512MiB"`` (``--cache-size``).
        tables: either the names of the only tables to cache (the others pass straight through), or
            a per-table policy like the ``[tables]`` sections of ``daxd serve --config``:
            ``{"Balances": {"cache": False}, "Music": {"item_ttl": 3600}, "Events*": {"query_cache": False}}``
            (keys ``cache``, ``item_ttl``, ``query_ttl``, ``query_cache``; unmatched tables use the
            arguments above). Default: every table, with the arguments above.
        consistent_window: seconds after a write during which refills use ConsistentRead.
        streams: tail each cached table's DynamoDB Stream so writes made elsewhere reach the cache
            (a background thread; stopped by ``close()``).
        streams_client: the boto3 ``dynamodbstreams`` client to use (default: one made with the
            DynamoDB client's region, endpoint and current credentials).
        registry: a prometheus_client registry to export the node's metrics into.
        timer: monotonic clock (seconds), for tests.

    Returns:
        An object with the same methods, arguments, responses and exceptions as ``target``.

    Raises:
        TypeError: ``target`` is not a boto3 DynamoDB client or resource.
        ValueError: a setting is out of range (a bad ``tables`` policy: daxd.config.ConfigError,
            a ValueError naming the table).
    """
    only, policies = None, TablePolicies()
    if isinstance(tables, Mapping):
        policies = parse_tables(tables, "daxd.accelerate(tables=...)")
    elif tables is not None:
        only = frozenset(tables)
    settings = CacheSettings(item_ttl=item_ttl, query_ttl=query_ttl, cache_size=parse_size(cache_size),
                             consistent_window=consistent_window, tables=only, policies=policies)
    extra = {} if timer is None else {"timer": timer}
    driver = ThreadedDriver(Accelerator(settings, metrics=Metrics(registry), **extra))
    accelerated = _wrap(target, driver)
    if streams:
        _start_streams(accelerated, driver, streams_client)
    return accelerated


def _start_streams(accelerated: Any, driver: ThreadedDriver, streams_client: Any) -> None:
    from daxd.inprocess.streams import Boto3Streams, StreamsThread, streams_client_for

    client = accelerated if isinstance(accelerated, AcceleratedClient) else accelerated.meta.client
    plain = client._daxd_client
    thread = StreamsThread(driver, Boto3Streams(plain, streams_client or streams_client_for(plain)))
    client._daxd_hooks.append(thread.stop)


def _wrap(target: Any, driver: ThreadedDriver) -> Any:
    meta = getattr(target, "meta", None)
    if getattr(meta, "service_name", None) == "dynamodb" and hasattr(meta, "client"):
        from daxd.inprocess.resource import accelerate_resource
        return accelerate_resource(target, driver)
    if getattr(getattr(meta, "service_model", None), "service_name", None) == "dynamodb":
        return AcceleratedClient(target, driver)
    raise TypeError(f"daxd.accelerate needs a boto3 DynamoDB client or resource, not {target!r}")
