"""Range planning: which offsets of each partition a read covers.

:func:`plan_ranges` turns a start spec and a stop spec (:mod:`logstream.replay.timespec`) into
one :class:`Range` per partition, asking the source for begin/end offsets and
offsets-for-times once. ``End`` as a stop is resolved here: the end offsets are a snapshot
taken when the read is planned, so "exit when caught up" terminates even while producers keep
writing. :func:`tail_ranges` covers the last N records; :func:`resolve_partitions` turns
topic names (and an optional partition filter) into partitions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from logstream.errors import LogstreamError, UnknownTopicOrPartitionError
from logstream.replay import timespec as ts
from logstream.replay.source import RecordSource
from logstream.types import TopicPartition

__all__ = ["Range", "plan_ranges", "resolve_partitions", "tail_ranges"]


@dataclass
class Range:
    """What to read from one partition: offsets [start, stop), and optionally only records
    before ``stop_ms`` (a time in the future when the read was planned)."""

    start: int
    stop: int | None = None
    stop_ms: int | None = None

    @property
    def empty(self) -> bool:
        return self.stop is not None and self.start >= self.stop


def resolve_partitions(
    source: RecordSource, topics: Sequence[str], only: Sequence[int] | None
) -> list[TopicPartition]:
    """Every partition of ``topics`` (each topic once), or only the partitions in ``only``;
    UnknownTopicOrPartitionError names those a topic does not have."""
    tps: list[TopicPartition] = []
    for topic in dict.fromkeys(topics):
        parts = source.partitions_for(topic)
        if only is not None:
            missing = sorted(set(only) - set(parts))
            if missing:
                raise UnknownTopicOrPartitionError(
                    f"topic {topic!r} has no partition {', '.join(map(str, missing))} "
                    f"({len(parts)} partitions)"
                )
            parts = [p for p in parts if p in set(only)]
        tps.extend(TopicPartition(topic, p) for p in parts)
    return tps


def _start_offset(start: ts.StartSpec, lo: int, hi: int, found: int | None) -> int:
    """Where ``start`` points in a partition holding [lo, hi); ``found`` answers a Timestamp."""
    if isinstance(start, ts.Beginning):
        return lo
    if isinstance(start, ts.End):
        return hi
    if isinstance(start, ts.Offset):
        return max(lo, start.offset)
    if isinstance(start, ts.FromEnd):
        return max(lo, hi - start.count)
    if isinstance(start, ts.FromBeginning):
        return lo + start.count
    return hi if found is None else max(lo, found)


def plan_ranges(
    source: RecordSource,
    tps: Sequence[TopicPartition],
    start: ts.StartSpec,
    stop: ts.StopSpec | None,
    *,
    now_ms: int,
    follow: bool = False,
) -> dict[TopicPartition, Range]:
    """Resolve a start and a stop against the current offsets of each partition.

    Without ``follow`` every range also stops at the end snapshot: a bounded read never waits
    for records that do not exist yet."""
    begin = source.beginning_offsets(tps)
    end = source.end_offsets(tps)
    found: Mapping[TopicPartition, int | None] = {}
    if isinstance(start, ts.Timestamp):
        found = source.offsets_for_times({tp: start.ms for tp in tps})
    ranges = {tp: Range(_start_offset(start, begin[tp], end[tp], found.get(tp))) for tp in tps}
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
    stops: Mapping[TopicPartition, int | None] = {}
    if isinstance(stop, ts.Timestamp):
        stops = source.offsets_for_times({tp: stop.ms for tp in ranges})
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


def topics_still_there(source: RecordSource, topics: Sequence[str]) -> bool:
    """While following: look the topics up again (fresh partition counts where the source
    caches them). Raises UnknownTopicOrPartitionError naming a topic deleted meanwhile;
    False when the broker did not answer now (a follower goes on and asks again later)."""
    refresh = getattr(source, "refresh_partitions", None)
    if refresh is not None:
        refresh()
    for topic in topics:
        try:
            source.partitions_for(topic)
        except UnknownTopicOrPartitionError:
            msg = f"topic {topic!r} was deleted while following"
            raise UnknownTopicOrPartitionError(msg) from None
        except LogstreamError:
            return False
    return True
