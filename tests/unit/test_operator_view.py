"""The operator's view without a server: the stats ring buffer, upstream health, logging, config errors, the CLI."""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import sys
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from daxd.cli import OPTION_GROUPS, main
from daxd.config import ConfigError, load
from daxd.observability import JsonFormatter, Metrics
from daxd.stats import Sampler, quantile
from daxd.status import render_status
from daxd.upstream.health import UpstreamHealth


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_quantile_interpolates_inside_the_bucket() -> None:
    bounds = (1.0, 2.0, 4.0)
    assert quantile(0.5, [0, 0, 0, 0], bounds) is None
    assert quantile(0.5, [0, 10, 0, 0], bounds) == pytest.approx(1.5)
    assert quantile(0.99, [50, 0, 0, 50], bounds) == 4.0  # +Inf reports the highest finite bound
    assert quantile(0.25, [10, 10, 0, 0], bounds) == pytest.approx(0.5)


def test_sampler_turns_counters_into_rates_and_windowed_percentiles() -> None:
    metrics, clock = Metrics(), Clock()
    sampler = Sampler(metrics, keep=3, clock=clock)
    sampler.sample()
    for _ in range(30):
        metrics.item_hit("t")
        metrics.request("GetItem", 0.0003)
    for _ in range(10):
        metrics.item_miss("t")
        metrics.request("GetItem", 0.03)
    clock.now += 2
    sampler.sample()
    [point] = sampler.series()
    assert point["rps"] == 20 and point["hit_ratio"] == 0.75
    assert 0.25 <= point["p50_ms"] <= 0.5 and 25 <= point["p99_ms"] <= 50
    clock.now += 1
    sampler.sample()
    assert sampler.series()[-1]["hit_ratio"] is None  # no reads in that interval: no ratio, not 0
    assert sampler.series()[-1]["rps"] == 0
    clock.now += 1
    sampler.sample()
    assert len(sampler.samples) == 3  # bounded: the sample before the requests is gone, and so are they
    assert sampler.latency(window=60) == {}


def test_upstream_health_logs_each_change_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    health = UpstreamHealth("http://db:8000", monotonic=clock, wall=clock)
    with caplog.at_level(logging.INFO, logger="daxd.upstream"):
        health.failed("connection refused")
        health.failed("connection refused")
        clock.now += 75
        health.succeeded()
        health.succeeded()
        health.failed("no response within 5 s")
        health.failed("no response within 5 s")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3, messages
    assert "not answering at start-up: connection refused" in messages[0]
    assert "answering again after 75.0 s down" in messages[1]
    assert "is down: no response within 5 s" in messages[2] and caplog.records[2].levelname == "ERROR"
    assert health.up is False and health.outages == 2 and health.last_error == "no response within 5 s"


def test_metrics_gauges_are_read_when_scraped_and_build_info_is_there() -> None:
    metrics = Metrics()
    state: dict[str, Any] = {"up": None}
    metrics.gauges["daxd_upstream_up"] = ("up?", lambda: None if state["up"] is None else float(state["up"]))
    assert metrics.registry.get_sample_value("daxd_upstream_up") is None  # unknown is not "down"
    state["up"] = False
    assert metrics.value("daxd_upstream_up") == 0
    state["up"] = True
    assert metrics.value("daxd_upstream_up") == 1
    assert "daxd_build_info{" in metrics.render().decode()


def test_json_log_lines_are_one_object_each() -> None:
    record = logging.LogRecord("daxd", logging.WARNING, __file__, 1, "a %s\nb", ("line",), None)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "warning" and entry["message"] == "a line\nb" and entry["time"].endswith("+00:00")


@pytest.mark.parametrize(("flags", "env", "expected"), [
    ({"cache_size": "1G"}, {}, ["--cache-size", "'1G'", "KiB", "GB"]),
    ({}, {"DAXD_CACHE_SIZE": "1G"}, ["DAXD_CACHE_SIZE", "'1G'", "MiB"]),
    ({}, {"DAXD_HTTP_PORT": "abc"}, ["DAXD_HTTP_PORT", "'abc'", "whole number"]),
    ({}, {"DAXD_HTTP_PORT": "70000"}, ["DAXD_HTTP_PORT", "70000", "not a TCP port"]),
    ({"cache_size": "10"}, {}, ["--cache-size", "10 bytes is too small", "10MiB"]),
])
def test_config_errors_name_what_was_typed_and_what_is_accepted(flags: dict[str, Any], env: dict[str, str],
                                                                expected: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load(flags, env, None)
    for text in expected:
        assert text in str(caught.value)


def test_help_is_grouped_names_variables_and_ends_with_examples() -> None:
    runner = CliRunner()
    short = runner.invoke(main, ["-h"])
    assert short.exit_code == 0 and "serve" in short.output and "status" in short.output
    result = runner.invoke(main, ["serve", "-h"])
    assert result.exit_code == 0, result.output
    text = result.output
    positions = [text.index(f"{title}:") for title, _ in OPTION_GROUPS]
    assert positions == sorted(positions)
    assert "Other:" not in text, "a serve option is in no group: add it to OPTION_GROUPS in daxd/cli.py"
    assert "[env DAXD_HTTP_PORT]" in text and "[env DAXD_CACHE_SIZE]" in text
    assert "--auth-keys FILE" in text and "--tls-cert FILE" in text and "--config FILE" in text
    assert text.index("Examples:") > positions[-1]  # the examples come last
    assert "daxd serve --upstream http://localhost:8000" in text[text.index("Examples:"):]


def test_serve_refuses_a_bad_variable_naming_it() -> None:
    result = CliRunner().invoke(main, ["serve"], env={"DAXD_HTTP_PORT": "abc"})
    assert result.exit_code == 2 and "DAXD_HTTP_PORT" in result.output and "'abc'" in result.output


def test_status_fits_80_columns_without_cutting_addresses() -> None:
    def worker(node: str, index: int) -> dict[str, Any]:
        return {"node": node, "worker": index, "pid": 4000 + index, "hit_ratio": 0.9876, "cache_bytes": 123456789,
                "cache_entries": 123456, "rps": 51234.5, "l2_hits": 1234, "l2_misses": 56, "tier_up": True,
                "streams": {"Orders": {"lag": 0.12}, "Customers": {"lag": 1.5}}}

    nodes = [{"node": "n1", "address": "10.0.0.1:8111", "self": True, "workers": [worker("n1", 0)],
              "hit_ratio": 0.5, "cache_bytes": 1 << 30, "cache_entries": 9, "rps": 10}]
    nodes += [{"node": f"ip-10-0-0-{i}.eu-west-1.compute.internal:8111", "address": f"[2001:db8::{i}]:8111",
               "workers": [worker("n", 0), worker("n", 1)], "hit_ratio": 0.9876, "cache_bytes": 123456789,
               "cache_entries": 123456, "rps": 102469} for i in range(2, 4)]
    view = {"node": "n1", "nodes": nodes, "leases": [{"table": "Orders", "shard": "shardId-0001", "holder": "n1"}],
            "tier": {"url": "redis://cache:6379", "connected": True, "used_memory": 1 << 30, "keys": 100000,
                     "keyspace_hits": 10, "keyspace_misses": 5, "valkey_version": "8.1.1"}}
    out = io.StringIO()
    render_status(view, Console(file=out, width=80, color_system=None))
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80, out.getvalue()
    for address in ("10.0.0.1:8111", "[2001:db8::2]:8111", "[2001:db8::3]:8111"):
        assert any(address in line for line in lines), out.getvalue()
    for text in ("workers", "shared tier redis://cache:6379", "100,000 keys", "stream leases", "shardId-0001"):
        assert text in out.getvalue(), out.getvalue()


def test_status_takes_the_admin_address_in_its_usual_spellings() -> None:
    from daxd.status import admin_url

    assert admin_url("10.0.0.1:9000") == "http://10.0.0.1:9000"
    assert admin_url("10.0.0.1") == "http://10.0.0.1:8113"
    assert admin_url("[::1]:9000") == "http://[::1]:9000"
    assert admin_url("::1") == "http://[::1]:8113"
    assert admin_url("http://h:1/") == "http://h:1"
    for bad in ("h:port", "dax://h:8111", ":9000"):
        with pytest.raises(ConfigError):
            admin_url(bad)


def test_status_watch_redraws_until_ctrl_c_and_shows_a_failed_fetch(monkeypatch: pytest.MonkeyPatch) -> None:
    from daxd import status

    view = {"node": "n1", "nodes": [{"node": "n1", "address": "10.0.0.1:8111", "self": True, "workers": []}]}
    answers: list[Any] = [view, OSError("connection refused"), view, KeyboardInterrupt()]

    def fetch() -> dict[str, Any]:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return dict(answer)

    out = io.StringIO()
    monkeypatch.setattr(status, "_console", lambda: Console(file=out, width=80, color_system=None,
                                                           force_terminal=True))
    status.watch_status(fetch, 0.01)
    shown = [out.getvalue()]
    assert not answers  # it kept fetching until Ctrl-C
    assert "10.0.0.1:8111" in shown[0] and "connection refused" in shown[0]


def test_status_shows_leases_once_a_lease_module_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio
    import types

    from daxd.tier.reports import leases_of, tier_figures

    monkeypatch.delitem(sys.modules, "daxd.tier.leases", raising=False)
    if importlib.util.find_spec("daxd.tier.leases") is None:
        assert asyncio.run(leases_of(object())) is None  # no module: no leases row, not an error
    module = types.ModuleType("daxd.tier.leases")

    async def leases(client: Any) -> list[dict[str, Any]]:
        return [{"table": "Orders", "shard": "shardId-1", "holder": "n1", "client": repr(client)}]

    module.leases = leases  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "daxd.tier.leases", module)
    assert asyncio.run(leases_of("c")) == [{"table": "Orders", "shard": "shardId-1", "holder": "n1", "client": "'c'"}]
    shards = {"a:1": {"used_memory": 10, "keyspace_hits": 3, "keyspace_misses": 1, "valkey_version": "8.1"},
              "b:2": {"used_memory": 20, "keyspace_hits": 1, "keyspace_misses": 3, "valkey_version": "8.1"}}
    figures = tier_figures(shards, 7)
    assert figures["used_memory"] == 30 and figures["shards"] == 2 and figures["keyspace_hit_ratio"] == 0.5
    assert tier_figures({"used_memory": 5, "role": "master"}, 1)["shards"] == 1
