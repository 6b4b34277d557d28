"""Redrive: copy a queue group's dead letters back to their source topic (or another).

Reads the group's dead-letter topic, keeps the letters of this group (header
``logstream.dlq.group``) not redriven yet, optionally only some reasons, and writes each
back with its key, value and original headers (the ``logstream.dlq.*`` headers and the
spent schedule headers, :data:`SPENT`, dropped; ``logstream.redrive.group`` and
``logstream.redrive.offset`` added: the group and the dead-letter offset) to its source
topic and partition (or ``to_topic``, same partition number modulo its count). A dry run
(``execute=False``) reads and reports only.

Exactly once, across crashes too (under the group's lock, so one redrive at a time):

1. one REDRIVE_INTENT per target partition goes to ``__queue_state``: the letters and the
   target's log end before the copy;
2. the copies are appended;
3. a REDRIVEN record lists the letters.

After a crash between 1 and 3, :func:`resolve_intents` (at start-up) reads each target
from the recorded log end and takes the letters whose copy it finds (by the two headers)
as redriven; the others were not copied and the next redrive takes them.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from logstream.broker.admin import refuse_internal
from logstream.broker.notify import AppendNotifier
from logstream.broker.queue_reads import read_range
from logstream.broker.queue_state import (
    Managed,
    QueueStateLog,
    RedriveIntent,
    iter_dead_letters,
)
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
from logstream.errors import UnknownTopicOrPartitionError
from logstream.storage import LogManager

log = logging.getLogger("logstream.broker.queues")

DLQ_HEADER_PREFIX = "logstream.dlq."
RECENT_SCAN_RECORDS = 10_000
"""The console's dead-letter view reads at most this many of the topic's newest records."""
SPENT = (DELIVER_AT, EXPIRES_AT)
"""Schedule headers a redriven record leaves behind: its due time has passed, and an
expiry in the past would dead-letter it again at once (the topic's ``message_ttl_ms``
still applies, from the redriven record's new timestamp)."""
REDRIVE_HEADER_PREFIX = "logstream.redrive."
HEADER_REDRIVE_GROUP = "logstream.redrive.group"
HEADER_REDRIVE_OFFSET = "logstream.redrive.offset"
CRASH_ENV = "LOGSTREAM_TEST_CRASH_AT"
"""Tests only: ``redrive-copied`` kills the broker (SIGKILL) after the copies of a redrive
and before its REDRIVEN record, the window :func:`resolve_intents` closes."""


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
    if to_topic:
        refuse_internal(to_topic, "redrive to")
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
        kept = [
            (k, v)
            for k, v in hdrs
            if not k.startswith(DLQ_HEADER_PREFIX)
            and not k.startswith(REDRIVE_HEADER_PREFIX)
            and k not in SPENT
        ]
        kept += [
            (HEADER_REDRIVE_GROUP, name.encode()),
            (HEADER_REDRIVE_OFFSET, str(offset).encode()),
        ]
        payload.append((key, value, kept))
        if max_records and len(items) >= max_records:
            break
    if not execute or not items:
        return items
    by_target: dict[tuple[str, int], list[int]] = {}
    for i, it in enumerate(items):
        by_target.setdefault((it.target_topic, it.target_partition), []).append(i)
    with m.lock:  # one redrive of a group at a time: nothing goes twice
        fresh = {i for i, it in enumerate(items) if it.dead_letter_offset not in m.redriven}
        plan = {
            target: [i for i in idx if i in fresh]
            for target, idx in by_target.items()
            if any(i in fresh for i in idx)
        }
        state.redrive_intents(
            name,
            [
                RedriveIntent(
                    topic,
                    partition,
                    int(manager.get_log(topic, partition).log_end_offset),
                    np.array([items[i].dead_letter_offset for i in idx], np.int64),
                )
                for (topic, partition), idx in plan.items()
            ],
        )
        for (topic, partition), idx in plan.items():
            batch = encode_batch(
                [payload[i][1] for i in idx],
                keys=[payload[i][0] for i in idx],
                headers=[encode_headers(payload[i][2]) for i in idx],
            )
            manager.get_log(topic, partition).append(batch)
            notifier.notify((topic, partition))
        if os.environ.get(CRASH_ENV) == "redrive-copied":
            os.kill(os.getpid(), signal.SIGKILL)
        done = [items[i].dead_letter_offset for i in sorted(fresh)]
        state.redriven(name, done)  # updates m.redriven (the same set)
    return [items[i] for i in sorted(fresh)]


def resolve_intents(
    manager: LogManager,
    state: QueueStateLog,
    name: str,
    m: Managed,
    intents: Sequence[RedriveIntent],
) -> int:
    """Start-up: finish the redrives a crash interrupted (see the module docstring).
    Returns how many letters were found copied."""
    found: list[int] = []
    for intent in intents:
        pending = set(intent.letters.tolist()) - m.redriven
        if not pending:
            continue
        try:
            plog = manager.get_log(intent.topic, intent.partition)
        except UnknownTopicOrPartitionError:
            continue  # the target is gone: nothing of it can be delivered twice
        group = name.encode()
        for data in read_range(plog, intent.from_offset, plog.log_end_offset):
            for batch in iter_batches(data):
                for i in range(len(batch.offsets)):
                    h = dict(batch.record_headers(i))
                    if h.get(HEADER_REDRIVE_GROUP) != group:
                        continue
                    letter = int(h.get(HEADER_REDRIVE_OFFSET) or b"-1")
                    if letter in pending:
                        found.append(letter)
    if found:
        state.redriven(name, found)
        log.warning(
            "queue group %s: a redrive was interrupted; %d dead letters were copied and are "
            "now recorded as redriven (the others stay to be redriven)",
            name,
            len(found),
        )
    return len(found)
