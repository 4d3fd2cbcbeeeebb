"""Shutdown as an operator sees it: the drain's outcome in the log, and a second Ctrl-C that exits at once."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.faultproxy import ThreadedFaultProxy
from tests.harness import DaxdNode, create_table, wait_until

GETITEM = "DynamoDB_20120810.GetItem"


@pytest.fixture
def slow_upstream(dynamodb_local: Any) -> Iterator[tuple[ThreadedFaultProxy, str]]:
    proxy = ThreadedFaultProxy(dynamodb_local.endpoint)
    port = proxy.start()
    yield proxy, f"http://127.0.0.1:{port}"
    proxy.delay = 0
    proxy.stop()


def _request_in_flight(node: DaxdNode, proxy: ThreadedFaultProxy, table: str) -> threading.Thread:
    """A GetItem miss that the proxy holds (``proxy.delay``); returns once the proxy has it."""
    before = proxy.seen[GETITEM]

    def read() -> None:
        with contextlib.suppress(Exception):  # the node may cut it off: that is what is tested
            node.client().get_item(TableName=table, Key={"pk": {"S": "held"}})

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    wait_until(lambda: proxy.seen[GETITEM] > before, 20, "the GetItem to reach the upstream")
    return worker


def test_drain_outcome_names_requests_cut_off(slow_upstream: tuple[ThreadedFaultProxy, str], ddb: Any) -> None:
    proxy, url = slow_upstream
    table = create_table(ddb, range_key=None)
    node = DaxdNode(url, "--streams", "off", "--shutdown-grace", "0.2", "--upstream-max-attempts", "1",
                    "--upstream-timeout", "30")
    try:
        proxy.delay = 20
        worker = _request_in_flight(node, proxy, table)
        assert node.stop(signal.SIGTERM) == 0
        worker.join(30)
    finally:
        node.stop()
    output = "".join(node.output)
    assert "drain: 0 in-flight request(s) finished, 1 cut off when the 0.2 s grace ran out" in output


def test_a_second_ctrl_c_during_the_drain_exits_at_once(slow_upstream: tuple[ThreadedFaultProxy, str],
                                                        ddb: Any) -> None:
    proxy, url = slow_upstream
    table = create_table(ddb, range_key=None)
    node = DaxdNode(url, "--streams", "off", "--shutdown-grace", "300", "--upstream-max-attempts", "1",
                    "--upstream-timeout", "60")
    try:
        proxy.delay = 50
        worker = _request_in_flight(node, proxy, table)
        node.process.send_signal(signal.SIGINT)
        stdout = node.process.stdout
        assert stdout is not None
        wait_until(lambda: "draining" in stdout.readline(), 20, "the drain to start")
        node.process.send_signal(signal.SIGINT)
        # The grace is 300 s and the held request 50 s: only the forced exit ends the process within the wait.
        assert node.process.wait(40) == 130
    finally:
        node.stop(signal.SIGKILL)
    worker.join(60)
    assert "second signal while draining: exiting now" in "".join(node.output)
