"""The cache store: LRU by bytes, per-entry TTL, byte accounting."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from daxd.cache.store import ENTRY_OVERHEAD, Store


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_after_their_ttl_counted_from_insertion() -> None:
    clock = Clock()
    store: Store[str, str] = Store(10_000, timer=clock)
    store.put("a", "A", 1, ttl=5)
    clock.now += 4.9
    assert store.get("a") == "A"  # a read does not extend the TTL ...
    clock.now += 0.2
    assert store.get("a") is None  # ... so it expires 5 s after insertion
    assert store.bytes == 0


def test_ttl_zero_never_expires() -> None:
    clock = Clock()
    store: Store[str, str] = Store(10_000, timer=clock)
    store.put("a", "A", 1, ttl=0)
    clock.now += 10**9
    assert store.get("a") == "A"


def test_lru_evicts_least_recently_used_by_bytes() -> None:
    store: Store[str, int] = Store(3 * (100 + ENTRY_OVERHEAD), timer=Clock())
    for name in "abc":
        store.put(name, 0, 100, ttl=None)
    store.get("a")  # a is now the most recently used
    store.put("d", 0, 100, ttl=None)
    assert "b" not in store and {"a", "c", "d"} <= set(store)
    assert store.evicted_bytes == 100 + ENTRY_OVERHEAD


def test_value_larger_than_budget_is_refused() -> None:
    store: Store[str, int] = Store(1000, timer=Clock())
    store.put("small", 1, 10, ttl=None)
    assert store.put("huge", 1, 5000, ttl=None) is False
    assert "huge" not in store and "small" in store


def test_replacing_an_entry_recharges_it() -> None:
    store: Store[str, int] = Store(10_000, timer=Clock())
    store.put("a", 1, 100, ttl=None)
    store.put("a", 2, 50, ttl=None)
    assert store.bytes == 50 + ENTRY_OVERHEAD and store.get("a") == 2


@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 600), st.booleans()), max_size=200))
def test_accounted_bytes_always_match_entries_and_stay_under_budget(ops: list[tuple[str, int, bool]]) -> None:
    budget = 2000
    store: Store[str, int] = Store(budget, timer=Clock())
    sizes: dict[str, int] = {}
    for key, size, remove in ops:
        if remove:
            store.pop(key)
        else:
            store.put(key, size, size, ttl=None)
        sizes = {k: store.get(k) or 0 for k in store}
        assert store.bytes == sum(v + ENTRY_OVERHEAD for v in sizes.values())
        assert store.bytes <= budget


def test_charging_an_entry_counts_its_attachments_and_may_evict() -> None:
    store: Store[str, int] = Store(2 * (100 + ENTRY_OVERHEAD) + 50, timer=Clock())
    store.put("a", 0, 100, ttl=None)
    store.put("b", 0, 100, ttl=None)
    assert store.charge("b", 40) and store.bytes == 2 * (100 + ENTRY_OVERHEAD) + 40
    assert store.charge("b", 40)  # now over budget: the least recently used entry goes
    assert "a" not in store and "b" in store
    assert not store.charge("a", 1)
