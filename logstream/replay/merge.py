"""Reading planned ranges in timestamp order.

:class:`Merger` interleaves records of several partitions (and topics) by timestamp: it
releases a record only when every partition still running has something buffered, so the
output is globally ordered; when the source goes idle in follow mode it flushes what it has (a
quiet partition must not hold the others back forever). :func:`read_ranges` drives a
:class:`~logstream.replay.source.RecordSource` over the ranges and yields records, and
``None`` on idle polls so the caller can refresh a status line or notice Ctrl-C.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import NamedTuple

from logstream.clock import SYSTEM_CLOCK, Clock
from logstream.errors import UnknownTopicOrPartitionError
from logstream.replay.ranges import Range
from logstream.replay.source import RecordSource
from logstream.types import Record, TopicPartition

__all__ = ["Merger", "ReadPacing", "newest", "read_ranges"]


def _order(r: Record) -> tuple[int, str, int, int]:
    return (r.timestamp_ms, r.topic, r.partition, r.offset)


def newest(records: Iterable[Record], n: int) -> list[Record]:
    """The newest ``n`` of ``records`` (given in arrival order, each partition in offset
    order), oldest first.

    A producer stamps every record of a batch with the batch's time, so records of several
    partitions often share a timestamp. Ties are broken so that the last records produced
    come last when that can be told: by offset within a partition, and across partitions by
    how close each record is to the end of its partition's run of equal timestamps (the last
    record of every run is newer than the one before it in the same run), then by arrival."""
    items = list(records)
    if n <= 0 or not items:
        return []
    after: dict[int, int] = {}  # index -> records after it in its partition with its timestamp
    runs: dict[tuple[str, int, int], int] = {}
    for i in range(len(items) - 1, -1, -1):
        r = items[i]
        key = (r.topic, r.partition, r.timestamp_ms)
        after[i] = runs.get(key, 0)
        runs[key] = after[i] + 1
    order = sorted(range(len(items)), key=lambda i: (items[i].timestamp_ms, -after[i], i))
    return [items[i] for i in order[-n:]]


class Merger:
    """Interleave per-partition streams by (timestamp, topic, partition, offset).

    ``push`` records as they arrive, ``finish`` a partition when it has nothing more to give;
    ``pop_ready`` releases records while every unfinished partition has one buffered (so the
    order is exact), ``drain`` releases everything buffered (idle flush / the end).
    """

    def __init__(self, tps: Iterable[TopicPartition]) -> None:
        self._buf: dict[TopicPartition, deque[Record]] = {tp: deque() for tp in tps}
        self._running: set[TopicPartition] = set(self._buf)

    def push(self, record: Record) -> None:
        tp = TopicPartition(record.topic, record.partition)
        self._buf.setdefault(tp, deque()).append(record)

    def finish(self, tp: TopicPartition) -> None:
        self._running.discard(tp)

    def add(self, tp: TopicPartition) -> None:
        """A partition that joins the read (added to its topic while following)."""
        self._buf.setdefault(tp, deque())
        self._running.add(tp)

    @property
    def buffered(self) -> int:
        return sum(len(q) for q in self._buf.values())

    def pop_ready(self) -> list[Record]:
        out: list[Record] = []
        heads = [(_order(q[0]), tp) for tp, q in self._buf.items() if q]
        heapq.heapify(heads)
        while heads:
            if any(not self._buf[tp] for tp in self._running):
                break
            _, tp = heapq.heappop(heads)
            q = self._buf[tp]
            out.append(q.popleft())
            if q:
                heapq.heappush(heads, (_order(q[0]), tp))
        return out

    def drain(self) -> list[Record]:
        out = [r for q in self._buf.values() for r in q]
        for q in self._buf.values():
            q.clear()
        out.sort(key=_order)
        return out


class ReadPacing(NamedTuple):
    """How long one poll waits, how long a record may wait for a quiet partition in follow
    mode, how many records may wait in all before they are released out of order, and how
    often a follower looks for partitions added (or topics deleted) meanwhile."""

    poll_timeout_s: float = 0.2
    max_delay_s: float = 0.5
    max_buffered: int = 100_000
    watch_interval_s: float = 2.0


PartitionWatch = Callable[[], Mapping[TopicPartition, Range]]
"""Called while following: the ranges of partitions that appeared since the read started
(each call returns only new ones); raises (e.g. UnknownTopicOrPartitionError) to end the
read when a topic went away."""


class _RangeTracker:
    """Which partitions of a read are done, feeding the merger as records arrive."""

    def __init__(self, active: dict[TopicPartition, Range], merger: Merger) -> None:
        self.active = active
        self.merger = merger
        self.done: set[TopicPartition] = set()
        self.next: dict[TopicPartition, int] = {tp: r.start for tp, r in active.items()}

    def add(self, ranges: Mapping[TopicPartition, Range]) -> None:
        for tp, r in ranges.items():
            self.active[tp] = r
            self.next[tp] = r.start
            self.merger.add(tp)

    def positions(self) -> dict[TopicPartition, int]:
        """The next offset of every partition still being read."""
        return {tp: off for tp, off in self.next.items() if tp not in self.done}

    @property
    def finished(self) -> bool:
        return len(self.done) >= len(self.active)

    def _finish(self, tp: TopicPartition) -> None:
        self.done.add(tp)
        self.merger.finish(tp)

    def take(self, rec: Record) -> None:
        tp = TopicPartition(rec.topic, rec.partition)
        r = self.active.get(tp)
        if r is None or tp in self.done or rec.offset < r.start:
            return
        if (r.stop is not None and rec.offset >= r.stop) or (
            r.stop_ms is not None and rec.timestamp_ms >= r.stop_ms
        ):
            self._finish(tp)
            return
        self.merger.push(rec)
        self.next[tp] = rec.offset + 1
        if r.stop is not None and rec.offset + 1 >= r.stop:
            self._finish(tp)

    def expire(self, now_ms: int) -> None:
        """Finish the partitions whose ``stop_ms`` has passed on the wall clock."""
        for tp, r in self.active.items():
            if tp not in self.done and r.stop_ms is not None and now_ms >= r.stop_ms:
                self._finish(tp)


def read_ranges(
    source: RecordSource,
    ranges: Mapping[TopicPartition, Range],
    *,
    follow: bool,
    pacing: ReadPacing = ReadPacing(),
    clock: Clock = SYSTEM_CLOCK,
    watch: PartitionWatch | None = None,
) -> Iterator[Record | None]:
    """Yield records of ``ranges`` in timestamp order; ``None`` on every idle poll.

    With ``follow`` and ``watch``, partitions ``watch`` reports are read from then on too.

    Ends when every partition reached its stop (or a future ``stop_ms`` passed on the wall
    clock). A partition without a stop never ends, so without ``follow`` every range must be
    bounded; with ``follow`` unbounded ranges run until the caller stops iterating.

    Order is exact while every partition keeps up. In follow mode a record waits at most
    ``pacing.max_delay_s`` for a quiet partition before it is released anyway; more than
    ``pacing.max_buffered`` records waiting are released too (bounded memory, best-effort
    order).
    """
    if not follow and any(r.stop is None and r.stop_ms is None for r in ranges.values()):
        raise ValueError("an unbounded range needs follow=True")
    active = {tp: r for tp, r in ranges.items() if not r.empty}
    if not active:
        return
    merger = Merger(active)
    tracker = _RangeTracker(active, merger)
    source.assign({tp: r.start for tp, r in active.items()})
    idle_flush = follow or any(r.stop is None for r in active.values())
    last_release = last_watch = clock.monotonic()
    while not tracker.finished:
        if (
            watch is not None
            and follow
            and clock.monotonic() - last_watch > pacing.watch_interval_s
        ):
            last_watch = clock.monotonic()
            added = {tp: r for tp, r in watch().items() if tp not in active and not r.empty}
            if added:
                tracker.add(added)
                source.assign(tracker.positions())
        try:
            batch = source.poll(pacing.poll_timeout_s)
        except UnknownTopicOrPartitionError:
            if watch is not None and follow:
                watch()  # a topic deleted while following: raised by name, as the watch does
            raise
        for rec in batch:
            tracker.take(rec)
        tracker.expire(clock.now_ms())
        ready = merger.pop_ready()
        if ready or not merger.buffered:
            last_release = clock.monotonic()
        yield from ready
        if merger.buffered > pacing.max_buffered or (
            idle_flush and (not batch or clock.monotonic() - last_release > pacing.max_delay_s)
        ):
            yield from merger.drain()
            last_release = clock.monotonic()
        if not batch:
            yield None
    yield from merger.drain()
