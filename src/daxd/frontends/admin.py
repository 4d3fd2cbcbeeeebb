"""The admin endpoint: the live page, liveness, readiness, cache flush and Prometheus metrics.

``GET /``             the live dashboard (:mod:`daxd.frontends.dashboard`); it polls ``/stats.json``
``GET /health``       200 while the process serves
``GET /ready``        200 when the listeners are up and the upstream answers, else 503 + a JSON reason
``POST /cache/flush`` drop every entry, or one table's with ``?table=NAME``
``GET /metrics``      Prometheus text format
``GET /cluster``      JSON: this node's figures, every live node, stream lag per table
``GET /tables``       JSON: each table's effective cache policy (defaults, ``[tables.X]`` sections, known tables)
``GET /samples.json`` JSON: the raw one-second samples behind the dashboard (a supervisor merges its workers')
``POST /auth/reload`` re-read the key file (as SIGHUP does); a file that does not parse keeps the old one (409)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import orjson

from daxd.frontends.dashboard import ASSETS, Dashboard, asset
from daxd.frontends.httpserver import HttpRequest, HttpResponse
from daxd.stats import sample_to_json
from daxd.tier.reports import overview, process_figures, totals

if TYPE_CHECKING:
    from daxd.nodeview import NodeView

_JSON = b"application/json"
log = logging.getLogger("daxd.admin")


def _json(status: int, value: object) -> HttpResponse:
    return HttpResponse(status, orjson.dumps(value), content_type=_JSON)


class AdminApp:
    def __init__(self, node: NodeView) -> None:
        self.node = node
        self.dashboard = Dashboard(node)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        url = urlsplit(request.path)
        route = (request.method, url.path)
        if route == ("GET", "/health"):
            return _json(200, {"status": "ok"})
        if route == ("GET", "/ready"):
            return self._ready()
        if route == ("GET", "/metrics"):
            return HttpResponse(200, self.node.metrics.render(), content_type=b"text/plain; version=0.0.4")
        if route == ("GET", "/cluster"):
            return self._cluster()
        if route == ("GET", "/tables"):
            return _json(200, self.node.accelerator.policies_view())
        if route == ("POST", "/auth/reload"):
            reloaded, message = self.node.reload_keys()
            return _json(200 if reloaded else 409, {"reloaded": reloaded, "message": message})
        if route == ("POST", "/cache/flush"):
            table = parse_qs(url.query).get("table", [None])[0]
            flushed = self.node.accelerator.flush(table)
            log.info("cache flush asked on the admin port (user agent %s): %d entries dropped, %s",
                     request.headers.get("user-agent", "unknown"), flushed, f"table {table}" if table else "all tables")
            return _json(200, {"flushed": flushed, "table": table})
        if request.method == "GET" and (url.path == "/" or url.path[1:] in ASSETS):
            name = url.path[1:] or "dashboard.html"
            return HttpResponse(200, asset(name) or b"", content_type=ASSETS[name])
        if route == ("GET", "/stats.json"):
            return _json(200, self.dashboard.document())
        if route == ("GET", "/samples.json"):
            return _json(200, [sample_to_json(s) for s in list(self.node.sampler.samples)])
        return _json(404, {"error": f"no such admin route: {request.method} {url.path}"})

    async def _ready(self) -> HttpResponse:
        ready, reason = await self.node.ready()
        return _json(200 if ready else 503, {"ready": ready, "reason": reason})

    async def _cluster(self) -> HttpResponse:
        """Over a shared Valkey: every node, worker, the tier and leases; else this node alone.

        ``self`` is the answering process's own figures, current (the
        overview's come from reports a second or so old).
        """
        node = self.node
        me = process_figures(node, node.cluster.name)
        if node.tier is not None and node.members is not None:
            view = await overview(node.tier.client, me=node.members.name, url=node.tier.url, up=node.tier.up,
                                  reason=node.tier.reason)
        else:  # a node alone: itself, as the overview would show it
            name = node.cluster.name
            view = {"node": name, "tier": None, "leases": None, "nodes": [
                {"node": name, "address": me["address"], "member": True, "self": True, "workers": [me],
                 **totals([me])}]}
        view["self"] = me
        view["table_policies"] = node.accelerator.policies_view()
        return _json(200, view)
