"""One node's admin answers made from its workers' (``daxd serve --workers N``); pure, no I/O.

Every worker serves its admin app on a private unix socket; the supervisor owns
the node's public admin port, asks every worker and merges the answers here
(:mod:`daxd.frontends.node_admin` does the asking). The rules:

- **Prometheus counters and histograms are summed** over the workers, with no
  ``worker`` label: one series per metric and label set, as a single process
  would show (and as prometheus_client's multiprocess mode does). A worker that
  restarts starts from zero, which a plain sum would show as a counter reset
  (``rate()`` would then count the whole node's total again); so the last
  figures seen from a worker's previous process are kept as *retired* and
  added in, and a worker that does not answer counts with its last figures:
  the node's counters never go down. Counts a worker made after the last
  scrape before it died are lost (at most one scrape interval of one worker).
- **Gauges** are summed (bytes, entries, connections, capacity: the node's
  totals), except those in :data:`GAUGE_RULES` (``min`` for "is it up", ``max``
  for lags and build info).
- ``/health`` is healthy while at least one worker serves and every worker
  that should serve answers; a worker starting or being restarted is reported,
  not counted against the node. ``/ready`` likewise, with every worker's reason.
- ``/stats.json``: the workers' samples are merged on one clock
  (:func:`daxd.stats.merge_samples`), sizes and per-table figures summed.

Why not prometheus_client's multiprocess mode: it makes every ``inc()`` a write
to a memory-mapped file under a lock, where daxd counts a hit with a dict
update (a hit costs a few microseconds in all, docs/architecture.md); it
cannot carry the collectors daxd reads at scrape time (cache sizes,
connections, stream lag); and it covers only ``/metrics``, not ``/health``,
``/ready`` or the dashboard.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from daxd.stats import latency, merge_samples, sample_from_json, series

#: Gauges not summed over workers: name -> "min" or "max".
GAUGE_RULES: dict[str, str] = {
    "daxd_upstream_up": "min", "daxd_shared_tier_up": "min",
    "daxd_cluster_nodes": "max", "daxd_build_info": "max", "daxd_stream_lag_seconds": "max",
    "daxd_stream_tailed": "max", "process_start_time_seconds": "min", "process_max_fds": "min",
}
_CUMULATIVE_TYPES = ("counter", "histogram", "summary")

#: A worker as the supervisor sees it: "serving" (started and announced), "starting", or "down".
SERVING, STARTING, DOWN = "serving", "starting", "down"


@dataclass
class WorkerAnswer:
    """One worker's answer to one admin request (``body`` None: it did not answer)."""

    index: int
    pid: int | None
    state: str
    status: int | None = None
    body: bytes | None = None
    error: str | None = None

    @property
    def answered(self) -> bool:
        return self.status is not None and self.body is not None


SampleKey = tuple[str, tuple[tuple[str, str], ...]]


@dataclass
class _Family:
    name: str
    type: str
    documentation: str
    #: sample key -> value, in the order first seen (histogram buckets stay in order)
    samples: dict[SampleKey, float] = field(default_factory=dict)


class MetricsMerger:
    """Merges the workers' ``/metrics`` texts into the node's; remembers what keeps counters monotonic."""

    def __init__(self) -> None:
        #: worker index -> (pid, that process's last cumulative samples by family)
        self.last: dict[int, tuple[int | None, dict[str, _Family]]] = {}
        #: cumulative samples of workers' previous processes, by family
        self.retired: dict[str, _Family] = {}

    def merge(self, answers: Sequence[WorkerAnswer], extra: Sequence[Metric] = ()) -> bytes:
        """The node's Prometheus text; ``extra`` families (the supervisor's own) are appended."""
        gauges: dict[str, _Family] = {}
        for answer in answers:
            parsed = _parse(answer.body) if answer.answered and answer.status == 200 else None
            previous = self.last.get(answer.index)
            if previous is not None and answer.pid != previous[0] and answer.pid is not None:
                _add_into(self.retired, previous[1])  # a new process: the old one's counts are final
                del self.last[answer.index]
            if parsed is None:
                continue
            cumulative = {n: f for n, f in parsed.items() if f.type in _CUMULATIVE_TYPES}
            self.last[answer.index] = (answer.pid, cumulative)
            for name, family in parsed.items():
                if family.type not in _CUMULATIVE_TYPES:
                    _combine(gauges, family, GAUGE_RULES.get(name, "sum"))
        totals: dict[str, _Family] = {}
        _add_into(totals, self.retired)
        for _, families in self.last.values():
            _add_into(totals, families)
        merged = [*totals.values(), *gauges.values()]
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families([_to_metric(f) for f in merged], extra))
        return generate_latest(registry)


class _Families(Collector):
    def __init__(self, metrics: list[Metric], extra: Sequence[Metric]) -> None:
        self.metrics = [*metrics, *extra]

    def collect(self) -> Iterator[Metric]:
        yield from self.metrics


def _parse(body: bytes | None) -> dict[str, _Family] | None:
    if body is None:
        return None
    try:
        families: dict[str, _Family] = {}
        for metric in text_string_to_metric_families(body.decode()):
            family = families.setdefault(metric.name, _Family(metric.name, metric.type, metric.documentation))
            for sample in metric.samples:
                if sample.name.endswith("_created"):
                    continue  # a process's creation time: meaningless once summed
                family.samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return families
    except (ValueError, UnicodeDecodeError):
        return None


def _add_into(into: dict[str, _Family], families: Mapping[str, _Family]) -> None:
    for name, family in families.items():
        target = into.setdefault(name, _Family(name, family.type, family.documentation))
        for key, value in family.samples.items():
            target.samples[key] = target.samples.get(key, 0.0) + value


def _combine(into: dict[str, _Family], family: _Family, rule: str) -> None:
    target = into.get(family.name)
    if target is None:
        into[family.name] = _Family(family.name, family.type, family.documentation, dict(family.samples))
        return
    for key, value in family.samples.items():
        seen = target.samples.get(key)
        if seen is None:
            target.samples[key] = value
        elif rule == "min":
            target.samples[key] = min(seen, value)
        elif rule == "max":
            target.samples[key] = max(seen, value)
        else:
            target.samples[key] = seen + value


def _to_metric(family: _Family) -> Metric:
    metric = Metric(family.name, family.documentation, family.type)
    for (name, labels), value in family.samples.items():
        metric.add_sample(name, dict(labels), value)
    return metric


# -- /health and /ready ------------------------------------------------------

def _json(answer: WorkerAnswer) -> dict[str, Any] | None:
    import orjson

    if not answer.answered:
        return None
    try:
        value = orjson.loads(answer.body or b"")
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _worker_row(answer: WorkerAnswer, reason: str) -> dict[str, Any]:
    return {"worker": answer.index, "pid": answer.pid, "state": answer.state, "status": reason}


def merge_health(answers: Sequence[WorkerAnswer]) -> tuple[int, dict[str, Any]]:
    """200 while a worker serves and every serving worker answers healthy; every worker listed."""
    rows, serving, failing = [], 0, 0
    for answer in answers:
        if answer.state != SERVING:
            rows.append(_worker_row(answer, "restarting" if answer.state == DOWN else "starting"))
            continue
        body = _json(answer)
        if answer.status == 200 and body is not None and body.get("status") == "ok":
            serving += 1
            rows.append(_worker_row(answer, "ok"))
        else:
            failing += 1
            rows.append(_worker_row(answer, f"not answering: {answer.error or answer.status}"))
    healthy = serving > 0 and failing == 0
    return (200 if healthy else 503), {"status": "ok" if healthy else "unhealthy", "workers": rows}


def merge_ready(answers: Sequence[WorkerAnswer]) -> tuple[int, dict[str, Any]]:
    """Ready while a worker serves and every serving worker is ready; the reason names each worker's trouble."""
    rows, reasons, ready, refusing = [], [], 0, 0
    for answer in answers:
        if answer.state != SERVING:
            reason = "restarting" if answer.state == DOWN else "starting"
            rows.append({**_worker_row(answer, reason), "ready": False})
            reasons.append((answer.index, reason))
            continue
        body = _json(answer)
        if body is None:
            reason, ok = f"not answering: {answer.error or answer.status}", False
        else:
            reason, ok = str(body.get("reason", "?")), body.get("ready") is True and answer.status == 200
        ready += ok
        refusing += not ok
        rows.append({**_worker_row(answer, reason), "ready": ok})
        if reason != "ok":
            reasons.append((answer.index, reason))
    is_ready = ready > 0 and refusing == 0
    distinct = {reason for _, reason in reasons}
    if not reasons:
        text = "ok"
    elif len(distinct) == 1 and len(reasons) == len(answers):
        text = distinct.pop()  # every worker says the same, e.g. "degraded: shared tier down: ..."
    else:
        text = "; ".join(f"worker {index}: {reason}" for index, reason in reasons)
    return (200 if is_ready else 503), {"ready": is_ready, "reason": text, "workers": rows}


# -- /stats.json -------------------------------------------------------------

def merge_stats(answers: Sequence[WorkerAnswer], samples: Mapping[int, Any], interval: float,
                node: Mapping[str, Any]) -> dict[str, Any]:
    """The dashboard's document for the whole node from each worker's document and raw samples.

    ``samples``: worker index -> its ``/samples.json`` answer (a list of samples);
    ``node``: the supervisor's own facts (name, started_at, workers configured).
    """
    documents = [(a, d) for a in answers if a.state == SERVING and (d := _json(a)) is not None]
    histories = []
    for raw in samples.values():
        try:
            history = [sample_from_json(s) for s in raw]
        except (ValueError, TypeError):
            continue  # a worker's answer that is not a sample list: left out of the charts
        if history:
            histories.append(history)
    merged = merge_samples(histories, interval)
    first = documents[0][1] if documents else {}
    caches = [d.get("cache") or {} for _, d in documents]
    hits = sum(row.get("hits", 0) for _, d in documents for row in d.get("tables") or [])
    misses = sum(row.get("misses", 0) for _, d in documents for row in d.get("tables") or [])
    requests: dict[str, int] = {}
    for _, document in documents:
        for op, count in (document.get("requests") or {}).items():
            requests[op] = requests.get(op, 0) + int(count)
    upstreams: list[dict[str, Any]] = [d["upstream"] for _, d in documents if isinstance(d.get("upstream"), dict)]
    down = [u for u in upstreams if u.get("up") is False]
    return {
        "node": node.get("node") or first.get("node"), "version": first.get("version"),
        "now": first.get("now"), "started_at": node.get("started_at"), "interval": interval,
        "series": series(merged), "latency": latency(merged),
        "cache": {"bytes": sum(c.get("bytes", 0) for c in caches),
                  "capacity": sum(c.get("capacity", 0) for c in caches),
                  "entries": sum(c.get("entries", 0) for c in caches),
                  "evicted_bytes": sum(c.get("evicted_bytes", 0) for c in caches),
                  "hit_ratio": round(hits / (hits + misses), 4) if hits + misses else None},
        "upstream": (down or upstreams)[0] if upstreams else None,
        "tables": _merge_tables([d.get("tables") or [] for _, d in documents]),
        "cluster": first.get("cluster") or {"clustered": False, "nodes": []},
        "requests": dict(sorted(requests.items())),
        "workers": [_worker_figures(a, d) for a in answers for d in [_json(a) if a.state == SERVING else None]],
    }


def _worker_figures(answer: WorkerAnswer, document: Mapping[str, Any] | None) -> dict[str, Any]:
    row: dict[str, Any] = {"worker": answer.index, "pid": answer.pid, "state": answer.state}
    if document is None:
        if answer.state == SERVING:
            row["status"] = f"not answering: {answer.error or answer.status}"
        else:
            row["status"] = "restarting" if answer.state == DOWN else "starting"
        return row
    cache = document.get("cache") or {}
    last = (document.get("series") or [{}])[-1]
    row.update(status="ok", rps=last.get("rps"), hit_ratio=cache.get("hit_ratio"), cache_bytes=cache.get("bytes"),
               entries=cache.get("entries"), started_at=document.get("started_at"))
    return row


def _merge_tables(per_worker: Sequence[Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for table_rows in per_worker:
        for row in table_rows:
            name = str(row.get("table"))
            merged = rows.get(name)
            if merged is None:
                rows[name] = dict(row)
                continue
            for figure in ("hits", "misses", "entries", "stream_readers"):
                merged[figure] = (merged.get(figure) or 0) + (row.get(figure) or 0)
            if row.get("stream", "off") != "off":  # only one worker follows streams
                merged["stream"], merged["stream_lag"] = row.get("stream"), row.get("stream_lag")
    return [rows[name] for name in sorted(rows)]
