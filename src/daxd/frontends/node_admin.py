"""The admin port of ``daxd serve --workers N``: served by the supervisor, answered by every worker.

Each worker serves its own admin app (:class:`daxd.frontends.admin.AdminApp`)
on a unix socket in the supervisor's private directory; this app owns the
node's public admin port, asks every worker over those sockets and merges
their answers (:mod:`daxd.workers_merge` holds the rules):

``/metrics``, ``/health``, ``/ready``, ``/stats.json``  merged over the workers
``POST /cache/flush``, ``POST /auth/reload``           done by every worker
``/cluster``, ``/tables``                               the first serving worker's answer
``/`` and the dashboard's assets                        served from the package

A worker that is down or restarting is reported in the answer, never a 500.
The app runs on its own event loop in a thread of the supervisor, which
otherwise only watches processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from daxd.frontends.dashboard import ASSETS, asset
from daxd.frontends.httpserver import HttpRequest, HttpResponse, serve
from daxd.frontends.listener import Limits, ListenerState
from daxd.workers_merge import SERVING, MetricsMerger, WorkerAnswer, merge_health, merge_ready, merge_stats

_JSON = b"application/json"
#: Seconds a worker has to answer one admin request before it is reported as not answering.
ASK_TIMEOUT = 3.0
#: Bytes of one worker's admin answer read at most (a /metrics text is tens of KiB).
MAX_ANSWER = 16 << 20


@dataclass(frozen=True)
class WorkerSlot:
    """What the app needs of a worker at the moment it asks: its number, process, state and socket."""

    index: int
    pid: int | None
    state: str
    socket: str


async def ask(path: str, method: str, target: str, timeout: float = ASK_TIMEOUT) -> tuple[int, bytes]:
    """One HTTP/1.1 request over a unix socket (``Connection: close``); the status and body.

    Raises:
        OSError, asyncio.TimeoutError, ValueError: no answer, or not an HTTP one.
    """
    async def exchange() -> bytes:
        reader, writer = await asyncio.open_unix_connection(path, limit=MAX_ANSWER)
        try:
            writer.write(f"{method} {target} HTTP/1.1\r\nHost: worker\r\nContent-Length: 0\r\n"
                         "Connection: close\r\n\r\n".encode())
            return await reader.read(MAX_ANSWER)  # until EOF: the worker closes after answering
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    data = b""
    deadline = asyncio.get_running_loop().time() + timeout
    async with asyncio.timeout_at(deadline):
        data = await exchange()
    head, separator, body = data.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    if not separator or len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ValueError("not an HTTP answer")
    return int(parts[1]), body


class NodeAdminApp:
    """The node's admin application over its workers; ``slots()`` tells the workers as they are now."""

    def __init__(self, slots: Callable[[], Sequence[WorkerSlot]], *, node: str, started_at: float,
                 interval: float, restarts: Callable[[], int]) -> None:
        self.slots = slots
        self.node = node
        self.started_at = started_at
        self.interval = interval
        self.restarts = restarts
        self.metrics = MetricsMerger()

    async def ask_all(self, method: str, target: str) -> list[WorkerAnswer]:
        slots = list(self.slots())

        async def one(slot: WorkerSlot) -> WorkerAnswer:
            answer = WorkerAnswer(slot.index, slot.pid, slot.state)
            if slot.state != SERVING:
                return answer
            try:
                answer.status, answer.body = await ask(slot.socket, method, target)
            except (OSError, TimeoutError, ValueError) as exc:
                answer.error = f"{type(exc).__name__}: {exc}".rstrip(": ")
            return answer

        answers = list(await asyncio.gather(*(one(slot) for slot in slots)))
        now = {slot.index: slot for slot in self.slots()}
        for answer in answers:  # a worker that died while being asked is down, not failing
            if answer.body is None and answer.index in now and now[answer.index].state != SERVING:
                answer.state = now[answer.index].state
        return answers

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        url = urlsplit(request.path)
        route = (request.method, url.path)
        if request.method == "GET" and (url.path == "/" or url.path[1:] in ASSETS):
            name = url.path[1:] or "dashboard.html"
            return HttpResponse(200, asset(name) or b"", content_type=ASSETS[name])
        handler = self._routes().get(route)
        if handler is None:
            return _json(404, {"error": f"no such admin route: {request.method} {url.path}"})
        return handler(request.path)

    def _routes(self) -> dict[tuple[str, str], Callable[[str], Awaitable[HttpResponse]]]:
        return {("GET", "/health"): self._health, ("GET", "/ready"): self._ready,
                ("GET", "/metrics"): self._metrics, ("GET", "/stats.json"): self._stats,
                ("POST", "/cache/flush"): self._flush, ("POST", "/auth/reload"): self._reload,
                ("GET", "/cluster"): self._first, ("GET", "/tables"): self._first}

    async def _health(self, _: str) -> HttpResponse:
        return _json(*merge_health(await self.ask_all("GET", "/health")))

    async def _ready(self, _: str) -> HttpResponse:
        return _json(*merge_ready(await self.ask_all("GET", "/ready")))

    async def _metrics(self, _: str) -> HttpResponse:
        answers = await self.ask_all("GET", "/metrics")
        serving = sum(a.state == SERVING and a.status == 200 for a in answers)
        extra = [GaugeMetricFamily("daxd_workers", "Worker processes configured (--workers).", value=len(answers)),
                 GaugeMetricFamily("daxd_workers_serving", "Workers that answered this scrape.", value=serving),
                 CounterMetricFamily("daxd_worker_restarts", "Workers restarted by the supervisor.",
                                     value=self.restarts())]
        return HttpResponse(200, self.metrics.merge(answers, extra), content_type=b"text/plain; version=0.0.4")

    async def _stats(self, _: str) -> HttpResponse:
        documents, samples = await asyncio.gather(self.ask_all("GET", "/stats.json"),
                                                  self.ask_all("GET", "/samples.json"))
        raw: dict[int, Any] = {}
        for answer in samples:
            if answer.status == 200 and answer.body is not None:
                with contextlib.suppress(orjson.JSONDecodeError):
                    raw[answer.index] = orjson.loads(answer.body)
        facts = {"node": self.node, "started_at": self.started_at}
        return _json(200, merge_stats(documents, raw, self.interval, facts))

    async def _flush(self, target: str) -> HttpResponse:
        answers = await self.ask_all("POST", target)
        bodies = [_loads(a) for a in answers]
        flushed = sum(int(b.get("flushed", 0)) for b in bodies if b is not None)
        table = next((b.get("table") for b in bodies if b is not None), None)
        rows = [{"worker": a.index, "flushed": b.get("flushed") if b else None,
                 "status": "ok" if b is not None else a.error or a.state} for a, b in zip(answers, bodies, strict=True)]
        complete = all(b is not None for b in bodies)
        return _json(200 if complete else 503, {"flushed": flushed, "table": table, "workers": rows})

    async def _reload(self, target: str) -> HttpResponse:
        answers = await self.ask_all("POST", target)
        bodies = [_loads(a) for a in answers]
        reloaded = all(b is not None and b.get("reloaded") is True for b in bodies)
        messages = sorted({str(b.get("message")) for b in bodies if b is not None})
        return _json(200 if reloaded else 409, {"reloaded": reloaded, "message": "; ".join(messages),
                                                "workers": len([b for b in bodies if b is not None])})

    async def _first(self, target: str) -> HttpResponse:
        for slot in self.slots():
            if slot.state != SERVING:
                continue
            with contextlib.suppress(OSError, TimeoutError, ValueError):
                status, body = await ask(slot.socket, "GET", target)
                return HttpResponse(status, body, content_type=_JSON)
        return _json(503, {"error": "no worker is serving"})


def _json(status: int, value: object) -> HttpResponse:
    return HttpResponse(status, orjson.dumps(value), content_type=_JSON)


def _loads(answer: WorkerAnswer) -> dict[str, Any] | None:
    if answer.status is None or answer.body is None or answer.status >= 500:
        return None
    try:
        value = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


class NodeAdminServer:
    """Runs :class:`NodeAdminApp` on ``host:port`` on an event loop of its own, in a thread."""

    def __init__(self, app: NodeAdminApp, host: str, port: int) -> None:
        self.app, self.host, self.port = app, host, port
        self.loop = asyncio.new_event_loop()
        self.state = ListenerState("admin", Limits())
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="daxd-node-admin", daemon=True)

    def start(self) -> None:
        """Bind the port (raises OSError if it cannot) and serve in the background."""
        self._thread.start()
        self._started.wait(30)
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.server = self.loop.run_until_complete(
                serve(self.app, self.host, self.port, self.state, reuse_port=True))
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self.loop.run_forever()
        self.server.close()
        self.loop.run_until_complete(self.server.wait_closed())
        self.loop.close()

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
