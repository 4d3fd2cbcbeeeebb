"""Membership decisions: pure, with an injected clock."""

from __future__ import annotations

import pytest

from daxd.cluster.membership import Address, Membership, PeerListError, find_self, node_id_of, owner, parse_peers


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock) -> Membership:
    me = Address("127.0.0.1", 8111)
    peers = {Address("127.0.0.1", 8112): "127.0.0.1", Address("127.0.0.1", 8113): "127.0.0.1"}
    return Membership(me, "127.0.0.1", "n1", peers, timer=clock)


def test_peers_parse_and_self_is_found_with_loopback_equivalence() -> None:
    peers = parse_peers("localhost:8111, 10.0.0.2:8111,[::1]:9000,127.0.0.1:8111")
    assert [str(p) for p in peers] == ["localhost:8111", "10.0.0.2:8111", "[::1]:9000"]
    assert find_self(peers, Address("127.0.0.1", 8111)) == peers[1:]
    with pytest.raises(PeerListError):
        find_self(peers, Address("10.0.0.9", 8111))
    for bad in ("nohost", "a:0", "a:x", ":8111"):
        with pytest.raises(PeerListError):
            parse_peers(bad)


def test_node_ids_are_stable_positive_and_distinct() -> None:
    assert node_id_of("n1") == node_id_of("n1")
    assert 0 <= node_id_of("n1") < 2**63
    assert len({node_id_of(f"n{i}") for i in range(100)}) == 100


def test_a_peer_is_healthy_after_a_ping_and_drops_after_failures_or_silence() -> None:
    clock = Clock()
    m = make(clock)
    assert [e.port for e in m.endpoints("h", "az")] == [8111]
    m.succeeded(Address("127.0.0.1", 8112), {"id": 7, "node": "n2"})
    answer = m.endpoints("h", "az")
    assert [(e.port, e.role, e.node_id) for e in answer] == [(8111, 1, node_id_of("n1")), (8112, 1, 7)]
    version = m.version
    m.failed(Address("127.0.0.1", 8112), "refused")
    assert m.version == version  # one lost probe is noise
    m.failed(Address("127.0.0.1", 8112), "refused")
    assert m.healthy_peers() == []
    m.succeeded(Address("127.0.0.1", 8112), {"id": 7})
    clock.now += 10
    assert m.refresh() and m.healthy_peers() == []  # silent for too long


def test_shard_owners_move_only_off_a_dead_node() -> None:
    nodes = ["a:1", "b:1", "c:1"]
    shards = [f"shard-{i}" for i in range(300)]
    before = {s: owner(s, nodes) for s in shards}
    assert set(before.values()) == set(nodes)
    after = {s: owner(s, ["a:1", "c:1"]) for s in shards}
    assert all(after[s] == before[s] for s in shards if before[s] != "b:1")
    assert owner("x", []) is None


def test_this_node_owns_everything_alone_and_a_share_with_peers() -> None:
    clock = Clock()
    m = make(clock)
    shards = [f"s{i}" for i in range(90)]
    assert all(m.owns(s) for s in shards)
    m.succeeded(Address("127.0.0.1", 8112), {})
    m.succeeded(Address("127.0.0.1", 8113), {})
    assert 10 < sum(m.owns(s) for s in shards) < 50


def test_cluster_settings_follow_the_usual_precedence_and_are_checked() -> None:
    from daxd.config import ConfigError, load
    from daxd.node import membership_of

    settings = load({"dax_port": 8112}, {"DAXD_PEERS": "127.0.0.1:8111,localhost:8112", "DAXD_NODE_ID": "n2"}, None)
    membership = membership_of(settings)
    assert membership.name == "n2" and [str(p) for p in membership.peers] == ["127.0.0.1:8111"]
    with pytest.raises(ConfigError, match="not in the list"):
        membership_of(load({"dax_port": 9999, "peers": "127.0.0.1:8111"}, {}, None))
    with pytest.raises(ConfigError, match="fixed DAX port"):
        load({"dax_port": 0, "peers": "127.0.0.1:8111"}, {}, None)
