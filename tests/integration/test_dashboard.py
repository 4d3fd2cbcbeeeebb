"""The operator's view of a real node: the live page in a real headless browser, /stats.json, the new
gauges, the deploy/ files against /metrics, JSON logs and the upstream's state changes in the log.

The browser is Debian's chromium driven by Selenium through Debian's chromedriver (scripts/test installs
both); the test skips, saying so, only where they are not installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import ROOT, DaxdNode, create_table, free_port, wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1250", "--hide-scrollbars")


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read())


def exposed_names(metrics_text: str) -> set[str]:
    """Every series name /metrics can show (a counter's ``_total``, a histogram's ``_bucket``...)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(metrics_text):
        names.add(family.name)
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(family.type, ())
        names.update(family.name + suffix for suffix in suffixes)
    return names


def named_metrics(expression: str) -> set[str]:
    """The metric names a PromQL expression uses: plain names and ``__name__=~"a_(b|c)_d"`` alternatives."""
    names = set(re.findall(r"\b(?:daxd|process)_[a-z0-9_]+\b", re.sub(r'__name__=~"[^"]*"', "", expression)))
    for pattern in re.findall(r'__name__=~"([^"]*)"', expression):
        expanded = [""]
        for literal, group in re.findall(r"([^()]*)(?:\(([^()]*)\))?", pattern):
            expanded = [e + literal + (alt if group else "") for e in expanded for alt in (group.split("|") or [""])]
        names.update(expanded)
    return names


@pytest.fixture
def loaded_node(start_node: Any, request: pytest.FixtureRequest) -> Iterator[tuple[DaxdNode, str]]:
    """A node in front of DynamoDB Local with reads and writes going through it until the test ends.

    Parametrized indirectly with extra flags (``--workers 2``: the supervisor's merged page)."""
    node = start_node(*getattr(request, "param", ()))
    ddb = node.client()
    table = create_table(ddb, range_key=None, stream=True)
    for i in range(50):
        ddb.put_item(TableName=table, Item={"pk": {"S": f"k{i}"}, "v": {"S": "x" * 200}})
    stop = threading.Event()

    def load() -> None:
        for i in range(100_000):  # bounded in count; stopped by the test long before
            if stop.is_set():
                return
            ddb.get_item(TableName=table, Key={"pk": {"S": f"k{i % 60}"}})  # k50..k59 never exist: misses
            if i % 25 == 0:
                ddb.put_item(TableName=table, Item={"pk": {"S": f"k{i % 50}"}, "v": {"S": str(i)}})
            if i % 40 == 0:
                ddb.query(TableName=table, KeyConditionExpression="pk = :p",
                          ExpressionAttributeValues={":p": {"S": "k1"}})

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    yield node, table
    stop.set()
    worker.join(30)


@pytest.mark.parametrize("loaded_node", [(), ("--workers", "2")], indirect=True, ids=["one-process", "workers"])
def test_dashboard_draws_live_figures_in_a_real_browser(loaded_node: tuple[DaxdNode, str], tmp_path: Path) -> None:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("chromium and chromedriver are not installed (scripts/test installs them with apt-get as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    node, table = loaded_node
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER, port=free_port()), options=options)
    try:
        driver.set_page_load_timeout(30)
        driver.get(node.admin + "/?poll=500")

        def drawn(canvas: str, at_least: int) -> bool:
            points = driver.execute_script(f"return document.getElementById('{canvas}').dataset.points")
            return int(points or 0) >= at_least

        # Points appear as the node's one-second samples accumulate under load.
        for canvas in ("chart-rps", "chart-hit", "chart-latency", "chart-cache"):
            wait_until(lambda canvas=canvas: drawn(canvas, 4), 40, f"{canvas} to draw points")
        wait_until(lambda: table in driver.find_element("id", "tables").text, 20, "the table's row")
        assert "items 300 s" in driver.find_element("id", "tables").text  # the table's cache policy (defaults)
        # The canvases hold real strokes, not a blank surface.
        painted = driver.execute_script("""
            const c = document.getElementById('chart-rps');
            const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
            return n;""")
        assert painted > 1000
        assert driver.find_element("id", "conn").text == "live"
        assert float(driver.find_element("id", "tile-rps").text.replace(",", "")) > 0
        assert driver.find_element("id", "tile-upstream").text == "up"
        assert re.search(r"\d+(\.\d+)?%", driver.find_element("id", "tile-hit").text)
        ops = driver.find_element("id", "ops").text
        assert "GetItem" in ops and "PutItem" in ops
        workers = driver.find_element("id", "workers-box")
        several = "--workers" in " ".join(node.process.args)  # type: ignore[arg-type]
        if several:
            wait_until(lambda: workers.is_displayed() and workers.text.count(" ok ") == 2, 20, "both workers' rows")
        else:
            assert not workers.is_displayed()
        shot = Path((not several and os.environ.get("DAXD_DASHBOARD_SCREENSHOT")) or tmp_path / "dashboard.png")
        assert driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        driver.quit()


def test_stats_json_reports_per_table_figures_and_upstream_state(loaded_node: tuple[DaxdNode, str]) -> None:
    node, table = loaded_node

    def stats() -> dict[str, Any]:
        return dict(json.loads(get(node.admin + "/stats.json")))

    # Entries per table are counted at most every few seconds (it walks the cache): wait for a count.
    wait_until(lambda: len(stats()["series"]) >= 2 and any(t["table"] == table and t["hits"] > 0 and t["entries"] > 0
                                                            for t in stats()["tables"]), 30, "samples and hits")
    wait_until(lambda: "GetItem" in stats()["latency"], 30, "a sample taken after some GetItems")
    document = stats()
    row = next(t for t in document["tables"] if t["table"] == table)
    assert row["misses"] > 0 and row["entries"] > 0
    assert row["policy"]["cache"] is True and row["policy"]["query_cache"] is True
    assert document["upstream"]["up"] is True and document["upstream"]["endpoint"].startswith("http://127.0.0.1:")
    assert document["cache"]["capacity"] == 1 << 30 and 0 < document["cache"]["bytes"] < document["cache"]["capacity"]
    assert "GetItem" in document["latency"] and document["latency"]["GetItem"]["p99_ms"] > 0
    assert any(point["rps"] > 0 for point in document["series"])
    assert get(node.admin + "/dashboard.js").startswith(b"// daxd")
    # The writes come back through the table's stream: its lag is shown.
    wait_until(lambda: next(t for t in stats()["tables"] if t["table"] == table)["stream_lag"] is not None, 30,
               "the stream's lag")
    assert next(t for t in stats()["tables"] if t["table"] == table)["stream"] == "tailing"


def test_every_metric_in_deploy_files_exists_in_metrics(loaded_node: tuple[DaxdNode, str]) -> None:
    node, _ = loaded_node
    wait_until(lambda: b"daxd_stream_lag_seconds" in get(node.admin + "/metrics"), 20, "stream metrics")
    exposed = exposed_names(get(node.admin + "/metrics").decode())
    assert {"daxd_cache_capacity_bytes", "daxd_upstream_up", "daxd_build_info", "process_start_time_seconds",
            "daxd_cluster_nodes"} <= exposed

    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    alerts = {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}
    for wanted in ("DaxdUpstreamDown", "DaxdHitRatioCollapse", "DaxdEvictionStorm", "DaxdStreamLag",
                   "DaxdNodeMissing"):
        assert wanted in alerts
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "daxd.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    expressions += list(alerts.values())
    named = set().union(*(named_metrics(e) for e in expressions))
    assert len(named) >= 20
    assert named - exposed == set()


def test_json_logs_and_each_upstream_state_change_logged_once(dynamodb_local: Any) -> None:
    """An upstream missing at start-up, then back, then gone again: one JSON log line per change."""
    from tests.faultproxy import ThreadedFaultProxy

    proxy = ThreadedFaultProxy(dynamodb_local.endpoint)
    port = proxy.start()
    proxy.drop_next = 10_000
    node = DaxdNode(f"http://127.0.0.1:{port}", "--log-format", "json", "--upstream-max-attempts", "1")
    try:
        def upstream_up() -> Any:
            return json.loads(get(node.admin + "/stats.json"))["upstream"]["up"]

        wait_until(lambda: upstream_up() is False, 30, "the start-up probe to fail")
        proxy.drop_next = 0
        node.client().list_tables(Limit=1)
        assert upstream_up() is True
        proxy.drop_next = 10_000
        with pytest.raises(Exception, match="unavailable"):
            node.client().list_tables(Limit=1)
        assert upstream_up() is False
        assert b"daxd_upstream_up 0.0" in get(node.admin + "/metrics")
    finally:
        node.stop()
        proxy.stop()
    entries = [json.loads(line) for line in "".join(node.output).splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    messages = [e["message"] for e in entries]
    assert sum("not answering at start-up" in m for m in messages) == 1, messages
    assert sum("answering again after" in m for m in messages) == 1, messages
    assert sum(" is down: " in m for m in messages) == 1, messages
    assert next(e for e in entries if e["message"].startswith("authentication off"))["level"] == "warning"
    assert any(m.startswith(f"configuration: upstream http://127.0.0.1:{port} ") for m in messages)
    assert any(m.startswith("drain: ") for m in messages)
