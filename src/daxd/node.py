"""A daxd node: the Accelerator, its upstream and its listeners, started and stopped together.

This is the I/O edge of the server: everything below it (the Accelerator, the
cache, the codecs) is plain code; everything here opens sockets or threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import logging
import math
import os
import platform
import signal
import socket
import ssl
import sys
import time
from collections.abc import Sequence
from typing import Any

import botocore.session
from prometheus_client import ProcessCollector

from daxd import __version__
from daxd.accelerator import Accelerator, CacheSettings
from daxd.auth import DaxAuthenticator, KeyRing, http_authorizer
from daxd.cache.stamps import Stamps
from daxd.cluster.membership import Address
from daxd.cluster.view import Cluster
from daxd.config import ConfigError, Settings
from daxd.drivers import AsyncDriver
from daxd.embedded import EmbeddedBackend
from daxd.frontends import admin, httpserver, listener
from daxd.frontends.bodies import BodyDecoder
from daxd.frontends.dax import server as dax_server
from daxd.frontends.dax.attrs import AttributeListTable
from daxd.frontends.dax.service import DaxService
from daxd.frontends.http import DynamoDBApp, error_response
from daxd.frontends.listener import Limits, ListenerCollector, ListenerState, RequestBudget
from daxd.model.stream_records import StreamRecord
from daxd.observability import Metrics
from daxd.policy import TablePolicies
from daxd.sigv4 import Credentials
from daxd.stats import Sampler
from daxd.streams.client import StreamsUpstream, streams_endpoint
from daxd.streams.stats import StreamCollector
from daxd.streams.tailer import StreamTailer
from daxd.tasks import cancel_and_wait
from daxd.tier.client import TlsFiles, ValkeyTier
from daxd.tier.leases import CLIENT_NAME, StreamLeases
from daxd.tier.members import ValkeyMembers
from daxd.tier.reports import Reporter, process_figures
from daxd.tier.shared import SharedTier
from daxd.upstream import health as upstream_health
from daxd.upstream.client import BotocoreCredentials, Upstream, aws_endpoint
from daxd.workers import WorkerContext

log = logging.getLogger("daxd")
#: Where the node listens and how it is configured: shown even with --log-level warning.
startup_log = logging.getLogger("daxd.startup")

#: Credentials used when the chain has none and the upstream is not AWS
#: (DynamoDB Local and Alternator accept any key).
LOCAL_FALLBACK_CREDENTIALS = Credentials("daxd", "daxd")
#: Seconds between the dashboard's samples, and between probes of an idle upstream.
SAMPLE_INTERVAL = 1.0
UPSTREAM_PROBE_INTERVAL = 10.0
#: Seconds the start-up probe of the upstream may hold the start-up.
STARTUP_PROBE_CAP = 2.0


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
        raise ConfigError(f"advertise: cannot resolve {host!r}: {exc}") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return str(infos[0][4][0])


def advertised_address(settings: Settings) -> str:
    """``--advertise``, else ``--host``, else (a wildcard host) the machine's primary address."""
    wildcard = settings.host in ("", "0.0.0.0", "::")
    return settings.advertise or (primary_address() if wildcard else settings.host)


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


def upstream_label(settings: Settings, endpoint: str) -> str:
    """How the upstream is named to people: the embedded backend's internal URL means nothing to them."""
    if settings.upstream == "embedded":
        return "embedded (in memory)"
    return f"aws {endpoint}" if settings.upstream == "aws" else endpoint


def effective_configuration(s: Settings, region: str, upstream: Upstream | None, tls: ssl.SSLContext | None) -> str:
    """The settings that shape behaviour, on one line, as the node will use them."""
    label = upstream.health.label if upstream is not None else s.upstream
    ttl = "until evicted" if s.item_ttl == 0 else f"{s.item_ttl:g} s"
    query_ttl = "off" if s.query_ttl == 0 else f"{s.query_ttl:g} s"
    streams = "off (embedded)" if s.upstream == "embedded" else s.streams
    return (f"upstream {label} (region {region}); cache {format_size(s.cache_size)}, item TTL {ttl}, "
            f"query TTL {query_ttl}, consistent window {s.consistent_window:g} s; streams {streams}; "
            f"auth {'on' if s.auth_keys else 'off'}; TLS {'on' if tls is not None else 'off'}; "
            f"control plane {s.control_plane}; shutdown grace {s.shutdown_grace:g} s; "
            f"leave period {s.leave_seconds:g} s")


def format_size(size: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor:
            return f"{size / factor:.4g} {unit}"
    return f"{size} B"


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
        self.started_at = time.time()
        self.metrics = Metrics()
        ProcessCollector(registry=self.metrics.registry)
        self.sample_interval = SAMPLE_INTERVAL
        self.sampler = Sampler(self.metrics)
        self.accelerator = Accelerator(CacheSettings(
            item_ttl=settings.item_ttl, query_ttl=settings.query_ttl, cache_size=settings.cache_size,
            consistent_window=settings.consistent_window,
            read_only_control_plane=settings.control_plane == "read-only",
            policies=settings.tables or TablePolicies(),
        ), metrics=self.metrics)
        self.embedded: EmbeddedBackend | None = None
        self.upstream: Upstream | None = None
        self.driver: AsyncDriver | None = None
        self.tailer: StreamTailer | None = None
        self.streams_upstream: StreamsUpstream | None = None
        #: Keys and per-key permissions (None: no key file, any key is accepted and may do anything).
        self.keyring = KeyRing(settings.auth_keys, self.metrics) if settings.auth_keys else None
        self.secrets = self.keyring.secrets if self.keyring is not None else None
        self.tls = tls_context(settings)
        self.attr_lists = AttributeListTable(settings.attribute_lists_max)
        self.listeners: list[ListenerState] = []
        self.request_budget = RequestBudget(settings.request_budget)
        #: Large HTTP bodies are decoded in a helper process (daxd.frontends.bodies).
        self.decoder = BodyDecoder()
        self.metrics.registry.register(dax_server.DaxCollector(self.attr_lists))
        self.metrics.registry.register(ListenerCollector(self.listeners))
        self.advertise = advertised_address(settings)
        self.advertise_ip = resolve(self.advertise)
        #: Named once the DAX port is known (the default name is ``hostname:dax-port``).
        self.cluster = Cluster(settings.node_id or socket.gethostname(), self.advertise, self.accelerator)
        #: Set when this process is one of ``--workers N`` (by the supervisor, through the environment).
        self.worker = WorkerContext.from_environment()
        if self.worker is not None:
            stamps = Stamps(self.worker.stamps, self.worker.index)
            self.accelerator.items.stamps = self.accelerator.queries.stamps = stamps
        self.tier: ValkeyTier | None = None
        self.members: ValkeyMembers | None = None
        self.reporter: Reporter | None = None
        self.leases: StreamLeases | None = None
        self.http_port = 0
        self.admin_port = 0
        self.dax_port = 0
        self.dax_tls_port = 0
        self.http_tls_port = 0
        self._servers: list[asyncio.Server] = []
        self._background: list[asyncio.Task[None]] = []
        self._joining: asyncio.Task[None] | None = None
        #: Set once the node was asked to stop: it left the membership and answers /ready with 503.
        self.leaving = False
        self._leave_cut = asyncio.Event()
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
        self.upstream.health.label = upstream_label(s, self.upstream.endpoint)
        self._add_gauges()
        await upstream_health.probe_at_start(self.upstream.health, self._probe_upstream, STARTUP_PROBE_CAP)
        if s.valkey is not None:
            await self._connect_tier(s.valkey)
        self.driver = AsyncDriver(self.accelerator, self.upstream, self.tier)
        self.streams_upstream = self._make_streams_upstream()  # also serves the Streams API on the HTTP port
        authorizer = http_authorizer(self.secrets) if self.secrets is not None else None
        api = DynamoDBApp(self.driver, self.metrics, authorizer, self.keyring,
                          streams=self.streams_upstream.call_streams, region=self.region, decoder=self.decoder)
        self.http_port = await self._listen_http("http", api, s.http_port, None)
        if self.worker is not None:  # the supervisor serves the node's admin port and asks each worker here
            state = ListenerState("admin", Limits())
            self._add(await httpserver.serve_unix(admin.AdminApp(self), self.worker.admin, state), state)
        else:
            self.admin_port = await self._listen(ListenerState("admin", Limits()), admin.AdminApp(self), s.admin_port)
        service = DaxService(self.driver, self.attr_lists,
                             authenticator=DaxAuthenticator(self.secrets) if self.secrets is not None else None,
                             hostname=advertised_hostname(s.host), availability_zone=f"{self.region}a",
                             cluster=self.cluster, cluster_port=s.dax_port or None, keyring=self.keyring)
        cluster = self.cluster
        if self.tier is not None:
            self.members = ValkeyMembers(self.tier.client, name=s.node_id or f"{socket.gethostname()}:{s.dax_port}",
                                         host=advertised_hostname(self.advertise), ip=self.advertise_ip,
                                         port=s.dax_port)
            await self.members.list_once()  # a client asking this node before it joins is sent to the others
            service.cluster = self.members
        self.dax_port = await self._listen_dax("dax", service, s.dax_port, None)
        service.cluster_port = self.dax_port
        cluster.name_as(s.node_id or f"{socket.gethostname()}:{self.dax_port}",
                        str(Address(self.advertise, self.dax_port)))
        if self.members is not None and self.tier is not None:
            self.members.bind(cluster.name, self.dax_port)
            cluster.members = self.members
            self.members.start()
            self._joining = asyncio.get_running_loop().create_task(self._join_when_ready(), name="daxd-join")
            self.reporter = Reporter(self.tier.client, self.members.name, self.worker.index if self.worker else 0,
                                     lambda: process_figures(self, self.members.name if self.members else ""))
            self.reporter.start()
        self._start_streams()
        if self.tls is not None:
            self.dax_tls_port = await self._listen_dax("daxs", service, s.dax_tls_port, self.tls)
            self.http_tls_port = await self._listen_http("https", api, s.http_tls_port, self.tls)
        self._announce()
        self._start_background()

    def _start_streams(self) -> None:
        """Follow the tables' streams: every shard alone, or (sharing a Valkey) the shards leased here.

        Only worker 0 of a node follows streams; what it applies reaches the
        other workers' and nodes' L1 through the shared tier.
        """
        s = self.settings
        if s.streams != "on" or s.upstream == "embedded" or (self.worker is not None and self.worker.index != 0):
            return
        assert self.streams_upstream is not None
        if self.tier is not None:
            client = self.tier.named_client(CLIENT_NAME + self.cluster.name)
            self.leases = StreamLeases(client, name=self.cluster.name, accelerator=self.accelerator,
                                       live=self.cluster.live)
            self.cluster.leases = self.leases
        leases = self.leases
        self.tailer = StreamTailer(self.accelerator, self.streams_upstream, leases=leases,
                                   sink=self._stream_sink if self.tier is not None else None,
                                   distrust=leases.distrust if leases is not None else None)
        self.cluster.tailer = self.tailer
        self.metrics.registry.register(StreamCollector(self.tailer.stats))
        self.tailer.start()
        if leases is not None:
            leases.wake = self.tailer.reassign
            leases.start()

    async def _stop_streams(self) -> None:
        """Stop reading, then give the leases back so other nodes resume the shards at once."""
        if self.tailer is not None:
            await self.tailer.stop()
        if self.leases is not None:
            await self.leases.stop()

    def _add_gauges(self) -> None:
        health, cluster = self.upstream.health if self.upstream else None, self.cluster

        def upstream_up() -> float | None:
            return None if health is None or health.up is None else float(health.up)

        self.metrics.gauges.update({
            "daxd_cache_capacity_bytes": ("Memory allowed for entries (--cache-size).",
                                          lambda: self.settings.cache_size),
            "daxd_upstream_up": ("1 while the upstream answers, 0 while it cannot be reached.", upstream_up),
            "daxd_cluster_nodes": ("Live nodes sharing this node's Valkey, this one included (1 without one).",
                                   cluster.live),
        })

    def _start_background(self) -> None:
        """The dashboard's sampler, and the upstream probe (at once, then whenever it is idle)."""
        upstream = self.upstream
        assert upstream is not None
        loop = asyncio.get_running_loop()

        async def sample_forever() -> None:
            while True:
                self.sampler.sample()
                await asyncio.sleep(self.sample_interval)

        def idle() -> float:
            return math.inf if upstream.last_success is None else time.monotonic() - upstream.last_success

        self._background = [
            loop.create_task(sample_forever(), name="daxd-sampler"),
            loop.create_task(upstream_health.watch(upstream.health, self._probe_upstream, UPSTREAM_PROBE_INTERVAL,
                                                   idle), name="daxd-upstream-probe")]

    async def _join_when_ready(self) -> None:
        """Advertise this node once it can serve: Valkey connected and the upstream answered.

        Start-up does not wait for this: the node serves whoever reaches it,
        and keeps retrying here until both are true.
        """
        assert self.members is not None
        delay, told = 0.05, ""
        while not self.leaving:
            ready, reason = await self.ready()
            if ready and reason == "ok":
                try:
                    await self.members.join()
                    return
                except Exception as exc:  # Valkey went away between the check and the registration
                    reason = f"cannot register in Valkey: {exc}"
            if reason != told:
                log.warning("membership: not advertised yet (%s); retrying", reason)
                told = reason
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _probe_upstream(self) -> None:
        assert self.upstream is not None
        await self.upstream.call("ListTables", b'{"Limit":1}')

    async def _connect_tier(self, url: str) -> None:
        """The shared second tier: the Accelerator yields its calls, :class:`ValkeyTier` performs them."""
        accelerator = self.accelerator
        s = self.settings
        shared = SharedTier(item_ttl=s.item_ttl, consistent_window=s.consistent_window, degraded_ttl=s.degraded_ttl,
                            item_ttl_of=lambda table: accelerator.policy(table).item_ttl)
        accelerator.tier = shared
        accelerator.on_write = shared.outbox.extend
        self.tier = ValkeyTier(url, on_invalidate=accelerator.apply_invalidation, on_lost=accelerator.shared_tier_lost,
                               cluster=s.valkey_cluster, tls=TlsFiles(s.valkey_ca, s.valkey_cert, s.valkey_key))
        tier = self.tier
        self.metrics.gauges.update({
            "daxd_shared_tier_up": ("1 while the shared tier (Valkey) is reachable and trusted, 0 while degraded.",
                                    lambda: float(tier.up)),
            "daxd_shared_tier_connects": ("Times this process (re)connected to the shared tier and trusted it again.",
                                          lambda: float(tier.connects)),
            "daxd_shared_tier_tracked_servers": ("Valkey servers this process hears invalidations from.",
                                                 lambda: float(len(tier.tracked) or 1) if tier.up else 0.0),
        })
        tier.start()
        if not await tier.wait_connected(5.0):
            log.warning("shared tier %s not reachable yet (%s): serving from DynamoDB until it is",
                        url, self.tier.reason)

    async def _stream_sink(self, records: Sequence[StreamRecord]) -> None:
        """With a shared tier: apply a stream batch here, then evict its keys from the tier.

        The eviction bumps each key's generation, so every node and worker
        drops its L1 copy too (tracking), and refills consistently for the
        consistent window. (Only worker 0 of a node follows streams.)
        """
        assert self.tailer is not None and self.tier is not None and self.accelerator.tier is not None
        await self.tailer.apply_locally(records)
        changes = [c for c in map(self.accelerator.stream_change, records) if c is not None]
        if changes:
            await self.tier.perform(self.accelerator.tier.commit(changes))

    async def _listen(self, state: ListenerState, app: httpserver.Application, port: int,
                      context: ssl.SSLContext | None = None, **kwargs: Any) -> int:
        server = await httpserver.serve(app, self.settings.host, port, state, context,
                                        reuse_port=self.worker is not None, **kwargs)
        return self._add(server, state)

    async def _listen_http(self, name: str, app: httpserver.Application, port: int,
                           context: ssl.SSLContext | None) -> int:
        """The DynamoDB API, plain or over TLS: the same application on either transport."""
        state = ListenerState(name, listener_limits(self.settings, "http"), self.request_budget)
        return await self._listen(state, app, port, context, error_response=error_response)

    async def _listen_dax(self, name: str, service: DaxService, port: int, context: ssl.SSLContext | None) -> int:
        state = ListenerState(name, listener_limits(self.settings, "dax"))
        server = await dax_server.serve(service, state, self.settings.host, port, context,
                                        reuse_port=self.worker is not None)
        return self._add(server, state)

    def _add(self, server: asyncio.Server, state: ListenerState) -> int:
        self._servers.append(server)
        self.listeners.append(state)
        bound = server.sockets[0].getsockname()
        return int(bound[1]) if isinstance(bound, tuple) else 0

    def _announce(self) -> None:
        s = self.settings
        host = s.host if ":" not in s.host else f"[{s.host}]"
        lines = [f"daxd {__version__} (Python {platform.python_version()}): DynamoDB API on "
                 f"http://{host}:{self.http_port}",
                 f"DAX protocol on dax://{host}:{self.dax_port}"]
        if self.tier is not None:
            lines.append(f"cluster node {self.cluster.name} (id {self.cluster.node_id}) advertised as "
                         f"{self.cluster.address}")
            lines.append(f"daxd: shared cache tier on {self.tier.url}"
                         + (f" (worker {self.worker.index})" if self.worker is not None else ""))
        if self.tls is not None:
            lines += [f"DAX over TLS on daxs://{host}:{self.dax_tls_port}",
                      f"DynamoDB API over TLS on https://{host}:{self.http_tls_port}"]
        if self.keyring is not None:
            lines.append(f"authentication on: {self.keyring.describe()}")
        lines.append(f"configuration: {effective_configuration(s, self.region, self.upstream, self.tls)}")
        for line in lines:
            startup_log.info("%s", line)
        if self.secrets is None:
            log.warning("authentication off: any access key is accepted over DAX and HTTP "
                        "(--auth-keys FILE requires SigV4 with its keys)")
        # The admin line comes last among the listeners: tests/harness.py stops reading at it.
        if self.worker is not None:
            startup_log.info("admin (dashboard, health, readiness, metrics) on unix://%s", self.worker.admin)
        else:
            startup_log.info("admin (dashboard, health, readiness, metrics) on http://%s:%d/", host, self.admin_port)
        if self.embedded is not None:
            log.warning("upstream is the embedded backend: data lives in this process's memory only "
                        "and is lost when daxd stops (use --upstream URL|aws for real data)")
            if self.tier is not None:
                log.warning("--valkey with the embedded backend: each node keeps its own in-memory database, "
                            "so the nodes share no data and their caches disagree; give every node the same "
                            "--upstream URL|aws")
        if self.secrets is None and not is_loopback(s.host):
            log.warning("listening on %s without --auth-keys: anyone who can reach these ports acts "
                        "with this node's AWS credentials", s.host)

    def reload_keys(self) -> tuple[bool, str]:
        """Re-read the key file (SIGHUP, ``POST /auth/reload``); open connections stay open."""
        if self.keyring is None:
            log.warning("no key file to reload: the node runs without --auth-keys")
            return False, "the node runs without a key file (--auth-keys)"
        return self.keyring.reload()

    async def ready(self) -> tuple[bool, str]:
        """Readiness: listeners up and the upstream answered recently (probing it if not)."""
        if not self._servers or self.upstream is None:
            return False, "listeners are not up"
        if self.leaving:
            return False, "leaving: stopping after the leave period (left the membership, still serving)"
        if self.tier is not None and not self.tier.up:
            return True, f"degraded: shared tier down: {self.tier.reason}"
        last = self.upstream.last_success
        if last is not None and time.monotonic() - last < 10.0:
            return True, "ok"
        try:
            await self.upstream.call("ListTables", b'{"Limit":1}')
        except Exception as exc:
            return False, f"upstream {self.upstream.endpoint} is not answering: {exc}"
        return True, "ok"

    @property
    def in_leave_period(self) -> bool:
        return self.leaving and not self._leave_cut.is_set()

    def cut_leave_period(self) -> None:
        """End the leave period now (a second SIGTERM/SIGINT): the drain begins."""
        self._leave_cut.set()

    async def leave(self) -> None:
        """Leave the membership at once, then keep serving for the leave period (docs/cluster.md).

        Every node stops listing this one in ``endpoints`` within one
        membership refresh, clients drop it at their next endpoint refresh, and
        ``/ready`` answers 503 so load balancers stop sending too. A node that
        was never advertised has no clients to wait for (unless it is one of
        ``--workers N``: another worker may have advertised their address).
        """
        self.leaving = True
        if self._joining is not None:
            self._joining.cancel()  # it checks ``leaving`` too: bounded, a stop must never hang on it
            await asyncio.wait({self._joining}, timeout=2.0)
        period = self.settings.leave_seconds
        if self.members is not None:
            advertised = self.members.joined_once
            await self.members.leave()
            if not advertised and self.worker is None:  # a worker's siblings advertise the address it serves
                period = 0.0
        if period > 0:
            log.info("leaving: deregistered; serving %g s more while clients refresh their endpoint lists "
                     "(a second signal skips the wait)", period)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period):
                    await self._leave_cut.wait()
        self._leave_cut.set()

    async def stop(self) -> None:
        """Leave (:meth:`leave`), stop accepting, finish in-flight requests (bounded by shutdown_grace), close."""
        await self.leave()
        grace = self.settings.shutdown_grace
        log.info("stopping: closing listeners and draining in-flight requests (up to %g s; a second "
                 "Ctrl-C exits at once)", grace)
        await cancel_and_wait(self._background)
        finished, cut = await listener.shutdown(self._servers, self.listeners, grace)
        self._servers.clear()
        if cut:
            log.warning("drain: %d in-flight request(s) finished, %d cut off when the %g s grace ran out",
                        finished, cut, grace)
        else:
            log.info("drain: %d in-flight request(s) finished, none cut off", finished)
        await self._stop_streams()
        self.decoder.close()
        if self.reporter is not None:
            await self.reporter.stop()
        if self.members is not None:
            await self.members.stop()
        if self.tier is not None:
            await self.tier.stop()
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
    as the start-up lines appear, and that must still be a graceful stop. The
    first signal leaves the membership and starts the leave period; another
    during it skips the rest of it; another during the drain exits at once.
    SIGHUP re-reads the key file.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    node = Node(settings)

    def on_signal() -> None:
        if not stop.is_set():
            stop.set()  # the first: leave, then drain
        elif node.in_leave_period:
            log.warning("second signal while leaving: skipping the rest of the leave period")
            node.cut_leave_period()
        else:
            log.warning("second signal while draining: exiting now, in-flight requests are cut off")
            logging.shutdown()
            os._exit(130)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    loop.add_signal_handler(signal.SIGHUP, node.reload_keys)
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
