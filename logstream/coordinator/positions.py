"""Where a group stands in a partition: lag, time lag and offset-reset targets.

Pure reads of one partition through ``PartitionReader`` (the broker's live ``PartitionLog``);
no locks of their own: the storage reader takes its own, and a log start that moves meanwhile
(retention) turns into "nothing there" rather than an error.
"""

from __future__ import annotations

from typing import Any

from logstream.codec import iter_batches
from logstream.coordinator.descriptions import PartitionLag, ResetSpec
from logstream.coordinator.offsets import CommittedOffset
from logstream.errors import OffsetOutOfRangeError
from logstream.storage.partition_reader import PartitionReader
from logstream.types import TopicPartition

Log = PartitionReader[Any]


def timestamp_at(log: Log, offset: int) -> int | None:
    """Timestamp of the record at ``offset`` (None when there is none)."""
    try:
        data = log.read(offset, 1)
    except OffsetOutOfRangeError:
        return None  # retention moved the log start meanwhile
    for batch in iter_batches(data):
        if batch.header.base_offset <= offset < batch.header.next_offset:
            return int(batch.timestamps[offset - batch.header.base_offset])
        if batch.header.base_offset > offset:
            return int(batch.timestamps[0])
    return None


def partition_lag(
    log: Log,
    tp: TopicPartition,
    committed: CommittedOffset | None,
    member_id: str,
    now_ms: int,
) -> PartitionLag:
    """Committed offset, end, lag in records and in milliseconds (-1: unknown) of ``tp``.

    Without a commit the lag counts from the log start: an idle group's backlog is shown."""
    start, end = int(log.log_start_offset), int(log.log_end_offset)
    position = max(committed.offset, start) if committed else start
    lag = max(0, end - position)
    time_lag = -1
    if lag > 0:
        ts = timestamp_at(log, position)
        time_lag = max(0, now_ms - ts) if ts is not None else -1
    return PartitionLag(
        tp.topic,
        tp.partition,
        member_id,
        committed.offset if committed else -1,
        end,
        lag,
        time_lag,
    )


def reset_target(log: Log, committed: CommittedOffset | None, target: ResetSpec) -> int:
    """The offset a reset to ``target`` moves to, clamped to [log start, log end]."""
    start, end = int(log.log_start_offset), int(log.log_end_offset)
    if target.kind == "earliest":
        new = start
    elif target.kind == "latest":
        new = end
    elif target.kind == "offset":
        new = target.value
    elif target.kind == "timestamp":
        new = first_offset_at(log, target.value, end)
    else:
        base = committed.offset if committed else start
        new = base + target.value
    return min(max(new, start), end)


def first_offset_at(log: Log, timestamp_ms: int, end: int) -> int:
    """The offset of the first record stamped at or after ``timestamp_ms`` (``end`` if none).

    Storage finds the first batch whose max timestamp qualifies; its records stamped earlier
    are skipped here by decoding that one batch."""
    found = log.offset_for_timestamp(timestamp_ms)
    if found is None or found < 0:
        return end
    try:
        data = log.read(int(found), 1)
    except OffsetOutOfRangeError:
        return int(found)
    for batch in iter_batches(data):
        later = (batch.timestamps >= timestamp_ms).nonzero()[0]
        if later.size:
            return max(int(found), batch.header.base_offset + int(later[0]))
        return batch.header.next_offset
    return int(found)
