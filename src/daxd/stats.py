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

import bisect
import dataclasses
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
    evicted_bytes: float
    cache_bytes: float
    #: operation -> the request-latency histogram's bucket counts (not cumulative), ``+Inf`` last
    #: (fractional once several workers' samples are merged, :func:`merge_samples`).
    latency: dict[str, tuple[float, ...]]


def quantile(q: float, counts: Sequence[float], bounds: Sequence[float] = LATENCY_BUCKETS) -> float | None:
    """The ``q`` quantile of a histogram's bucket counts, interpolated linearly inside its bucket.

    As Prometheus' ``histogram_quantile``: a value in the ``+Inf`` bucket is
    reported as the highest finite bound. None for an empty histogram.
    """
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0.0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            if index >= len(bounds):
                return bounds[-1]
            lower = bounds[index - 1] if index else 0.0
            return lower + (bounds[index] - lower) * ((rank - seen) / count)
        seen += count
    return bounds[-1]


def _minus(now: tuple[float, ...], before: tuple[float, ...] | None) -> list[float]:
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
        return series(list(self.samples))

    def latency(self, window: float = 60.0) -> dict[str, dict[str, Any]]:
        """p50/p99 (ms) and count per operation over the last ``window`` seconds of samples."""
        return latency(list(self.samples), window)


def series(samples: Sequence[Sample]) -> list[dict[str, Any]]:
    """One point per interval between consecutive samples: rates and that interval's percentiles."""
    points: list[dict[str, Any]] = []
    for before, now in itertools.pairwise(samples):
        seconds = now.at - before.at
        if seconds <= 0:
            continue
        hits, misses = now.hits - before.hits, now.misses - before.misses
        merged = [0.0] * (len(LATENCY_BUCKETS) + 1)
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


def latency(samples: Sequence[Sample], window: float = 60.0) -> dict[str, dict[str, Any]]:
    """p50/p99 (ms) and count per operation over the last ``window`` seconds of ``samples``."""
    if not samples:
        return {}
    now = samples[-1]
    before = next((s for s in samples if s.at >= now.at - window), None)
    result: dict[str, dict[str, Any]] = {}
    for op, buckets in sorted(now.latency.items()):
        counts = _minus(buckets, before.latency.get(op) if before is not None and before is not now else None)
        if sum(counts):
            result[op] = {"count": round(sum(counts)), "p50_ms": _ms(quantile(0.5, counts)),
                          "p99_ms": _ms(quantile(0.99, counts))}
    return result


def sample_to_json(sample: Sample) -> dict[str, Any]:
    """A sample as JSON (what a worker hands its supervisor: ``GET /samples.json``)."""
    return dataclasses.asdict(sample)


def sample_from_json(raw: Any) -> Sample:
    """The inverse of :func:`sample_to_json`. Raises ValueError on anything else."""
    try:
        latency = {str(op): tuple(float(c) for c in counts) for op, counts in raw["latency"].items()}
        if any(len(counts) != len(LATENCY_BUCKETS) + 1 for counts in latency.values()):
            raise ValueError("a latency histogram of the wrong size")
        return Sample(at=float(raw["at"]), hits=float(raw["hits"]), misses=float(raw["misses"]),
                      requests=float(raw["requests"]), errors=float(raw["errors"]),
                      evicted_bytes=float(raw["evicted_bytes"]), cache_bytes=float(raw["cache_bytes"]),
                      latency=latency)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a sample: {exc}") from None


def merge_samples(per_worker: Sequence[Sequence[Sample]], interval: float, keep: int = 300) -> list[Sample]:
    """Several processes' samples as one process's: cumulative figures summed on a common clock.

    Each worker samples on its own phase, so its cumulative counters are
    interpolated linearly at the grid times (``interval`` apart, ending at the
    earliest of the workers' last samples) and summed; before a worker's first
    sample its figures count as that first sample's (it adds no rate), and
    cache bytes (a level, not a count) count as 0 there. Rates and percentiles
    of the result are then those of the whole node.
    """
    histories = [list(h) for h in per_worker if h]
    if not histories or interval <= 0:
        return []
    end = min(h[-1].at for h in histories)
    start = min(h[0].at for h in histories)
    count = min(keep, int((end - start) / interval) + 1)
    grid = [end - interval * (count - 1 - k) for k in range(count)]
    merged: list[Sample] = []
    for at in grid:
        total: dict[str, float] = dict.fromkeys((*_CUMULATIVE, "cache_bytes"), 0.0)
        latency_sum: dict[str, list[float]] = {}
        for history in histories:
            before, after, weight = _bracket(history, at)
            for name in _CUMULATIVE:
                total[name] += _between(getattr(before, name), getattr(after, name), weight)
            if at >= history[0].at:
                total["cache_bytes"] += _between(before.cache_bytes, after.cache_bytes, weight)
            for op in after.latency.keys() | before.latency.keys():
                low = before.latency.get(op) or (0.0,) * (len(LATENCY_BUCKETS) + 1)
                high = after.latency.get(op) or low
                sums = latency_sum.setdefault(op, [0.0] * (len(LATENCY_BUCKETS) + 1))
                for i, (a, b) in enumerate(zip(low, high, strict=True)):
                    sums[i] += _between(a, b, weight)
        merged.append(Sample(at=at, hits=total["hits"], misses=total["misses"], requests=total["requests"],
                             errors=total["errors"], evicted_bytes=total["evicted_bytes"],
                             cache_bytes=total["cache_bytes"],
                             latency={op: tuple(sums) for op, sums in latency_sum.items()}))
    return merged


_CUMULATIVE = ("hits", "misses", "requests", "errors", "evicted_bytes")


def _bracket(history: Sequence[Sample], at: float) -> tuple[Sample, Sample, float]:
    """The samples around ``at`` and how far between them it lies (clamped at both ends)."""
    if at <= history[0].at:
        return history[0], history[0], 0.0
    if at >= history[-1].at:
        return history[-1], history[-1], 0.0
    index = bisect.bisect_left([s.at for s in history], at)
    before, after = history[index - 1], history[index]
    span = after.at - before.at
    return before, after, (at - before.at) / span if span > 0 else 1.0


def _between(low: float, high: float, weight: float) -> float:
    return low + (high - low) * weight


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
