"""The reading engine behind ``tail``, ``consume`` and ``export``.

1. :func:`plan_ranges` turns a start spec and a stop spec (:mod:`logstream.cli.timespec`) into
   one :class:`Range` per partition, asking the source for begin/end offsets and
   offsets-for-times once. ``--until end`` is resolved here: the end offsets are a snapshot
   taken when the command starts, so "exit when caught up" terminates even while producers
   keep writing.
2. :class:`Merger` interleaves records of several partitions (and topics) in timestamp order:
   it releases a record only when every partition still running has something buffered, so
   the output is globally ordered; when the source goes idle in follow mode it flushes what it
   has (a quiet partition must not hold the others back forever).
3. :func:`read` drives a :class:`RecordSource` over the ranges and yields records (and
   ``None`` on idle ticks, so the caller can refresh a status line or notice Ctrl-C).

The source is a small protocol with two implementations in :mod:`logstream.cli.sources`:
over the client (a broker) and over ``logstream.storage`` (``--data-dir``).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from logstream.cli import timespec as ts
from logstream.clock import SYSTEM_CLOCK, Clock
from logstream.types import Record, TopicPartition

__all__ = ["Merger", "Range", "RecordSource", "plan_ranges", "read", "tail_ranges"]


class RecordSource(Protocol):
    """What the reading engine needs from a broker or a data directory."""

    def partitions_for(self, topic: str) -> list[int]:
        """Partition numbers of ``topic``; raises UnknownTopicOrPartitionError."""
        ...

    def beginning_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]: ...

    def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]: ...

    def offsets_for_times(
        self, query: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, int | None]:
        """First offset whose timestamp is >= the given ms; None when there is none yet."""
        ...

    def assign(self, positions: Mapping[TopicPartition, int]) -> None:
        """Read these partitions from these offsets (replacing any earlier assignment)."""
        ...

    def poll(self, timeout_s: float) -> list[Record]:
        """Records from the assigned partitions, in offset order per partition; [] on timeout."""
        ...

    def close(self) -> None: ...


@dataclass
class Range:
    """What to read from one partition: offsets [start, stop), and optionally only records
    before ``stop_ms`` (a time in the future when the command started)."""

    start: int
    stop: int | None = None
    stop_ms: int | None = None

    @property
    def empty(self) -> bool:
        return self.stop is not None and self.start >= self.stop


def plan_ranges(
    source: RecordSource,
    tps: Sequence[TopicPartition],
    start: ts.StartSpec,
    stop: ts.StopSpec | None,
    *,
    now_ms: int,
    follow: bool = False,
) -> dict[TopicPartition, Range]:
    """Resolve ``--from``/``--until`` against the current offsets of each partition.

    Without ``follow`` every range also stops at the end snapshot: a bounded read never waits
    for records that do not exist yet."""
    begin = source.beginning_offsets(tps)
    end = source.end_offsets(tps)
    starts: dict[TopicPartition, int] = {}
    if isinstance(start, ts.Timestamp):
        found = source.offsets_for_times({tp: start.ms for tp in tps})
    for tp in tps:
        lo, hi = begin[tp], end[tp]
        if isinstance(start, ts.Beginning):
            pos = lo
        elif isinstance(start, ts.End):
            pos = hi
        elif isinstance(start, ts.Offset):
            pos = max(lo, start.offset)
        elif isinstance(start, ts.FromEnd):
            pos = max(lo, hi - start.count)
        elif isinstance(start, ts.FromBeginning):
            pos = lo + start.count
        else:
            off = found.get(tp)
            pos = hi if off is None else max(lo, off)
        starts[tp] = pos

    ranges = {tp: Range(starts[tp]) for tp in tps}
    _apply_stop(source, ranges, end, stop, now_ms)
    if not follow:
        for tp, r in ranges.items():
            r.stop = end[tp] if r.stop is None else min(r.stop, end[tp])
            r.stop_ms = None
    return ranges


def _apply_stop(
    source: RecordSource,
    ranges: dict[TopicPartition, Range],
    end: Mapping[TopicPartition, int],
    stop: ts.StopSpec | None,
    now_ms: int,
) -> None:
    if stop is None:
        return
    if isinstance(stop, ts.Timestamp) and stop.ms > now_ms:
        for r in ranges.values():
            r.stop_ms = stop.ms
        return
    tps = list(ranges)
    if isinstance(stop, ts.Timestamp):
        stops = source.offsets_for_times({tp: stop.ms for tp in tps})
    for tp, r in ranges.items():
        if isinstance(stop, ts.End):
            r.stop = end[tp]
        elif isinstance(stop, ts.Offset):
            r.stop = stop.offset
        elif isinstance(stop, ts.RecordCount):
            r.stop = r.start + stop.count
        else:
            off = stops.get(tp)
            r.stop = end[tp] if off is None else off


def tail_ranges(
    source: RecordSource, tps: Sequence[TopicPartition], n: int
) -> dict[TopicPartition, Range]:
    """Ranges that surely hold the last ``n`` records across the partitions: the last ``n``
    of each (the caller keeps the newest ``n`` by timestamp), up to the end snapshot."""
    begin = source.beginning_offsets(tps)
    end = source.end_offsets(tps)
    return {tp: Range(max(begin[tp], end[tp] - n), end[tp]) for tp in tps}


def _order(r: Record) -> tuple[int, str, int, int]:
    return (r.timestamp_ms, r.topic, r.partition, r.offset)


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


def read(
    source: RecordSource,
    ranges: Mapping[TopicPartition, Range],
    *,
    follow: bool,
    poll_timeout_s: float = 0.2,
    max_delay_s: float = 0.5,
    max_buffered: int = 100_000,
    clock: Clock = SYSTEM_CLOCK,
) -> Iterator[Record | None]:
    """Yield records of ``ranges`` in timestamp order; ``None`` on every idle poll.

    Ends when every partition reached its stop (or a future ``stop_ms`` passed on the wall
    clock). A partition without a stop never ends, so without ``follow`` every range must be
    bounded; with ``follow`` unbounded ranges run until the caller stops iterating.

    Order is exact while every partition keeps up. In follow mode a record waits at most
    ``max_delay_s`` for a quiet partition before it is released anyway; more than
    ``max_buffered`` records waiting are released too (bounded memory, best-effort order).
    """
    if not follow and any(r.stop is None and r.stop_ms is None for r in ranges.values()):
        raise ValueError("an unbounded range needs follow=True")
    active = {tp: r for tp, r in ranges.items() if not r.empty}
    merger = Merger(active)
    if not active:
        return
    source.assign({tp: r.start for tp, r in active.items()})
    done: set[TopicPartition] = set()
    idle_flush = follow or any(r.stop is None for r in active.values())
    last_release = clock.monotonic()
    while len(done) < len(active):
        batch = source.poll(poll_timeout_s)
        now_ms = clock.now_ms()
        for rec in batch:
            tp = TopicPartition(rec.topic, rec.partition)
            r = active.get(tp)
            if r is None or tp in done or rec.offset < r.start:
                continue
            if (r.stop is not None and rec.offset >= r.stop) or (
                r.stop_ms is not None and rec.timestamp_ms >= r.stop_ms
            ):
                done.add(tp)
                merger.finish(tp)
                continue
            merger.push(rec)
            if r.stop is not None and rec.offset + 1 >= r.stop:
                done.add(tp)
                merger.finish(tp)
        for tp, r in active.items():
            if tp not in done and r.stop_ms is not None and now_ms >= r.stop_ms:
                done.add(tp)
                merger.finish(tp)
        ready = merger.pop_ready()
        if ready or not merger.buffered:
            last_release = clock.monotonic()
        yield from ready
        if merger.buffered > max_buffered or (
            idle_flush and (not batch or clock.monotonic() - last_release > max_delay_s)
        ):
            yield from merger.drain()
            last_release = clock.monotonic()
        if not batch:
            yield None
    yield from merger.drain()
