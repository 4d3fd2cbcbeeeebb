"""What the tailer counts, and how /metrics shows it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from daxd.observability import Histogram

#: Buckets of the lag histogram, in seconds (creation times are rounded down to the second).
LAG_BUCKETS = (0.25, 0.5, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass
class StreamStats:
    """Plain counts (single-owner, like :class:`daxd.observability.Metrics`); see :class:`StreamCollector`."""

    applied: dict[tuple[str, str], int] = field(default_factory=dict)
    errors: dict[tuple[str, str], int] = field(default_factory=dict)
    fallbacks: dict[tuple[str, str], int] = field(default_factory=dict)
    lag: dict[str, Histogram] = field(default_factory=dict)
    #: table -> "tailing", "no-stream" or "fallback"
    status: dict[str, str] = field(default_factory=dict)
    #: table -> shard readers holding an iterator
    readers: dict[str, int] = field(default_factory=dict)
    #: table -> the lag of the last record applied (seconds), for the dashboard and ``daxd status``.
    last_lag: dict[str, float] = field(default_factory=dict)

    def count(self, counts: dict[tuple[str, str], int], table: str, label: str) -> None:
        counts[(table, label)] = counts.get((table, label), 0) + 1

    def observe_lag(self, table: str, seconds: float) -> None:
        lag = self.lag.get(table)
        if lag is None:
            lag = self.lag[table] = Histogram(LAG_BUCKETS)
        lag.observe(max(0.0, seconds))
        self.last_lag[table] = max(0.0, seconds)


class StreamCollector(Collector):
    """Exports :class:`StreamStats` when scraped: ``registry.register(StreamCollector(tailer.stats))``."""

    def __init__(self, stats: StreamStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        for name, doc, counts, label in (
                ("daxd_stream_records", "Stream records applied, by outcome.", s.applied, "outcome"),
                ("daxd_stream_errors", "Failed DynamoDB Streams calls and bad records, by code.", s.errors, "code"),
                ("daxd_stream_fallbacks", "Streams given up for TTL expiry, by reason.", s.fallbacks, "reason")):
            family = CounterMetricFamily(name, doc, labels=["table", label])
            for (table, value), count in list(counts.items()):
                family.add_metric([table, value], count)
            yield family
        histogram = HistogramMetricFamily("daxd_stream_lag_seconds",
                                          "Seconds from a record's creation to its application.", labels=["table"])
        for table, lag in list(s.lag.items()):
            histogram.add_metric([table], lag.cumulative(), lag.sum)
        yield histogram
        readers = GaugeMetricFamily("daxd_stream_shard_readers", "Shards this node reads.", labels=["table"])
        for table, count in list(s.readers.items()):
            readers.add_metric([table], count)
        yield readers
        tailed = GaugeMetricFamily("daxd_stream_tailed", "1 if the table's stream is followed, 0 if it "
                                   "falls back to TTL expiry.", labels=["table"])
        for table, status in list(s.status.items()):
            tailed.add_metric([table], 1.0 if status == "tailing" else 0.0)
        yield tailed


# -- the asyncio shell -----------------------------------------------------------
