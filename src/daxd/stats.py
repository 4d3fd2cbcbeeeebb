"""The last minutes of a node's figures, for the dashboard: a ring buffer of samples.

The counters in :class:`daxd.observability.Metrics` only grow; a dashboard
wants rates (requests/s, hit ratio, evictions/s) and recent latency
percentiles. :class:`Sampler` copies the few cumulative figures it needs once
per interval into a bounded deque (``keep`` samples; 300 at one per second is
five minutes, a few hundred kilobytes at most), and turns consecutive samples
into rates when asked. No Prometheus server is involved: this is the node's
own memory of itself, and it is bounded by configuration, not by traffic.

Pure: the clock is injected and nothing here does I/O; the node calls
:meth:`Sampler.sample` from a timer.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from daxd.observability import LATENCY_BUCKETS, Metrics

_HITS = ("daxd_item_cache_hits", "daxd_query_cache_hits", "daxd_scan_cache_hits")
_MISSES = ("daxd_item_cache_misses", "daxd_query_cache_misses", "daxd_scan_cache_misses")
_LATENCY = "daxd_request_latency_seconds"


@dataclass(frozen=True, slots=True)
class Sample:
    """Cumulative figures at one moment."""

    at: float
    hits: float
    misses: float
    requests: float
    errors: float
    evicted_bytes: int
    cache_bytes: int
    #: operation -> the request-latency histogram's bucket counts (not cumulative), ``+Inf`` last.
    latency: dict[str, tuple[int, ...]]


def quantile(q: float, counts: Sequence[int], bounds: Sequence[float] = LATENCY_BUCKETS) -> float | None:
    """The ``q`` quantile of a histogram's bucket counts, interpolated linearly inside its bucket.

    As Prometheus' ``histogram_quantile``: a value in the ``+Inf`` bucket is
    reported as the highest finite bound. None for an empty histogram.
    """
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            if index >= len(bounds):
                return bounds[-1]
            lower = bounds[index - 1] if index else 0.0
            return lower + (bounds[index] - lower) * ((rank - seen) / count)
        seen += count
    return bounds[-1]


def _minus(now: tuple[int, ...], before: tuple[int, ...] | None) -> list[int]:
    return list(now) if before is None else [a - b for a, b in zip(now, before, strict=True)]


class Sampler:
    """Samples ``metrics`` on demand and keeps the last ``keep`` samples."""

    def __init__(self, metrics: Metrics, *, keep: int = 300, clock: Callable[[], float] = time.time) -> None:
        if keep < 2:
            raise ValueError("keep must be >= 2 (rates need two samples)")
        self.metrics = metrics
        self.clock = clock
        self.samples: deque[Sample] = deque(maxlen=keep)

    def sample(self) -> Sample:
        m = self.metrics
        counts = m.counts
        errors = m.total("daxd_error_request_count") + m.total("daxd_fault_request_count")
        taken = Sample(
            at=self.clock(),
            hits=sum(sum(counts[name].values()) for name in _HITS),
            misses=sum(sum(counts[name].values()) for name in _MISSES),
            requests=m.total("daxd_total_request_count"), errors=errors,
            evicted_bytes=sum(s.evicted_bytes for s in m.stores), cache_bytes=sum(s.bytes for s in m.stores),
            latency={op: tuple(h.buckets) for op, h in list(m.histograms[_LATENCY].items())})
        self.samples.append(taken)
        return taken

    def series(self) -> list[dict[str, Any]]:
        """One point per interval between consecutive samples: rates and that interval's percentiles."""
        points: list[dict[str, Any]] = []
        samples = list(self.samples)
        for before, now in itertools.pairwise(samples):
            seconds = now.at - before.at
            if seconds <= 0:
                continue
            hits, misses = now.hits - before.hits, now.misses - before.misses
            merged = [0] * (len(LATENCY_BUCKETS) + 1)
            for op, buckets in now.latency.items():
                for i, count in enumerate(_minus(buckets, before.latency.get(op))):
                    merged[i] += count
            points.append({
                "t": round(now.at, 3),
                "rps": round((now.requests - before.requests) / seconds, 2),
                "errors_per_s": round((now.errors - before.errors) / seconds, 2),
                "hit_ratio": round(hits / (hits + misses), 4) if hits + misses else None,
                "evicted_bytes_per_s": round((now.evicted_bytes - before.evicted_bytes) / seconds, 1),
                "cache_bytes": now.cache_bytes,
                "p50_ms": _ms(quantile(0.5, merged)), "p99_ms": _ms(quantile(0.99, merged)),
            })
        return points

    def latency(self, window: float = 60.0) -> dict[str, dict[str, Any]]:
        """p50/p99 (ms) and count per operation over the last ``window`` seconds of samples."""
        if not self.samples:
            return {}
        now = self.samples[-1]
        before = next((s for s in self.samples if s.at >= now.at - window), None)
        result: dict[str, dict[str, Any]] = {}
        for op, buckets in sorted(now.latency.items()):
            counts = _minus(buckets, before.latency.get(op) if before is not None and before is not now else None)
            if sum(counts):
                result[op] = {"count": sum(counts), "p50_ms": _ms(quantile(0.5, counts)),
                              "p99_ms": _ms(quantile(0.99, counts))}
        return result


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
