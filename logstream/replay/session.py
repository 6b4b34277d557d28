"""One replay: a request, a source, and the records it yields.

:class:`ReplayRequest` says what to read; :class:`Replay` plans the ranges, reads them in
timestamp order, filters and counts. Three modes:

- **last N** (no ``start``, no ``group``): the newest ``last`` matching records across
  the partitions (by timestamp), then, with ``follow``, everything that arrives after the end
  snapshot taken at the start;
- **range** (``start`` given, no ``group``): from ``start`` (default: the end) to
  ``stop`` (default: the end snapshot, or never with ``follow``);
- **group member** (``group`` given): the source joins the consumer group and reads the
  partitions the group assigns, from the group's commits (``start`` for partitions it never
  committed; ``last`` given: the last N of its partitions instead), committing what it
  processed (:mod:`logstream.replay.member`).

Single-threaded: the caller iterates :meth:`Replay.records` and then calls :meth:`Replay.commit`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from logstream.clock import SYSTEM_CLOCK, Clock
from logstream.errors import LogstreamError
from logstream.replay import timespec as ts
from logstream.replay.filters import RecordFilter
from logstream.replay.member import MemberRead, member_plan
from logstream.replay.merge import ReadPacing, newest, read_ranges
from logstream.replay.ranges import (
    Range,
    plan_ranges,
    resolve_partitions,
    tail_ranges,
    topics_still_there,
)
from logstream.replay.source import GroupSource, RecordSource
from logstream.types import Record, TopicPartition

__all__ = ["DEFAULT_LAST", "Replay", "ReplayRequest", "ReplayStats"]

DEFAULT_LAST = 10


@dataclass(frozen=True)
class ReplayRequest:
    """What to read. ``limit`` ends the replay after that many records passed the filter."""

    topics: tuple[str, ...]
    start: ts.StartSpec | None = None
    stop: ts.StopSpec | None = None
    partitions: tuple[int, ...] | None = None
    last: int | None = None  # None: DEFAULT_LAST without a group, resume with one
    follow: bool = False
    group: str | None = None
    limit: int | None = None

    @property
    def last_n(self) -> bool:
        """True in last-N mode (no start, no group to resume from)."""
        return self.start is None and self.group is None

    def __post_init__(self) -> None:
        if self.last_n and self.stop is not None and not isinstance(self.stop, ts.End):
            raise ValueError("without a start, the only stop is the end")
        if self.last is not None and self.last < 0:
            raise ValueError("last must be >= 0")


@dataclass
class ReplayStats:
    """Counts of one replay: records read from the source, records yielded, and the next
    offset of every partition read so far (what a group commits)."""

    read: int = 0
    emitted: int = 0
    positions: dict[TopicPartition, int] = field(default_factory=dict)


class Replay:
    """A request run over a source. Constructing it resolves the partitions (raising
    UnknownTopicOrPartitionError); :meth:`records` does the reading."""

    def __init__(
        self,
        source: RecordSource,
        request: ReplayRequest,
        *,
        record_filter: RecordFilter | None = None,
        clock: Clock = SYSTEM_CLOCK,
        pacing: ReadPacing = ReadPacing(),
    ) -> None:
        self.member: MemberRead | None = None
        if request.group is not None:
            if not isinstance(source, GroupSource):
                raise TypeError(f"{type(source).__name__} cannot read for a consumer group")
            self.member = MemberRead(
                source,
                request.group,
                request.topics,
                member_plan(
                    source,
                    request.topics,
                    request.partitions,
                    request.start,
                    request.stop,
                    last=request.last,
                    follow=request.follow,
                    now_ms=clock.now_ms(),
                ),
                now_ms=clock.now_ms,
                poll_timeout_s=pacing.poll_timeout_s,
            )
        self.source = source
        self.request = request
        self.filter = record_filter if record_filter is not None else RecordFilter()
        self.clock = clock
        self.pacing = pacing
        self.stats = ReplayStats()
        self.partitions = resolve_partitions(source, request.topics, request.partitions)

    def records(self) -> Iterator[Record | None]:
        """The records that pass the filter, in timestamp order, until the range ends or
        ``limit`` records were yielded. While following, ``None`` marks an idle poll (and the
        moment the last-N history is out)."""
        if self.member is not None:
            items = self._member(self.member)
        else:
            items = self._last_n() if self.request.last_n else self._range()
        for item in items:
            if item is None:
                yield None
                continue
            if not self.filter(item):
                continue
            self.stats.emitted += 1
            yield item
            if self.request.limit is not None and self.stats.emitted >= self.request.limit:
                return

    def latest_ends(self) -> dict[TopicPartition, int]:
        """The newest end offsets known, for a lag display: the consumer's high watermarks
        when it has them all, else asked; {} when asking fails (a display must not fail)."""
        highwater = getattr(self.source, "highwater", None)
        if highwater is not None:
            found = {tp: highwater(tp) for tp in self.partitions}
            if all(v is not None for v in found.values()):
                return {tp: v for tp, v in found.items() if v is not None}
        try:
            return dict(self.source.end_offsets(list(self.partitions)))
        except Exception:
            return {}

    def commit(self) -> None:
        """Commit what was processed to the group (nothing without a group)."""
        if self.member is not None:
            self.member.commit()

    # -- steps --------------------------------------------------------------------------------

    def _read(self, plan: dict[TopicPartition, Range], follow: bool) -> Iterator[Record | None]:
        """Every record of ``plan`` (counted, positions kept); idle ticks only when following."""
        watch = self._watch_partitions if follow else None
        for item in read_ranges(
            self.source, plan, follow=follow, pacing=self.pacing, clock=self.clock, watch=watch
        ):
            if item is None:
                if follow:
                    yield None
                continue
            self.stats.read += 1
            self.stats.positions[TopicPartition(item.topic, item.partition)] = item.offset + 1
            yield item

    def _watch_partitions(self) -> dict[TopicPartition, Range]:
        """While following: partitions added to the topics since the read started (read from
        their log start: all of it is new); a topic deleted meanwhile ends the read."""
        request = self.request
        if not topics_still_there(self.source, request.topics):
            return {}
        stop = request.stop
        future = isinstance(stop, ts.Timestamp) and stop.ms > self.clock.now_ms()
        if stop is not None and not future:
            return {}  # a stop planned from offsets: partitions created since hold none of it
        try:
            found = resolve_partitions(self.source, request.topics, request.partitions)
            new = [tp for tp in found if tp not in set(self.partitions)]
            begin = self.source.beginning_offsets(new) if new else {}
        except LogstreamError:
            return {}
        if not new:
            return {}
        self.partitions.extend(new)
        stop_ms = stop.ms if isinstance(stop, ts.Timestamp) else None
        return {tp: Range(begin[tp], None, stop_ms) for tp in new}

    def _member(self, member: MemberRead) -> Iterator[Record | None]:
        self.stats.positions = member.processed  # the lag on the status line
        for item in member.records():
            self.stats.read = member.read
            yield item

    def _last_n(self) -> Iterator[Record | None]:
        n = DEFAULT_LAST if self.request.last is None else self.request.last
        plan = tail_ranges(self.source, self.partitions, n)
        matching: list[Record] = []
        if n > 0:
            matching.extend(
                r
                for r in self._read(plan, follow=False)
                if r is not None and self.filter.matcher(r)
            )
        yield from newest(matching, n)
        if self.request.follow and not isinstance(self.request.stop, ts.End):
            yield None
            after = {tp: Range(r.stop or r.start) for tp, r in plan.items()}
            yield from self._read(after, follow=True)

    def _range(self) -> Iterator[Record | None]:
        request = self.request
        start = request.start if request.start is not None else ts.End()
        stop = request.stop if (request.stop is not None or request.follow) else ts.End()
        plan = plan_ranges(
            self.source,
            self.partitions,
            start,
            stop,
            now_ms=self.clock.now_ms(),
            follow=request.follow,
        )
        yield from self._read(plan, follow=request.follow)
