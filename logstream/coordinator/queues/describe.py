"""What ``describe`` shows for a queue group: depth per partition and in total.

Counts of records in the window by state (available, acquired = in flight, delayed,
waiting for the dead-letter write), totals since the group was created (acknowledged,
dead-lettered, dropped, redelivered = deliveries after the first, expired), the earliest
due time of a delayed record, records in the log not
yet read into the window (``unread``, when the caller passes the log end offsets), and the
age of the oldest unfinished record: the figure to alert on. A partition whose window holds
nothing unfinished but has unread records (no member has fetched since they were written:
every worker down) takes that age from the first unread record, through the caller's
``first_unread_ms``. ``lost_to_retention`` counts records the log deleted (retention)
before the group finished them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from logstream.coordinator.queues import views
from logstream.coordinator.queues.columns import ACQUIRED, AVAILABLE, DEAD_PENDING, DELAYED
from logstream.coordinator.queues.settings import QueueSettings

if TYPE_CHECKING:
    from logstream.coordinator.queues.group import QueueGroup


@dataclass(frozen=True)
class QueueDepth:
    """One partition (or the total, with ``topic="*"``, ``partition=-1``)."""

    topic: str
    partition: int
    start_offset: int
    end_offset: int
    available: int  # in the window, ready now
    unread: int  # in the log after the window (also waiting); 0 if unknown
    acquired: int
    delayed: int
    dead_letter_pending: int
    parked: int
    acknowledged: int
    dead_lettered: int
    dropped: int
    redelivered: int
    oldest_unfinished_offset: int | None
    oldest_unfinished_age_ms: int | None
    expired: int = 0  # expired before delivery (dead-lettered or dropped), since creation
    next_due_ms: int | None = None  # earliest due time of a delayed record
    lost_to_retention: int = 0

    @property
    def depth(self) -> int:
        """Records not finished: waiting (available, unread, delayed) or in flight."""
        return self.available + self.unread + self.delayed + self.acquired


@dataclass(frozen=True)
class QueueGroupDescription:
    group: str
    settings: QueueSettings
    dead_letter_topic: str
    partitions: list[QueueDepth]
    total: QueueDepth
    members: dict[str, int] = field(default_factory=dict)  # member id -> records held


def describe(
    group: QueueGroup,
    log_end_offsets: Mapping[tuple[str, int], int] | None = None,
    first_unread_ms: Callable[[str, int, int], int | None] | None = None,
) -> QueueGroupDescription:
    """Tick the group (so counts are current), then count. ``first_unread_ms(topic,
    partition, offset)``: the timestamp of the record at ``offset`` in the log (None if
    unknown), asked only for a partition with unread records and nothing unfinished in
    its window."""
    group.tick()
    now = group.now_ms()
    parts: list[QueueDepth] = []
    held: dict[str, int] = dict.fromkeys(group.members(), 0)
    slots = group.member_slots()
    for topic, partition, w in group.each_window():
        counts = views.state_counts(w)
        oldest = views.oldest_unfinished(w)
        log_end = (log_end_offsets or {}).get((topic, partition), w.end_offset)
        unread = max(log_end - w.end_offset, 0)
        if oldest is None and unread and first_unread_ms is not None:
            stamp = first_unread_ms(topic, partition, w.end_offset)
            oldest = None if stamp is None else (w.end_offset, stamp)
        for slot, n in views.holdings(w).items():
            if slot in slots:
                held[slots[slot]] += n
        parts.append(
            QueueDepth(
                topic,
                partition,
                w.start_offset,
                w.end_offset,
                available=int(counts[AVAILABLE]),
                unread=unread,
                acquired=int(counts[ACQUIRED]),
                delayed=int(counts[DELAYED]),
                dead_letter_pending=int(counts[DEAD_PENDING]),
                parked=w.parked_count,
                acknowledged=w.acked_total,
                dead_lettered=w.dead_total,
                dropped=w.dropped_total,
                redelivered=w.redelivered_total,
                oldest_unfinished_offset=None if oldest is None else oldest[0],
                oldest_unfinished_age_ms=None
                if oldest is None or oldest[1] <= 0
                else max(now - oldest[1], 0),
                expired=w.expired_total,
                next_due_ms=views.next_due(w),
                lost_to_retention=w.lost_total,
            )
        )
    return QueueGroupDescription(
        group.name, group.settings, group.dead_letter_topic, parts, _total(parts), held
    )


def _total(parts: list[QueueDepth]) -> QueueDepth:
    def add(name: str) -> int:
        return sum(getattr(p, name) for p in parts)

    dues = [p.next_due_ms for p in parts if p.next_due_ms is not None]
    ages = [p.oldest_unfinished_age_ms for p in parts if p.oldest_unfinished_age_ms is not None]
    return QueueDepth(
        "*",
        -1,
        start_offset=-1,
        end_offset=-1,
        available=add("available"),
        unread=add("unread"),
        acquired=add("acquired"),
        delayed=add("delayed"),
        dead_letter_pending=add("dead_letter_pending"),
        parked=add("parked"),
        acknowledged=add("acknowledged"),
        dead_lettered=add("dead_lettered"),
        dropped=add("dropped"),
        redelivered=add("redelivered"),
        oldest_unfinished_offset=None,
        oldest_unfinished_age_ms=max(ages) if ages else None,
        expired=add("expired"),
        next_due_ms=min(dues) if dues else None,
        lost_to_retention=add("lost_to_retention"),
    )
