"""The leave period's setting, and which nodes a node names in ``endpoints`` before it joins and once it left."""

from __future__ import annotations

from typing import Any

import pytest

from daxd.cluster.membership import LiveNode
from daxd.config import DEFAULT_LEAVE_PERIOD, ConfigError, Settings, load
from daxd.tier.members import ValkeyMembers


def test_the_leave_period_defaults_to_the_clients_refresh_cover_only_in_a_valkey_membership() -> None:
    assert Settings().leave_seconds == 0.0                                   # a lone node: nothing to leave
    assert Settings(valkey="redis://cache:6379").leave_seconds == DEFAULT_LEAVE_PERIOD
    assert DEFAULT_LEAVE_PERIOD >= 4.5 + 1.0   # the Python client's longest refresh gap + one membership listing
    assert Settings(valkey="redis://cache:6379", leave_period=0).leave_seconds == 0.0
    assert Settings(leave_period=2.5).leave_seconds == 2.5                  # explicit: for a load balancer too


def test_the_leave_period_comes_from_a_flag_a_variable_or_the_file_and_is_checked() -> None:
    assert load({"leave_period": 3.0}, {"DAXD_LEAVE_PERIOD": "5"}, None).leave_period == 3.0
    assert load({}, {"DAXD_LEAVE_PERIOD": "5"}, None).leave_period == 5.0
    assert load({}, {"DAXD_LEAVE_PERIOD": ""}, None).leave_period is None    # empty: the default
    with pytest.raises(ConfigError, match="DAXD_LEAVE_PERIOD: 'soon' is not a number"):
        load({}, {"DAXD_LEAVE_PERIOD": "soon"}, None)
    with pytest.raises(ConfigError, match="--leave-period: must be between 0 and 3600 seconds"):
        load({"leave_period": -1.0}, {}, None)


def ports(nodes: tuple[LiveNode, ...] | None) -> set[int] | None:
    return None if nodes is None else {node.port for node in nodes}


def registration(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "id": port, "host": "localhost", "ip": "127.0.0.1", "port": port}


def test_a_node_names_itself_in_endpoints_only_while_advertised() -> None:
    members = ValkeyMembers(None, name="me", host="localhost", ip="127.0.0.1", port=8111)
    assert ports(members.live_nodes("localhost")) is None          # alone and not joined: itself
    members.others = [registration("b", 8112), registration("c", 8113)]
    assert ports(members.live_nodes("localhost")) == {8112, 8113}  # starting: send clients on
    members.advertised = True
    assert ports(members.live_nodes("localhost")) == {8111, 8112, 8113}
    members.advertised = False                                                # left: the others only
    assert ports(members.live_nodes("localhost")) == {8112, 8113}
