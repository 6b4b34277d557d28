"""Reading as a member of a consumer group: what ``tail``/``consume --group G`` do.

The source joins G for the topics (:class:`~logstream.replay.source.GroupSource`); the group
decides which partitions this reader gets, and moves them as other members come and go, so
two readers with the same group split the partitions. A partition starts at G's committed
offset; one G never committed starts where the request's ``start`` points (``beginning`` /
``end`` are the consumer's ``auto_offset_reset``; other specs are resolved when the partition
is assigned), so no partition is ever skipped because it lacked a commit.

Commits: exactly what was *processed*: for every partition this reader holds, the offset after
the last record it yielded (or filtered out), or, where it yielded nothing, its position
(where its reset put it) unless a record fetched but not yet yielded sits before it. They are
made every ``commit_interval_s``, when a partition is revoked and at :meth:`MemberRead.commit`.

``last`` (tail -n N): the newest N records of the partitions held after joining, whatever
was committed; everything older in them counts as processed.

A partition that reached its stop (``--until``) is paused, so it is no longer fetched while
the others go on. While following, the topics are looked up every ``watch_interval_s``: one
deleted meanwhile ends the read with UnknownTopicOrPartitionError.

Order: within a partition, offsets; across partitions, each poll's records by timestamp (a
member has no fixed set of partitions to merge exactly). Single-threaded, like every source.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from logstream.errors import LogstreamError, UnknownTopicOrPartitionError
from logstream.replay import timespec as ts
from logstream.replay.merge import newest
from logstream.replay.ranges import (
    Range,
    plan_ranges,
    resolve_partitions,
    tail_ranges,
    topics_still_there,
)
from logstream.replay.source import GroupSource
from logstream.types import Record, TopicPartition

__all__ = ["MemberPlan", "MemberRead", "NoPartitionsAssigned"]


class NoPartitionsAssigned(Exception):
    """A bounded read joined its group but was given no partition in time."""


def _order(r: Record) -> tuple[int, str, int, int]:
    return (r.timestamp_ms, r.topic, r.partition, r.offset)


@dataclass
class MemberPlan:
    """What a member reads: where uncommitted partitions start, where each partition stops
    (``stops``, None = never), the last-N count, and whether to follow."""

    start: ts.StartSpec | None
    stops: dict[TopicPartition, Range] = field(default_factory=dict)
    last: int | None = None
    follow: bool = False


class MemberRead:
    """One member's read. :meth:`records` yields records (and ``None`` on idle polls);
    ``processed`` holds the next offset per partition after what was yielded."""

    def __init__(
        self,
        source: GroupSource,
        group: str,
        topics: tuple[str, ...],
        plan: MemberPlan,
        *,
        now_ms: Callable[[], int],
        poll_timeout_s: float = 0.2,
        join_timeout_s: float = 15.0,
        commit_interval_s: float = 2.0,
        watch_interval_s: float = 2.0,
    ) -> None:
        self.source = source
        self.group = group
        self.topics = topics
        self.plan = plan
        self.now_ms = now_ms
        self.poll_timeout_s = poll_timeout_s
        self.join_timeout_s = join_timeout_s
        self.commit_interval_s = commit_interval_s
        self.watch_interval_s = watch_interval_s
        self._last_watch = time.monotonic()
        self.processed: dict[TopicPartition, int] = {}
        self.read = 0
        # The first offset fetched but not processed, per partition (a stop reached, or the
        # caller stopped iterating mid-batch): commits never pass it.
        self._held: dict[TopicPartition, int] = {}
        self._done: set[TopicPartition] = set()
        self._last_commit = time.monotonic()
        self._pending: list[Record] = []  # the records of the poll that saw the assignment
        self._unprocessed: list[Record] = []  # the rest of the batch being yielded

    # -- joining -------------------------------------------------------------------------------

    def _reset(self) -> str:
        return "earliest" if isinstance(self.plan.start, ts.Beginning) else "latest"

    def _on_assign(self, tps: set[TopicPartition]) -> None:
        """Partitions the group never committed start where ``plan.start`` points."""
        done = tps & self._done
        if done:
            self.source.pause(sorted(done))  # given back after a rebalance: still done
        start = self.plan.start
        if start is None or isinstance(start, ts.Beginning | ts.End):
            return  # the consumer's auto_offset_reset does it
        committed = self.source.committed(sorted(tps))
        fresh = [tp for tp, off in committed.items() if off is None]
        if not fresh:
            return
        planned = plan_ranges(self.source, fresh, start, None, now_ms=self.now_ms(), follow=True)
        for tp, r in planned.items():
            self.source.seek(tp, r.start)

    def _on_revoke(self, tps: set[TopicPartition]) -> None:
        try:
            self.source.commit(self.commit_positions(tps))
        except UnknownTopicOrPartitionError:
            pass  # revoked because its topic was deleted: there is nothing left to commit to

    def _join(self) -> Iterator[None]:
        """Join and wait for a first assignment (a bounded read gives up after a while)."""
        self.source.join(
            self.group,
            list(self.topics),
            reset=self._reset(),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
        )
        deadline = time.monotonic() + self.join_timeout_s
        # A read that ends at offsets (--until end / -e, --until N) is bounded even while it
        # follows: "--until end always terminates" (docs/cli.md), also when the group's
        # other members hold every partition (consume -e used to wait for them forever).
        bounded = not self.plan.follow or any(r.stop is not None for r in self.plan.stops.values())
        while True:
            batch = self.source.poll(self.poll_timeout_s)
            if self.source.assignment():
                self._pending = batch
                return
            if bounded and time.monotonic() > deadline:
                raise NoPartitionsAssigned(
                    f"group {self.group} gave this reader no partition of "
                    f"{', '.join(self.topics)} within {self.join_timeout_s:.0f}s "
                    "(its other members may hold them all)"
                )
            yield None

    # -- reading -------------------------------------------------------------------------------

    def records(self) -> Iterator[Record | None]:
        yield from self._join()
        if self.plan.last is not None:
            yield from self._last_n(self.plan.last)
            if not self.plan.follow:
                return
        yield from self._follow()

    def _last_n(self, n: int) -> Iterator[Record | None]:
        self._pending = []  # read from the committed offsets, which last N ignores
        tps = sorted(self.source.assignment())
        ranges = tail_ranges(self.source, tps, n)
        for tp, r in ranges.items():
            self.source.seek(tp, r.start)
        batch_records: list[Record] = []  # in arrival order
        open_ = {tp for tp, r in ranges.items() if not r.empty}
        while open_:
            batch = self.source.poll(self.poll_timeout_s)
            for rec in batch:
                tp = TopicPartition(rec.topic, rec.partition)
                span = ranges.get(tp)
                if span is None or span.stop is None or not span.start <= rec.offset < span.stop:
                    continue
                self.read += 1
                batch_records.append(rec)
                if rec.offset + 1 >= span.stop:
                    open_.discard(tp)
            if not batch:
                yield None
        for tp, r in ranges.items():
            self.processed[tp] = r.stop if r.stop is not None else r.start
            self.source.seek(tp, self.processed[tp])
        yield from newest(batch_records, n)

    def _stopped(self, rec: Record) -> bool:
        """True (and the partition done) when ``rec`` is past its partition's stop."""
        tp = TopicPartition(rec.topic, rec.partition)
        r = self.plan.stops.get(tp)
        if r is None:
            return False
        past = (r.stop is not None and rec.offset >= r.stop) or (
            r.stop_ms is not None and rec.timestamp_ms >= r.stop_ms
        )
        if past:
            self._held.setdefault(tp, rec.offset)
            self._done.add(tp)
            self.source.pause([tp])
        return past

    def _finished(self) -> bool:
        """A bounded read ends when every partition it holds reached its stop."""
        if self.plan.follow and not self.plan.stops:
            return False
        held = self.source.assignment()
        for tp in held:
            if tp in self._done:
                continue
            r = self.plan.stops.get(tp)
            if r is None or r.stop is None:
                return False
            pos = self.processed.get(tp)
            if pos is None:
                pos = self.source.position(tp)
            if pos < r.stop:
                return False
            self._done.add(tp)
        return bool(held)

    def _follow(self) -> Iterator[Record | None]:
        while True:
            try:
                batch = self._pending or self.source.poll(self.poll_timeout_s)
            except UnknownTopicOrPartitionError:
                if self.plan.follow:  # a topic deleted while following: raised by name
                    topics_still_there(self.source, self.topics)
                raise
            self._pending = []
            batch.sort(key=_order)
            for i, rec in enumerate(batch):
                tp = TopicPartition(rec.topic, rec.partition)
                if tp in self._done or self._stopped(rec):
                    continue
                self.read += 1
                self.processed[tp] = rec.offset + 1
                self._unprocessed = batch[i + 1 :]
                yield rec
            self._unprocessed = []
            if time.monotonic() - self._last_commit > self.commit_interval_s:
                try:
                    self.commit()
                except LogstreamError:
                    pass  # e.g. fenced while the group rebalanced: the next commit retries
            if self._finished():
                return
            if self.plan.follow and time.monotonic() - self._last_watch > self.watch_interval_s:
                self._last_watch = time.monotonic()
                topics_still_there(self.source, self.topics)
            if not batch:
                yield None

    # -- committing ----------------------------------------------------------------------------

    def commit_positions(
        self, only: set[TopicPartition] | None = None
    ) -> dict[TopicPartition, int]:
        """What this reader has processed, per partition it holds (see the module docstring)."""
        held = self.source.assignment() if only is None else only
        out: dict[TopicPartition, int] = {}
        for tp in held:
            pos = self.processed.get(tp)
            if pos is None:
                pos = self.source.position(tp)
            out[tp] = pos
        for rec in self._unprocessed:
            tp = TopicPartition(rec.topic, rec.partition)
            if tp in out:
                out[tp] = min(out[tp], rec.offset)
        for tp, off in self._held.items():
            if tp in out:
                out[tp] = min(out[tp], off)
        return out

    def commit(self) -> None:
        self._last_commit = time.monotonic()
        positions = self.commit_positions()
        if positions:
            self.source.commit(positions)


def member_plan(
    source: GroupSource,
    topics: tuple[str, ...],
    partitions: tuple[int, ...] | None,
    start: ts.StartSpec | None,
    stop: ts.StopSpec | None,
    *,
    last: int | None,
    follow: bool,
    now_ms: int,
) -> MemberPlan:
    """The stops of every partition of ``topics`` (a snapshot of the end offsets for
    ``--until end``), planned once when the read starts."""
    if partitions is not None:
        raise ValueError("a group member reads the partitions the group assigns; no -p")
    if isinstance(stop, ts.RecordCount):
        raise ValueError("a group member cannot stop after +N records per partition")
    stops: dict[TopicPartition, Range] = {}
    if stop is not None or not follow:
        tps = resolve_partitions(source, topics, None)
        planned = plan_ranges(source, tps, ts.Beginning(), stop, now_ms=now_ms, follow=follow)
        stops = {tp: r for tp, r in planned.items() if r.stop is not None or r.stop_ms}
    return MemberPlan(start=start, stops=stops, last=last, follow=follow)
