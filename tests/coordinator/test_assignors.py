"""Assignor properties: every partition exactly once, balance, stickiness (Hypothesis)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logstream.coordinator.assignors import (
    ASSIGNORS,
    get_assignor,
    range_assign,
    roundrobin_assign,
    sticky_assign,
)
from logstream.errors import InvalidRequestError
from logstream.types import TopicPartition

TOPICS = ["a", "b", "c"]

member_ids = st.lists(st.text("mnopq", min_size=1, max_size=3), min_size=1, max_size=8, unique=True)
counts = st.fixed_dictionaries({t: st.integers(0, 12) for t in TOPICS})


def _check_exactly_once(result, subs, cnt):
    owners = Counter(tp for tps in result.values() for tp in tps)
    expected = {
        TopicPartition(t, p) for ts in subs.values() for t in ts for p in range(cnt.get(t, 0))
    }
    assert set(owners) == expected
    assert all(n == 1 for n in owners.values())
    for m, tps in result.items():
        assert all(tp.topic in subs[m] for tp in tps)
    assert set(result) == set(subs)


@pytest.mark.parametrize("name", sorted(ASSIGNORS))
@given(members=member_ids, cnt=counts, data=st.data())
def test_every_partition_assigned_exactly_once(name, members, cnt, data):
    subs = {m: data.draw(st.sets(st.sampled_from(TOPICS), min_size=1)) for m in members}
    prev = {
        m: data.draw(
            st.sets(st.builds(TopicPartition, st.sampled_from(TOPICS), st.integers(0, 14)))
        )
        for m in members
    }
    result = ASSIGNORS[name](subs, cnt, prev)
    _check_exactly_once(result, subs, cnt)


@pytest.mark.parametrize("assign", [roundrobin_assign, sticky_assign])
@given(members=member_ids, cnt=counts, topics=st.sets(st.sampled_from(TOPICS), min_size=1))
def test_same_subscriptions_balance_within_one(assign, members, cnt, topics):
    subs = {m: topics for m in members}
    sizes = [len(v) for v in assign(subs, cnt, {}).values()]
    assert max(sizes) - min(sizes) <= 1


@given(members=member_ids, cnt=counts, topics=st.sets(st.sampled_from(TOPICS), min_size=1))
def test_range_balances_each_topic_within_one(members, cnt, topics):
    subs = {m: topics for m in members}
    result = range_assign(subs, cnt)
    for t in topics:
        sizes = [sum(1 for tp in v if tp.topic == t) for v in result.values()]
        assert max(sizes) - min(sizes) <= 1


def _min_moves(prev_sizes: list[int], total: int, n: int) -> int:
    """Fewest partitions that must leave surviving members to reach a balanced assignment."""
    base, extra = divmod(total, n)
    quotas = [base + 1] * extra + [base] * (n - extra)
    return sum(max(0, k - q) for k, q in zip(sorted(prev_sizes, reverse=True), quotas, strict=True))


@given(
    before=member_ids,
    after=member_ids,
    cnt=counts,
    cnt2=counts,
    topics=st.sets(st.sampled_from(TOPICS), min_size=1),
)
def test_sticky_moves_the_minimum(before, after, cnt, cnt2, topics):
    subs1 = {m: topics for m in before}
    prev = sticky_assign(subs1, cnt, {})
    subs2 = {m: topics for m in after}
    result = sticky_assign(subs2, cnt2, prev)
    _check_exactly_once(result, subs2, cnt2)
    valid = set().union(*result.values()) if result else set()
    kept_sizes = [len({tp for tp in prev.get(m, ()) if tp in valid}) for m in after]
    moved = sum(len({tp for tp in prev.get(m, ()) if tp in valid} - result[m]) for m in after)
    assert moved == _min_moves(kept_sizes, len(valid), len(after))


def test_sticky_join_of_a_fourth_member_moves_only_its_share():
    subs = {m: {"a"} for m in "wxy"}
    prev = sticky_assign(subs, {"a": 12}, {})
    subs["z"] = {"a"}
    new = sticky_assign(subs, {"a": 12}, prev)
    assert [len(new[m]) for m in "wxyz"] == [3, 3, 3, 3]
    for m in "wxy":
        assert new[m] <= prev[m]


def test_three_members_on_six_partitions_each_get_two():
    for assign in ASSIGNORS.values():
        result = assign({m: {"orders"} for m in "abc"}, {"orders": 6}, {})
        assert sorted(len(v) for v in result.values()) == [2, 2, 2]


def test_unknown_assignor_is_a_clear_error():
    with pytest.raises(InvalidRequestError, match="unknown assignor 'fair'"):
        get_assignor("fair")
    assert get_assignor("") is sticky_assign
