"""A daxd node: the Accelerator, its upstream and its listeners, started and stopped together.

This is the I/O edge of the server: everything below it (the Accelerator, the
cache, the codecs) is plain code; everything here opens sockets or threads.
"""

from __future__ import annotations

import asyncio
import ctypes
import ipaddress
import logging
import signal
import socket
import ssl
import sys
import time
from typing import Any

import botocore.session

from daxd import __version__
from daxd.accelerator import Accelerator, CacheSettings
from daxd.auth import DaxAuthenticator, http_authorizer, load_keys
from daxd.cluster.membership import Address, Membership, PeerListError, find_self, parse_peers
from daxd.cluster.node import Cluster, peer_credentials
from daxd.cluster.streams import StreamCollector, StreamsUpstream, StreamTailer, streams_endpoint
from daxd.config import ConfigError, Settings
from daxd.drivers import AsyncDriver
from daxd.embedded import EmbeddedBackend
from daxd.frontends import admin, httpserver, listener
from daxd.frontends.dax import server as dax_server
from daxd.frontends.dax.attrs import AttributeListTable
from daxd.frontends.dax.service import DaxService
from daxd.frontends.http import DynamoDBApp, error_response
from daxd.frontends.listener import Limits, ListenerCollector, ListenerState, RequestBudget
from daxd.observability import Metrics
from daxd.upstream.client import BotocoreCredentials, Upstream, aws_endpoint
from daxd.upstream.sigv4 import Credentials

log = logging.getLogger("daxd")

#: Credentials used when the chain has none and the upstream is not AWS
#: (DynamoDB Local and Alternator accept any key).
LOCAL_FALLBACK_CREDENTIALS = Credentials("daxd", "daxd")


def default_region(settings: Settings) -> str:
    """``--region``, else the AWS chain's region, else us-east-1."""
    if settings.region:
        return settings.region
    try:
        region = botocore.session.Session(profile=settings.profile).get_config_variable("region")
    except Exception:  # a broken profile must not stop a local node from starting
        region = None
    return str(region or "us-east-1")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def advertised_hostname(host: str) -> str:
    """The name ``endpoints`` advertises: the listen address, or this machine's name for a wildcard."""
    if host in ("", "0.0.0.0", "::"):
        return socket.gethostname()
    return "localhost" if is_loopback(host) else host


def primary_address() -> str:
    """The address this machine reaches the network from (no packet is sent: UDP connect only routes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def resolve(host: str) -> str:
    """An IP literal for ``host`` (IPv4 preferred, as the DAX clients prefer it).

    Raises:
        ConfigError: the name does not resolve.
    """
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ConfigError(f"peers/advertise: cannot resolve {host!r}: {exc}") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return str(infos[0][4][0])


def membership_of(settings: Settings) -> Membership:
    """This node's cluster view from ``--peers``, ``--advertise``, ``--dax-port`` and ``--node-id``.

    Raises:
        ConfigError: a bad peer entry, or this node is not in the list.
    """
    wildcard = settings.host in ("", "0.0.0.0", "::")
    advertise = settings.advertise or (primary_address() if wildcard else settings.host)
    me = Address(advertise, settings.dax_port)
    try:
        others = find_self(parse_peers(settings.peers), me)
    except PeerListError as exc:
        raise ConfigError(str(exc)) from None
    name = settings.node_id or f"{socket.gethostname()}:{settings.dax_port}"
    return Membership(me, resolve(advertise), name, {p: resolve(p.host) for p in others}, timer=time.monotonic)


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server TLS context of ``--tls-cert``/``--tls-key`` (None without them).

    Raises:
        ConfigError: the files cannot be read or do not match.
    """
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls_cert/tls_key: cannot load {settings.tls_cert} and {settings.tls_key}: {exc}") from None
    return context


def listener_limits(settings: Settings, protocol: str) -> Limits:
    """The limits of one protocol's listeners (each listener counts its own connections)."""
    s = settings
    dax = protocol == "dax"
    return Limits(max_connections=s.dax_max_connections if dax else s.http_max_connections,
                  idle_timeout=s.dax_idle_timeout if dax else s.http_idle_timeout,
                  header_timeout=s.header_timeout, body_timeout=s.body_timeout,
                  max_header_count=s.max_header_count, max_header_bytes=s.max_header_size,
                  max_request_size=s.max_request_size, write_high_water=s.reply_buffer)


class Node:
    """One daxd node. ``start()`` binds every listener; ``stop()`` drains and closes them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.region = default_region(settings)
        self.metrics = Metrics()
        self.accelerator = Accelerator(CacheSettings(
            item_ttl=settings.item_ttl, query_ttl=settings.query_ttl, cache_size=settings.cache_size,
            consistent_window=settings.consistent_window,
            read_only_control_plane=settings.control_plane == "read-only",
        ), metrics=self.metrics)
        self.embedded: EmbeddedBackend | None = None
        self.upstream: Upstream | None = None
        self.driver: AsyncDriver | None = None
        self.tailer: StreamTailer | None = None
        self.streams_upstream: StreamsUpstream | None = None
        self.secrets = load_keys(settings.auth_keys) if settings.auth_keys else None
        self.tls = tls_context(settings)
        self.attr_lists = AttributeListTable(settings.attribute_lists_max)
        self.listeners: list[ListenerState] = []
        self.request_budget = RequestBudget(settings.request_budget)
        self.metrics.registry.register(dax_server.DaxCollector(self.attr_lists))
        self.metrics.registry.register(ListenerCollector(self.listeners))
        self.cluster = Cluster(membership_of(settings), self.accelerator, credentials=peer_credentials(self.secrets),
                               region=self.region, health_interval=settings.health_interval,
                               quiet=settings.consistent_window)
        self.http_port = 0
        self.admin_port = 0
        self.dax_port = 0
        self.dax_tls_port = 0
        self.http_tls_port = 0
        self._servers: list[asyncio.Server] = []
        self.stopped = asyncio.Event()

    def _make_upstream(self) -> Upstream:
        s = self.settings
        options: dict[str, Any] = {"timeout": s.upstream_timeout, "max_attempts": s.upstream_max_attempts,
                                   "max_connections": s.upstream_max_connections,
                                   "observe": self.metrics.upstream}
        if s.upstream == "aws":
            return Upstream(aws_endpoint(self.region), self.region, BotocoreCredentials(None, s.profile), **options)
        endpoint = s.upstream
        if s.upstream == "embedded":
            self.embedded = EmbeddedBackend.start()
            endpoint = self.embedded.endpoint
        credentials = BotocoreCredentials(None, s.profile, fallback=LOCAL_FALLBACK_CREDENTIALS)
        return Upstream(endpoint, self.region, credentials, **options)

    def _make_streams_upstream(self) -> StreamsUpstream:
        """Streams come from the DynamoDB endpoint itself, except on AWS (streams.dynamodb.<region>)."""
        assert self.upstream is not None
        s = self.settings
        if s.upstream != "aws":
            return StreamsUpstream(self.upstream)
        streams = Upstream(streams_endpoint(self.region), self.region, BotocoreCredentials(None, s.profile),
                           timeout=s.upstream_timeout, max_attempts=s.upstream_max_attempts,
                           max_connections=8, observe=self.metrics.upstream)
        return StreamsUpstream(self.upstream, streams)

    async def start(self) -> None:
        s = self.settings
        self.upstream = self._make_upstream()
        self.driver = AsyncDriver(self.accelerator, self.upstream)
        if s.streams == "on" and s.upstream != "embedded":
            self.streams_upstream = self._make_streams_upstream()
            clustered = self.cluster.membership.clustered
            self.tailer = StreamTailer(self.accelerator, self.streams_upstream,
                                       shard_filter=self.cluster.owns if clustered else None,
                                       sink=self.cluster.sink if clustered else None)
            self.cluster.tailer = self.tailer
            self.metrics.registry.register(StreamCollector(self.tailer.stats))
            self.tailer.start()
        authorizer = http_authorizer(self.secrets) if self.secrets is not None else None
        api = DynamoDBApp(self.driver, self.metrics, authorizer, region=self.region)
        self.http_port = await self._listen_http("http", api, s.http_port, None)
        self.admin_port = await self._listen(ListenerState("admin", Limits()), admin.AdminApp(self), s.admin_port)
        service = DaxService(self.driver, self.attr_lists,
                             authenticator=DaxAuthenticator(self.secrets) if self.secrets is not None else None,
                             hostname=advertised_hostname(s.host), availability_zone=f"{self.region}a",
                             cluster=self.cluster, cluster_port=s.dax_port or None)
        self.dax_port = await self._listen_dax("dax", service, s.dax_port, None)
        service.cluster_port = self.dax_port
        self.cluster.start()
        if self.tls is not None:
            self.dax_tls_port = await self._listen_dax("daxs", service, s.dax_tls_port, self.tls)
            self.http_tls_port = await self._listen_http("https", api, s.http_tls_port, self.tls)
        self._announce()

    async def _listen(self, state: ListenerState, app: httpserver.Application, port: int,
                      context: ssl.SSLContext | None = None, **kwargs: Any) -> int:
        server = await httpserver.serve(app, self.settings.host, port, state, context, **kwargs)
        return self._add(server, state)

    async def _listen_http(self, name: str, app: httpserver.Application, port: int,
                           context: ssl.SSLContext | None) -> int:
        """The DynamoDB API, plain or over TLS: the same application on either transport."""
        state = ListenerState(name, listener_limits(self.settings, "http"), self.request_budget)
        return await self._listen(state, app, port, context, error_response=error_response)

    async def _listen_dax(self, name: str, service: DaxService, port: int, context: ssl.SSLContext | None) -> int:
        state = ListenerState(name, listener_limits(self.settings, "dax"))
        server = await dax_server.serve(service, state, self.settings.host, port, context)
        return self._add(server, state)

    def _add(self, server: asyncio.Server, state: ListenerState) -> int:
        self._servers.append(server)
        self.listeners.append(state)
        return int(server.sockets[0].getsockname()[1])

    def _announce(self) -> None:
        s = self.settings
        host = s.host if ":" not in s.host else f"[{s.host}]"
        lines = [f"daxd {__version__}: DynamoDB API on http://{host}:{self.http_port}",
                 f"daxd: DAX protocol on dax://{host}:{self.dax_port}"]
        membership = self.cluster.membership
        if membership.clustered:
            lines.append(f"daxd: cluster node {membership.name} (id {membership.node_id}) advertised as "
                         f"{membership.me}; peers {', '.join(map(str, membership.peers))}")
        if self.tls is not None:
            lines += [f"daxd: DAX over TLS on daxs://{host}:{self.dax_tls_port}",
                      f"daxd: DynamoDB API over TLS on https://{host}:{self.http_tls_port}"]
        if self.secrets is None:
            lines.append("daxd: authentication off: any access key is accepted over DAX and HTTP "
                         "(--auth-keys FILE requires SigV4 with its keys)")
        else:
            lines.append(f"daxd: authentication on: {len(self.secrets)} access key(s) from {s.auth_keys}")
        # The admin line comes last among the listeners: tests/harness.py stops reading at it.
        lines += [f"daxd: admin (health, readiness, metrics) on http://{host}:{self.admin_port}",
                  f"daxd: upstream {self.upstream.endpoint if self.upstream else '?'} (region {self.region})"]
        for line in lines:
            print(line, flush=True)
        if self.embedded is not None:
            log.warning("upstream is the embedded backend: data lives in this process's memory only "
                        "and is lost when daxd stops (use --upstream URL|aws for real data)")
            if self.cluster.membership.clustered:
                log.warning("--peers with the embedded backend: each node keeps its own in-memory database, "
                            "so the nodes share no data and their caches disagree; give every node the same "
                            "--upstream URL|aws")
        if self.secrets is None and not is_loopback(s.host):
            log.warning("listening on %s without --auth-keys: anyone who can reach these ports acts "
                        "with this node's AWS credentials", s.host)

    async def ready(self) -> tuple[bool, str]:
        """Readiness: listeners up and the upstream answered recently (probing it if not)."""
        if not self._servers or self.upstream is None:
            return False, "listeners are not up"
        last = self.upstream.last_success
        if last is not None and time.monotonic() - last < 10.0:
            return True, "ok"
        try:
            await self.upstream.call("ListTables", b'{"Limit":1}')
        except Exception as exc:
            return False, f"upstream {self.upstream.endpoint} is not answering: {exc}"
        return True, "ok"

    async def stop(self) -> None:
        """Stop accepting, finish in-flight requests (bounded by shutdown_grace), close everything."""
        log.info("stopping: closing listeners and draining in-flight requests")
        grace = self.settings.shutdown_grace
        await listener.shutdown(self._servers, self.listeners, grace)
        self._servers.clear()
        await self.cluster.stop()
        if self.tailer is not None:
            await self.tailer.stop()
        if self.streams_upstream is not None:
            await self.streams_upstream.close()
        if self.upstream is not None:
            await self.upstream.close()
        if self.embedded is not None:
            self.embedded.stop()
        log.info("stopped")
        self.stopped.set()


async def serve(settings: Settings) -> None:
    """Run a node until SIGTERM or SIGINT, then shut it down gracefully.

    The handlers go in before the node starts: a supervisor may signal as soon
    as the start-up lines appear, and that must still be a graceful stop.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    node = Node(settings)
    await node.start()
    await stop.wait()
    await node.stop()


def keep_large_buffers_out_of_the_heap(threshold: int = 256 * 1024) -> None:
    """Make glibc serve allocations over ``threshold`` with mmap, and unmap them when freed.

    glibc raises its mmap threshold each time a large block is freed, so after
    a few multi-MiB request bodies later ones come from the heap, which then
    cannot shrink: RSS ratchets up to the largest burst ever seen. A fixed
    threshold returns a request's buffers to the system once it is answered.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, threshold)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): nothing to tune
        pass


def run(settings: Settings) -> None:
    """Run :func:`serve` on uvloop when installed, asyncio otherwise."""
    keep_large_buffers_out_of_the_heap()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        asyncio.run(serve(settings))
        return
    if sys.version_info >= (3, 12):  # pragma: no cover
        uvloop.run(serve(settings))
    else:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        asyncio.run(serve(settings))
