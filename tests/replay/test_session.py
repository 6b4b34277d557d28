"""A whole replay (last N or a range, following, filters, limit, group resume and commit)
over an in-memory source, without the command line."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from logstream.errors import BrokerNotAvailableError, UnknownTopicOrPartitionError
from logstream.replay import timespec as ts
from logstream.replay.filters import Matcher, RecordFilter
from logstream.replay.memory import MemorySource
from logstream.replay.merge import ReadPacing
from logstream.replay.session import Replay, ReplayRequest
from logstream.testing.clock import ManualClock
from logstream.types import Record, TopicPartition

P0 = TopicPartition("orders", 0)
P1 = TopicPartition("orders", 1)
BASE = 1_714_557_600_000


def where(records: Sequence[Record | None]) -> list[str]:
    return [f"{r.partition}:{r.offset}" for r in records if r is not None]


def replay(src: MemorySource, **request: object) -> Replay:
    req = ReplayRequest(topics=("orders",), **request)  # type: ignore[arg-type]
    return Replay(src, req, clock=ManualClock(BASE + 60_000))


def test_last_n_is_the_newest_across_partitions_in_time_order(
    two_partitions: MemorySource,
) -> None:
    run = replay(two_partitions, last=3)
    assert where(list(run.records())) == ["1:8", "0:9", "1:9"]
    assert run.stats.emitted == 3
    assert run.stats.positions == {P0: 10, P1: 10}


def test_last_n_counts_only_matching_records(two_partitions: MemorySource) -> None:
    k8 = RecordFilter(matcher=Matcher(keys=["k8"]))
    run = Replay(two_partitions, ReplayRequest(topics=("orders",), last=3), record_filter=k8)
    # the newest 3 matching among the last 3 of each partition, not the matching ones
    # among the newest 3 (which would be 1:8 alone)
    assert where(list(run.records())) == ["0:8", "1:8"]
    assert k8.stats.matched == 2


def test_range_with_limit_stops_reading(two_partitions: MemorySource) -> None:
    run = replay(two_partitions, start=ts.Beginning(), limit=3)
    assert where(list(run.records())) == ["0:0", "1:0", "0:1"]
    assert run.stats.read < 20


def test_following_after_the_history_yields_new_records(two_partitions: MemorySource) -> None:
    new = Record("orders", 1, 10, BASE + 30_000, b"k", b"new", ())
    two_partitions.appends.append(new)
    run = replay(two_partitions, last=1, follow=True)
    seen: list[Record | None] = []
    items: Iterator[Record | None] = run.records()
    for item in items:
        seen.append(item)
        if item is not None and item.value == b"new":
            break
        assert two_partitions.polls < 50, "the appended record never came"
    assert where(seen) == ["1:9", "1:10"]
    assert seen[1] is None  # the history is out before following starts


def test_a_group_needs_a_source_that_keeps_offsets(two_partitions: MemorySource) -> None:
    with pytest.raises(TypeError, match="consumer group"):
        replay(two_partitions, group="billing")


def test_unknown_partitions_fail_when_the_replay_is_made(two_partitions: MemorySource) -> None:
    with pytest.raises(UnknownTopicOrPartitionError, match="no partition 7"):
        replay(two_partitions, partitions=(0, 7))


def test_a_request_without_start_stops_only_at_the_end() -> None:
    with pytest.raises(ValueError, match="only stop is the end"):
        ReplayRequest(topics=("orders",), stop=ts.Offset(3))


def test_latest_ends_asks_the_source(two_partitions: MemorySource) -> None:
    assert replay(two_partitions).latest_ends() == {P0: 10, P1: 10}


class FlakyMetadata(MemorySource):
    """Partition counts fail ``failures`` times once reading started (a slow broker)."""

    failures = 3

    def partitions_for(self, topic: str) -> list[int]:
        if self.polls and self.failures:
            self.failures -= 1
            raise BrokerNotAvailableError("broker at x not available: deadline exceeded")
        return super().partitions_for(topic)


def test_a_follower_outlives_a_failed_partition_count_lookup(
    two_partitions: MemorySource,
) -> None:
    src = FlakyMetadata(two_partitions.data)
    src.appends.extend(
        Record("orders", 1, 10 + i, BASE + 30_000, b"k", b"new", ()) for i in range(5)
    )
    req = ReplayRequest(topics=("orders",), last=0, follow=True)
    run = Replay(src, req, pacing=ReadPacing(poll_timeout_s=0.0, watch_interval_s=0.0))
    news = 0
    for item in run.records():
        if item is not None and item.value == b"new":
            news += 1
            if news == 5:
                break
        assert src.polls < 100, "the follower stopped getting records"
    assert src.failures == 0  # the lookups failed, and the read went on
