"""Redrive: copy a queue group's dead letters back to their source topic (or another).

Reads the group's dead-letter topic, keeps the letters of this group (header
``logstream.dlq.group``) not redriven yet, optionally only some reasons, and writes each
back with its key, value and original headers (the ``logstream.dlq.*`` headers and the
spent schedule headers, :data:`SPENT`, dropped) to
its source topic and partition (or ``to_topic``, same partition number modulo its count).
The dead-letter offsets redriven are appended to ``__queue_state`` before the call returns
(under the group's lock), so each letter goes back at most once, across restarts too. A
dry run (``execute=False``) reads and reports only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from logstream.broker.notify import AppendNotifier
from logstream.broker.queue_state import Managed, QueueStateLog, iter_dead_letters, read_range
from logstream.codec import DELIVER_AT, EXPIRES_AT, encode_batch, encode_headers, iter_batches
from logstream.coordinator.queues.deadletter import (
    HEADER_DELIVERIES,
    HEADER_GROUP,
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_REASON,
    HEADER_REASON_TEXT,
    HEADER_TIME,
    HEADER_TOPIC,
)
from logstream.errors import InvalidRequestError, UnknownTopicOrPartitionError
from logstream.storage import LogManager
from logstream.storage.config import is_internal_topic

DLQ_HEADER_PREFIX = "logstream.dlq."
RECENT_SCAN_RECORDS = 10_000
"""The console's dead-letter view reads at most this many of the topic's newest records."""
SPENT = (DELIVER_AT, EXPIRES_AT)
"""Schedule headers a redriven record leaves behind: its due time has passed, and an
expiry in the past would dead-letter it again at once (the topic's ``message_ttl_ms``
still applies, from the redriven record's new timestamp)."""


@dataclass(frozen=True)
class RedriveItem:
    dead_letter_offset: int
    source_topic: str
    source_partition: int
    source_offset: int
    reason: str
    target_topic: str
    target_partition: int


@dataclass(frozen=True)
class DeadLetterRecord:
    """One letter as the console shows it: the copy's key, value and own headers, and
    what the ``logstream.dlq.*`` headers say about where it came from and why."""

    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    reason: str
    reason_text: str
    delivery_count: int
    source_topic: str
    source_partition: int
    source_offset: int
    dead_lettered_ms: int
    redriven: bool


def _int(raw: bytes | None, default: int = -1) -> int:
    try:
        return int(raw) if raw else default
    except ValueError:
        return default


def recent_dead_letters(
    manager: LogManager, name: str, m: Managed, limit: int
) -> tuple[list[DeadLetterRecord], int]:
    """The newest ``limit`` letters of group ``name`` (newest first) among the last
    ``RECENT_SCAN_RECORDS`` records of its dead-letter topic, and how many of those are
    not redriven yet."""
    dlq = m.group.dead_letter_topic
    if dlq not in manager.topics():
        return [], 0
    plog = manager.get_log(dlq, 0)
    first = max(plog.log_start_offset, plog.log_end_offset - RECENT_SCAN_RECORDS)
    found: list[DeadLetterRecord] = []
    waiting = 0
    text = lambda raw: (raw or b"").decode("utf-8", "replace")  # noqa: E731
    for data in read_range(plog, first, plog.log_end_offset):
        for batch in iter_batches(data):
            for i, off in enumerate(batch.offsets.tolist()):
                if off < first:
                    continue
                hdrs = list(batch.record_headers(i))
                h = dict(hdrs)
                if h.get(HEADER_GROUP) != name.encode():
                    continue
                redriven = off in m.redriven
                waiting += not redriven
                found.append(
                    DeadLetterRecord(
                        off,
                        int(batch.timestamps[i]),
                        batch.key(i),
                        batch.value(i),
                        [(k, v) for k, v in hdrs if not k.startswith(DLQ_HEADER_PREFIX)],
                        text(h.get(HEADER_REASON)),
                        text(h.get(HEADER_REASON_TEXT)),
                        _int(h.get(HEADER_DELIVERIES)),
                        text(h.get(HEADER_TOPIC)),
                        _int(h.get(HEADER_PARTITION)),
                        _int(h.get(HEADER_OFFSET)),
                        _int(h.get(HEADER_TIME)),
                        redriven,
                    )
                )
    return found[::-1][:limit], waiting


def redrive(
    manager: LogManager,
    notifier: AppendNotifier,
    state: QueueStateLog,
    name: str,
    m: Managed,
    *,
    execute: bool,
    reasons: Sequence[str] = (),
    to_topic: str = "",
    max_records: int = 0,
) -> list[RedriveItem]:
    """Copy dead letters back (key, value and original headers; the ``logstream.dlq.*``
    headers dropped); each at most once, remembered in ``__queue_state``."""
    if to_topic and is_internal_topic(to_topic):
        raise InvalidRequestError(f"topic {to_topic!r} is internal")
    dlq = m.group.dead_letter_topic
    items: list[RedriveItem] = []
    payload: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
    if dlq not in manager.topics():
        return items
    for (partition, offset, key, value), hdrs in iter_dead_letters(manager, dlq):
        h = {k: v for k, v in hdrs}
        if partition != 0 or offset in m.redriven:
            continue
        if h.get(HEADER_GROUP) != name.encode():
            continue
        reason = (h.get(HEADER_REASON) or b"").decode("utf-8", "replace")
        if reasons and reason not in reasons:
            continue
        src_topic = (h.get(HEADER_TOPIC) or b"").decode("utf-8", "replace")
        src_part = int(h.get(HEADER_PARTITION) or b"0")
        target = to_topic or src_topic
        try:
            count = len(manager.topic(target).partitions)
        except UnknownTopicOrPartitionError:
            raise UnknownTopicOrPartitionError(
                f"redrive target topic {target!r} does not exist"
            ) from None
        items.append(
            RedriveItem(
                offset,
                src_topic,
                src_part,
                int(h.get(HEADER_OFFSET) or b"-1"),
                reason,
                target,
                src_part if src_part < count else src_part % count,
            )
        )
        kept = [(k, v) for k, v in hdrs if not k.startswith(DLQ_HEADER_PREFIX) and k not in SPENT]
        payload.append((key, value, kept))
        if max_records and len(items) >= max_records:
            break
    if not execute or not items:
        return items
    by_target: dict[tuple[str, int], list[int]] = {}
    for i, it in enumerate(items):
        by_target.setdefault((it.target_topic, it.target_partition), []).append(i)
    with m.lock:  # one redrive of a group at a time: nothing goes twice
        fresh = [i for i, it in enumerate(items) if it.dead_letter_offset not in m.redriven]
        for (topic, partition), idx in by_target.items():
            idx = [i for i in idx if i in set(fresh)]
            if not idx:
                continue
            batch = encode_batch(
                [payload[i][1] for i in idx],
                keys=[payload[i][0] for i in idx],
                headers=[encode_headers(payload[i][2]) for i in idx],
            )
            manager.get_log(topic, partition).append(batch)
            notifier.notify((topic, partition))
        done = [items[i].dead_letter_offset for i in fresh]
        state.redriven(name, done)
        m.redriven.update(done)
    return [items[i] for i in fresh]
