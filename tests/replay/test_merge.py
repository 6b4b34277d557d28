"""Range planning, the timestamp merge and stop conditions, over an in-memory source."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from logstream.replay import timespec as ts
from logstream.replay.memory import MemorySource, make_records
from logstream.replay.merge import Merger, ReadPacing, newest, read_ranges
from logstream.replay.ranges import Range, plan_ranges
from logstream.testing.clock import ManualClock
from logstream.types import Record, TopicPartition

P0 = TopicPartition("orders", 0)
P1 = TopicPartition("orders", 1)
BASE = 1_714_557_600_000


def collect(it) -> list[Record]:  # type: ignore[no-untyped-def]
    return [r for r in it if r is not None]


def test_plan_from_each_start_spec(two_partitions: MemorySource) -> None:
    src = two_partitions
    src.begin = {P0: 2}
    tps = [P0, P1]

    def starts(spec: ts.StartSpec) -> list[int]:
        plan = plan_ranges(src, tps, spec, ts.End(), now_ms=BASE)
        return [plan[P0].start, plan[P1].start]

    assert starts(ts.Beginning()) == [2, 0]
    assert starts(ts.End()) == [10, 10]
    assert starts(ts.Offset(1)) == [2, 1]  # clamped to the log start
    assert starts(ts.FromEnd(3)) == [7, 7]
    assert starts(ts.FromBeginning(3)) == [5, 3]
    assert starts(ts.Timestamp(BASE + 5000)) == [3, 2]  # p0: 6000 at 3; p1: 5000 at 2
    assert starts(ts.Timestamp(BASE + 10**9)) == [10, 10]  # nothing yet: the end


def test_plan_stop_specs(two_partitions: MemorySource) -> None:
    src = two_partitions
    tps = [P0, P1]

    def stops(spec: ts.StopSpec | None, follow: bool = False) -> list[Range]:
        plan = plan_ranges(src, tps, ts.Offset(2), spec, now_ms=BASE + 10**6, follow=follow)
        return [plan[P0], plan[P1]]

    assert stops(ts.End()) == [Range(2, 10), Range(2, 10)]
    assert stops(ts.Offset(5)) == [Range(2, 5), Range(2, 5)]
    assert stops(ts.Offset(50)) == [Range(2, 10), Range(2, 10)]  # bounded: the end snapshot
    assert stops(ts.Offset(50), follow=True) == [Range(2, 50), Range(2, 50)]
    assert stops(ts.RecordCount(3)) == [Range(2, 5), Range(2, 5)]
    assert stops(ts.Timestamp(BASE + 5000)) == [Range(2, 3), Range(2, 2)]
    assert stops(None, follow=True) == [Range(2), Range(2)]
    future = stops(ts.Timestamp(BASE + 10**7), follow=True)
    assert future == [Range(2, None, BASE + 10**7)] * 2


def test_read_interleaves_partitions_by_timestamp(two_partitions: MemorySource) -> None:
    plan = plan_ranges(two_partitions, [P0, P1], ts.Beginning(), ts.End(), now_ms=BASE)
    out = collect(read_ranges(two_partitions, plan, follow=False))
    assert len(out) == 20
    assert [r.timestamp_ms for r in out] == sorted(r.timestamp_ms for r in out)
    assert [r.partition for r in out[:4]] == [0, 1, 0, 1]


def test_read_stops_at_the_end_snapshot_while_producers_write(
    two_partitions: MemorySource,
) -> None:
    src = two_partitions
    plan = plan_ranges(src, [P0, P1], ts.Beginning(), ts.End(), now_ms=BASE)
    src.appends = make_records("orders", 0, [BASE] * 50)[10:]  # keeps growing while we read
    out = collect(read_ranges(src, plan, follow=True))
    assert len(out) == 20


def test_empty_ranges_end_immediately(two_partitions: MemorySource) -> None:
    plan = plan_ranges(two_partitions, [P0, P1], ts.End(), ts.End(), now_ms=BASE)
    assert collect(read_ranges(two_partitions, plan, follow=False)) == []
    assert two_partitions.polls == 0


def test_follow_releases_a_busy_partition_while_another_is_quiet() -> None:
    clock = ManualClock(BASE)
    src = MemorySource({P0: [], P1: []})
    plan = {P0: Range(0), P1: Range(0)}
    src.appends = make_records("orders", 0, [BASE + i for i in range(5)])
    it = read_ranges(src, plan, follow=True, clock=clock, pacing=ReadPacing(max_delay_s=0.5))
    got: list[Record] = []
    for _ in range(10):
        clock.advance(200)
        item = next(it)
        if item is not None:
            got.append(item)
    assert [r.offset for r in got] == [0, 1, 2, 3, 4]


def test_future_stop_time_ends_on_the_wall_clock() -> None:
    clock = ManualClock(BASE)
    src = MemorySource({P0: make_records("orders", 0, [BASE - 10, BASE - 5])})
    plan = {P0: Range(0, None, BASE + 1000)}
    items = []
    for item in read_ranges(src, plan, follow=True, clock=clock):
        items.append(item)
        clock.advance(300)
    assert [r.offset for r in items if r is not None] == [0, 1]


def test_future_stop_time_ends_at_a_record_past_it() -> None:
    src = MemorySource({P0: make_records("orders", 0, [BASE, BASE + 5000, BASE + 1])})
    plan = {P0: Range(0, None, BASE + 1000)}
    out = collect(read_ranges(src, plan, follow=True, clock=ManualClock(BASE)))
    assert [r.offset for r in out] == [0]


@given(
    st.lists(
        st.lists(st.integers(min_value=0, max_value=1000), max_size=15).map(sorted),
        min_size=1,
        max_size=4,
    ),
    st.integers(min_value=1, max_value=5),
)
def test_merge_of_sorted_partitions_is_sorted_and_complete(
    parts: list[list[int]], batch: int
) -> None:
    data = {TopicPartition("t", p): make_records("t", p, stamps) for p, stamps in enumerate(parts)}
    src = MemorySource(data, batch=batch)
    plan = plan_ranges(src, list(data), ts.Beginning(), ts.End(), now_ms=0)
    out = collect(read_ranges(src, plan, follow=False))
    assert len(out) == sum(map(len, parts))
    keys = [(r.timestamp_ms, r.partition, r.offset) for r in out]
    assert keys == sorted(keys)


def test_merger_waits_for_every_running_partition() -> None:
    m = Merger([P0, P1])
    m.push(Record("orders", 0, 0, 5, None, b"", ()))
    assert m.pop_ready() == []
    m.push(Record("orders", 1, 0, 3, None, b"", ()))
    assert [r.partition for r in m.pop_ready()] == [1]
    m.finish(P1)
    assert [r.partition for r in m.pop_ready()] == [0]


def test_newest_breaks_timestamp_ties_by_the_end_of_each_partitions_run() -> None:
    t = 1_714_557_600_000
    p0 = [Record("orders", 0, o, t, None, b"a%d" % o, ()) for o in range(3)]
    p1 = [Record("orders", 1, o, t, None, b"b%d" % o, ()) for o in range(3)]
    later = Record("orders", 1, 3, t + 1, None, b"late", ())
    arrived = [*p0, *p1]
    # the last of each run come last (by arrival among them), a later timestamp after all
    assert [r.value for r in newest(arrived, 2)] == [b"a2", b"b2"]
    assert [r.value for r in newest([*arrived, later], 3)] == [b"a2", b"b2", b"late"]
    # within a partition, offsets decide
    assert [r.offset for r in newest(p0, 3)] == [0, 1, 2]
