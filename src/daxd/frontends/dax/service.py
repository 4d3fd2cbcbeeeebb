"""What a DAX node does with each decoded request: events in, reply bytes out.

:class:`DaxService` is shared by every DAX connection of a node (plain and
TLS); :class:`Session` is one connection's identity. Each handler returns a
:data:`Reply`: ``None`` (nothing to send: ``authorizeConnection``), the reply
bytes (a cache hit or a control method answered at once), or an awaitable of
the bytes (anything that goes upstream). The asyncio adaptor
(:mod:`.server`) only pumps bytes and writes replies in order.

Data-plane calls become DynamoDB operations (:func:`to_operation`) and run
through the same Accelerator as the HTTP front (:class:`AsyncDriver`), so both
front ends share one cache. Key schemas come from the Accelerator's schema
cache, filled by DescribeTable upstream on first use. A cached GetItem is
answered from bytes encoded once per cache entry (:mod:`.hot`).

With a key file, every data-plane call is checked against its connection's
key's permissions (:meth:`daxd.auth.KeyRing.check_tables`) before it is
decoded: a refused call fetches no key schema, reads no cache and reaches no
DynamoDB. ``defineKeySchema`` is allowed for the tables the key may use at all.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from daxd.auth import DaxAuthenticator
from daxd.cache.item_cache import CachedItem
from daxd.cluster.membership import LiveNode
from daxd.drivers import AsyncDriver
from daxd.frontends.dax.attrs import AttributeListTable
from daxd.frontends.dax.codec import decode_plain_get_item
from daxd.frontends.dax.errors import encode_error
from daxd.frontends.dax.events import (
    AuthorizeConnection,
    DefineAttributeList,
    DefineAttributeListId,
    DefineKeySchema,
    Endpoints,
    MethodCall,
    PlainGetItem,
    Preamble,
)
from daxd.frontends.dax.hot import NOT_FOUND_REPLY, encode_get_item_hit, prepare_item
from daxd.frontends.dax.memo import DecodedGetItems, EncodedPages
from daxd.frontends.dax.operations import NeedSchema, Operation, required_tables, to_operation
from daxd.frontends.dax.requests import OPERATION_NAMES, select_one_means_unset
from daxd.frontends.dax.responses import (
    Endpoint,
    encode_attribute_list,
    encode_attribute_list_id,
    encode_endpoints,
    encode_key_schema,
    encode_response,
)
from daxd.messages import Response
from daxd.model.errors import (
    DaxdError,
    InternalServerError,
    MissingAuthenticationTokenException,
)
from daxd.model.keys import KeySchema, TableSchema
from daxd.permissions import SCHEMA

if TYPE_CHECKING:
    from daxd.auth import KeyRing

log = logging.getLogger("daxd.dax")

Reply = bytes | Awaitable[bytes] | None
#: The message real DAX sends on a connection that has not authenticated (addendum A4).
AUTH_REQUIRED = "Connection requires authentication"
_EXTRA_KEY = "dax"
_BEFORE_AUTH = (Preamble, AuthorizeConnection)


class ClusterView(Protocol):
    """What the DAX front end asks of the cluster: the live nodes, for ``endpoints``."""

    def live_nodes(self, hostname: str) -> Sequence[LiveNode] | None:
        """The nodes to advertise, this one named ``hostname`` (None: answer as a node on its own)."""


class Session:
    """One connection's state: its identity, the address the client reached us on, and its client's habits."""

    __slots__ = ("access_key", "auth_error", "authenticated", "local", "peer", "select_one_means_unset")

    def __init__(self, local: tuple[str, int] | None, peer: str, authenticated: bool) -> None:
        self.local = local
        self.peer = peer
        self.authenticated = authenticated
        self.access_key: str | None = None
        self.auth_error: DaxdError | None = None
        #: ``Select: 1`` from this client stands for "unset" (decided from the preamble's user agent).
        self.select_one_means_unset = False


class _KeySchemas(Mapping[str, KeySchema]):
    """A read-only view of the Accelerator's schema cache as key schemas (no copy per request)."""

    def __init__(self, tables: dict[str, TableSchema]) -> None:
        self._tables = tables

    def __getitem__(self, table: str) -> KeySchema:
        return self._tables[table].key

    def __contains__(self, table: object) -> bool:
        return table in self._tables

    def __iter__(self) -> Iterator[str]:
        return iter(self._tables)

    def __len__(self) -> int:
        return len(self._tables)


class DaxService:
    """The DAX methods of one node.

    Args:
        driver: runs operations through the node's Accelerator.
        attr_lists: the node's attribute-list registry (shared by its DAX listeners).
        authenticator: verifies ``authorizeConnection``; None accepts any key.
        hostname: advertised by ``endpoints`` (the Python client replaces it with
            the name it dialled; JS keeps it for TLS hostname checks).
        availability_zone: advertised by ``endpoints`` (Python requires one).
        cluster: answers ``endpoints`` with the live nodes (None: a node on its own).
        cluster_port: the DAX port other nodes advertise this one at; ``endpoints`` on
            another listener (TLS) answers with this node only.
        keyring: the node's keys and permissions (None: no key file, no checks).
    """

    def __init__(self, driver: AsyncDriver, attr_lists: AttributeListTable, *,
                 authenticator: DaxAuthenticator | None = None, hostname: str = "localhost",
                 availability_zone: str = "local", cluster: ClusterView | None = None,
                 cluster_port: int | None = None, keyring: KeyRing | None = None) -> None:
        self.driver = driver
        self.keyring = keyring
        self.cluster = cluster
        self.cluster_port = cluster_port
        self.accelerator = driver.accelerator
        self.metrics = driver.accelerator.metrics
        self.attr_lists = attr_lists
        self.authenticator = authenticator
        self.hostname = hostname
        self.availability_zone = availability_zone
        self.schemas = _KeySchemas(self.accelerator.schemas)
        self._endpoints: dict[tuple[str, int], bytes] = {}
        self._cluster_reply: tuple[tuple[LiveNode, ...], bytes] | None = None
        self._get_items = DecodedGetItems(self.accelerator.schemas)
        self._pages = EncodedPages(attr_lists)
        self.handlers: dict[type, Callable[[Session, Any], Reply]] = {
            Preamble: self.preamble,
            AuthorizeConnection: self.authorize,
            Endpoints: self.endpoints,
            DefineKeySchema: self.define_key_schema,
            DefineAttributeList: self.define_attribute_list,
            DefineAttributeListId: self.define_attribute_list_id,
            MethodCall: self.method_call,
            PlainGetItem: self.plain_get_item,
        }

    def session(self, local: tuple[str, int] | None, peer: str) -> Session:
        return Session(local, peer, authenticated=self.authenticator is None)

    def handle(self, session: Session, event: Any) -> Reply:
        """Answer one event; refuses everything but auth on an unauthenticated connection."""
        if not session.authenticated and type(event) not in _BEFORE_AUTH:
            return self._refused(session)
        return self.handlers[type(event)](session, event)

    # -- control methods ----------------------------------------------------

    def preamble(self, session: Session, event: Preamble) -> Reply:
        """Never answered (§1.1); the user agent tells which client family's request habits to expect."""
        log.debug("DAX connection from %s: %s", session.peer, event.user_agent)
        session.select_one_means_unset = select_one_means_unset(event.user_agent)
        return None

    def authorize(self, session: Session, event: AuthorizeConnection) -> Reply:
        """Never answered (§1.3); a failure is reported on the next request (addendum A4)."""
        if self.authenticator is None:
            session.access_key = event.access_key_id
            return None
        try:
            session.access_key = self.authenticator.verify(
                event.access_key_id, event.signature, event.string_to_sign)
        except DaxdError as exc:
            log.warning("DAX connection from %s: authentication refused for key %r: %s",
                        session.peer, event.access_key_id, exc.message)
            session.authenticated, session.auth_error = False, exc
            return None
        session.authenticated, session.auth_error = True, None
        return None

    def _refused(self, session: Session) -> bytes:
        code = session.auth_error.code if session.auth_error is not None else MissingAuthenticationTokenException.code
        error = MissingAuthenticationTokenException(AUTH_REQUIRED, code=code, status=400)
        self.metrics.request("Unauthenticated", 0.0, error)
        return encode_error(error)

    def endpoints(self, session: Session, _event: Endpoints) -> Reply:
        """The cluster's healthy nodes; alone (or on TLS), this node at the address and port the client reached."""
        local = session.local or ("127.0.0.1", 0)
        if self.cluster is not None and local[1] == self.cluster_port:
            nodes = self.cluster.live_nodes(self.hostname)
            if nodes is not None:
                return self._cluster_endpoints(tuple(nodes))
        reply = self._endpoints.get(local)
        if reply is None:
            address = str(ipaddress.ip_address(local[0].partition("%")[0]))
            reply = self._endpoints[local] = encode_endpoints([Endpoint(
                1, self.hostname, address, local[1], role=1, availability_zone=self.availability_zone,
                leader_session_id=1)])
        return reply

    def _cluster_endpoints(self, nodes: tuple[LiveNode, ...]) -> bytes:
        """The ``endpoints`` reply naming ``nodes``, each a leader; encoded once per membership change."""
        if self._cluster_reply is None or self._cluster_reply[0] != nodes:
            self._cluster_reply = (nodes, encode_endpoints([
                Endpoint(n.node_id, n.host, n.ip, n.port, role=1, availability_zone=self.availability_zone,
                         leader_session_id=1) for n in nodes]))
        return self._cluster_reply[1]

    def define_key_schema(self, session: Session, event: DefineKeySchema) -> Reply:
        table = event.table_name
        if self.keyring is not None:
            try:
                self.keyring.check_tables(session.access_key, "DefineKeySchema", (table,), SCHEMA)
            except DaxdError as exc:
                self.metrics.request("DefineKeySchema", 0.0, exc)
                return encode_error(exc)
        if table in self.schemas:
            return encode_key_schema(self.schemas[table])
        return self._key_schema_later(table)

    async def _key_schema_later(self, table: str) -> bytes:
        try:
            return encode_key_schema((await self.describe(table)).key)
        except DaxdError as exc:
            return encode_error(exc)

    def define_attribute_list(self, session: Session, event: DefineAttributeList) -> Reply:
        try:
            return encode_attribute_list(self.attr_lists.names_for(event.attribute_list_id))
        except DaxdError as exc:
            return encode_error(exc)

    def define_attribute_list_id(self, session: Session, event: DefineAttributeListId) -> Reply:
        return encode_attribute_list_id(self.attr_lists.id_for(event.attribute_names))

    async def describe(self, table: str) -> TableSchema:
        """The table's schema, learned through the Accelerator (one DescribeTable however many ask at once)."""
        return await self.driver.table_schema(table)

    # -- data plane ---------------------------------------------------------

    def method_call(self, session: Session, call: MethodCall) -> Reply:
        started = time.perf_counter()
        if self.keyring is not None and not self.keyring.full_access(session.access_key):
            refused = self._refused_call(session, call, started)
            if refused is not None:
                return refused
        op = self._decode(call, started, session.select_one_means_unset)
        return self.run(op, started) if isinstance(op, Operation) else op

    def plain_get_item(self, session: Session, event: PlainGetItem) -> Reply:
        """The hot path: a memoized GetItem whose item is cached costs two dict lookups and a concatenation."""
        started = time.perf_counter()
        found = self._get_items.get(event)
        restricted = self.keyring is not None and not self.keyring.full_access(session.access_key)
        if found is None:
            call = decode_plain_get_item(event)
            refused = self._refused_call(session, call, started) if restricted else None
            if refused is not None:
                return refused
            op = self._decode(call, started)
            if not isinstance(op, Operation):
                return op
            try:
                ref = self.accelerator.item_ref(op.request) if op.context.projection is None else None
            except DaxdError:
                ref = None  # not a key the cache can hold: run() answers with the error
            self._get_items.put(event, op, ref)
            return self.run(op, started)
        op, ref = found
        if restricted:  # the memo is shared by every connection: check this one's key
            refused = self._denied(session, "GetItem", (op.request["TableName"],), started)
            if refused is not None:
                return refused
        if ref is not None:
            entry = self.accelerator.cached_item_at(ref)
            if entry is not None:
                reply = self._hit(op, entry)
                self.metrics.request("GetItem", time.perf_counter() - started)
                return reply
        return self.run(op, started)

    def _refused_call(self, session: Session, call: MethodCall, started: float) -> bytes | None:
        """The error reply refusing a call the key may not make (None: allowed)."""
        try:
            tables = required_tables(call)
        except DaxdError:
            return None  # malformed: decoding answers with the error, before any table is touched
        return self._denied(session, OPERATION_NAMES[call.method], tables, started)

    def _denied(self, session: Session, operation: str, tables: Sequence[str], started: float) -> bytes | None:
        assert self.keyring is not None
        try:
            self.keyring.check_tables(session.access_key, operation, tables)
        except DaxdError as exc:
            self.metrics.request(operation, time.perf_counter() - started, exc)
            return encode_error(exc)
        return None

    def _decode(self, call: MethodCall, started: float, select_one_means_unset: bool = False) -> Operation | Reply:
        """The call's operation, or the reply that stands for it: an error, or one that waits for key schemas."""
        try:
            return to_operation(call, self.schemas, self.attr_lists, select_one_means_unset=select_one_means_unset)
        except NeedSchema as need:
            return self._after_schemas(call, need.tables, started, select_one_means_unset)
        except DaxdError as exc:
            self.metrics.request(call.method, time.perf_counter() - started, exc)
            return encode_error(exc)

    async def _after_schemas(self, call: MethodCall, tables: Sequence[str], started: float,
                             select_one_means_unset: bool) -> bytes:
        try:
            await asyncio.gather(*(self.describe(t) for t in tables))
            op = to_operation(call, self.schemas, self.attr_lists, select_one_means_unset=select_one_means_unset)
        except DaxdError as exc:
            self.metrics.request(call.method, time.perf_counter() - started, exc)
            return encode_error(exc)
        reply = self.run(op, started)
        return reply if isinstance(reply, bytes) else await reply

    def run(self, op: Operation, started: float) -> bytes | Awaitable[bytes]:
        """Run an operation through the Accelerator; cached GetItems cost only byte concatenation."""
        if op.name == "GetItem" and op.context.projection is None:
            entry = self.accelerator.cached_item(op.request)
            if entry is not None:
                reply = self._hit(op, entry)
                self.metrics.request(op.name, time.perf_counter() - started)
                return reply
        try:
            outcome = self.driver.begin(op.name, dict(op.request))  # a copy: op may be shared
        except DaxdError as exc:
            return self._failed(op, exc, started)
        if isinstance(outcome, Response):
            return self._answered_at_once(op, outcome, started)
        return self._finish(op, outcome, started)

    def _answered_at_once(self, op: Operation, response: Response, started: float) -> bytes:
        """A response without I/O: a cache hit. Query/Scan pages reuse their encoded reply."""
        if op.name not in ("Query", "Scan") or "ReturnConsumedCapacity" in op.request:
            return self._succeeded(op, response, started)
        reply = self._pages.get(op, response.body)
        if reply is None:
            reply = self._succeeded(op, response, started)
            if reply[:1] == b"\x80":
                self._pages.put(op, response.body, response.data, reply)
            return reply
        self.metrics.request(op.name, time.perf_counter() - started)
        return reply

    def _hit(self, op: Operation, entry: CachedItem) -> bytes:
        if entry.item is None:
            return NOT_FOUND_REPLY
        extra = entry.extra
        prepared = extra.get(_EXTRA_KEY) if extra is not None else None
        if prepared is None:
            schema = self.schemas[op.request["TableName"]]
            prepared = prepare_item(orjson.loads(entry.item), schema, self.attr_lists)
            self.accelerator.items.attach(entry, _EXTRA_KEY, prepared, prepared.size)
        return encode_get_item_hit(op, prepared, self.attr_lists)

    async def _finish(self, op: Operation, pending: Awaitable[Response], started: float) -> bytes:
        try:
            response = await pending
        except DaxdError as exc:
            return self._failed(op, exc, started)
        except Exception:
            log.exception("internal error answering DAX %s", op.name)
            return self._failed(op, InternalServerError("Internal server error"), started)
        return self._succeeded(op, response, started)

    def _succeeded(self, op: Operation, response: Response, started: float) -> bytes:
        try:
            reply = encode_response(op, response.data, self.attr_lists)
        except DaxdError as exc:
            return self._failed(op, exc, started)
        self.metrics.request(op.name, time.perf_counter() - started)
        return reply

    def _failed(self, op: Operation, error: DaxdError, started: float) -> bytes:
        self.metrics.request(op.name, time.perf_counter() - started, error)
        return encode_error(error, operation=op, attr_lists=self.attr_lists)
