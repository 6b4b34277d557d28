"""Where queue groups keep their state: the internal topic ``__queue_state``, and the
dead-letter topics.

``__queue_state`` has one partition (so every group's records stay in order) and is written
only by the broker (a name starting with ``__`` is refused for client writes). Each record::

    key    u8 kind, then the group name (UTF-8)
    value  kind 1 STATE:    one engine state record (format: coordinator/queues/statelog.py)
           kind 2 DELETED:  null; the group was deleted, its earlier records are void
           kind 3 REDRIVEN: runs of dead-letter-topic offsets redriven by the group, as
                            (i64 first, u32 length) little-endian pairs
           kind 4 REDRIVE_INTENT: a redrive is about to copy letters to one target
                            partition: u16 length + target topic (UTF-8), i32 partition,
                            i64 the target's log end before the copy, then the runs of
                            dead-letter offsets it will copy (as REDRIVEN)

One ``append`` of the engine's group commit is one batch: after a crash it is all there or
all gone (the batch CRC), and it is in the memory-mapped segment before the broker answers,
so it survives a kill -9 of the broker process. Compaction: once every live group has
written a checkpoint (or nothing), the sealed segments below the oldest group's latest
checkpoint (its first append, when it took several) are deleted; replay still starts at
the log start and the engine starts over at each group's latest complete checkpoint.
Each checkpoint is followed by one REDRIVEN record holding everything the group ever
redrove, so compaction never forgets a redrive.

Redrive is exactly once (:mod:`.queue_redrive`): REDRIVE_INTENT records go in before the
copies, REDRIVEN after; every copy carries the headers ``logstream.redrive.group`` and
``logstream.redrive.offset``. An intent without its REDRIVEN (a crash between) is resolved
at start-up by reading the target partition from the recorded log end: the letters found
there count as redriven, the others were never copied and stay to be redriven.

Dead letters (:class:`DeadLetterTopic`): the source record is read back from its log and
written, key, value and headers unchanged plus the ``logstream.dlq.*`` headers, to the
group's dead-letter topic (created with one partition on first use). ``written`` answers
from those headers; it reads the whole dead-letter topic and is only asked at recovery.
A letter's ``logstream.dlq.time-ms`` tells a deleted source topic's letters from those of
the topic created again under its name (same offsets; docs/queues.md).

Thread-safety: :class:`QueueStateLog` serialises appends with its own lock; a
:class:`DeadLetterTopic` is used under its group's lock.
"""

from __future__ import annotations

import struct
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from logstream.broker.queue_reads import batches_for, read_range
from logstream.clock import Clock
from logstream.codec import encode_batch, encode_headers, iter_batches
from logstream.coordinator.queues import DeadLetter, QueueGroup
from logstream.coordinator.queues.deadletter import (
    HEADER_GROUP,
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_TIME,
    HEADER_TOPIC,
)
from logstream.coordinator.queues.statelog import T_CHECKPOINT_BEGIN
from logstream.errors import (
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from logstream.storage import LogManager, PartitionLog
from logstream.types import Headers

QUEUE_STATE_TOPIC = "__queue_state"
QUEUE_STATE_CONFIG: dict[str, int | str] = {
    "retention_ms": -1,  # checkpoints delete segments, never time or size
    "retention_bytes": -1,
    # One append is one batch: a checkpoint holds every tracked row of a group (43 bytes
    # each, parked delayed records included), so batches (and segments) may be large; a
    # larger checkpoint goes in several appends (CHECKPOINT_UNIT_BYTES in coordinator).
    "segment_bytes": 64 * 1024 * 1024,
    "max_batch_bytes": 64 * 1024 * 1024,
}
KIND_STATE = 1
KIND_DELETED = 2
KIND_REDRIVEN = 3
KIND_REDRIVE_INTENT = 4
RUN = np.dtype([("first", "<i8"), ("length", "<u4")])
_U8 = struct.Struct("<B")
_INTENT = struct.Struct("<H")
_INTENT_TARGET = struct.Struct("<iq")


def _key(kind: int, group: str) -> bytes:
    return _U8.pack(kind) + group.encode("utf-8")


@dataclass(frozen=True)
class RedriveIntent:
    """Dead letters a redrive was about to copy to ``topic``/``partition``, whose log
    ended at ``from_offset`` just before."""

    topic: str
    partition: int
    from_offset: int
    letters: np.ndarray  # dead-letter-topic offsets

    def encode(self) -> bytes:
        name = self.topic.encode()
        return (
            _INTENT.pack(len(name))
            + name
            + _INTENT_TARGET.pack(self.partition, self.from_offset)
            + _runs(self.letters).tobytes()
        )

    @classmethod
    def decode(cls, value: bytes) -> RedriveIntent:
        (n,) = _INTENT.unpack_from(value)
        topic = value[2 : 2 + n].decode("utf-8", "replace")
        partition, from_offset = _INTENT_TARGET.unpack_from(value, 2 + n)
        return cls(topic, partition, from_offset, _offsets(value[2 + n + _INTENT_TARGET.size :]))


def _runs(offsets: Sequence[int] | np.ndarray) -> np.ndarray:
    o = np.unique(np.asarray(offsets, np.int64))
    breaks = np.flatnonzero(np.diff(o) != 1) + 1
    starts = np.concatenate(([0], breaks)).astype(np.int64) if len(o) else np.zeros(0, np.int64)
    ends = np.concatenate((breaks, [len(o)])) if len(o) else np.zeros(0, np.int64)
    runs = np.zeros(len(starts), RUN)
    runs["first"], runs["length"] = o[starts], ends - starts
    return runs


def _offsets(value: bytes) -> np.ndarray:
    runs = np.frombuffer(value, RUN)
    parts = [
        np.arange(first, first + n, dtype=np.int64)
        for first, n in zip(runs["first"].tolist(), runs["length"].tolist(), strict=True)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


@dataclass
class ReplayedState:
    records: dict[str, list[bytes]] = field(default_factory=dict)
    redriven: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    intents: dict[str, list[RedriveIntent]] = field(default_factory=lambda: defaultdict(list))
    floors: dict[str, int] = field(default_factory=dict)


@dataclass
class Managed:
    group: QueueGroup
    topics: list[str]
    outbox: DeadLetterTopic
    lock: threading.Lock = field(default_factory=threading.Lock)
    seen: dict[str, float] = field(default_factory=dict)  # member -> monotonic last seen
    client_ids: dict[str, str] = field(default_factory=dict)
    redriven: set[int] = field(default_factory=set)
    invalid_schedule: int = 0  # unreadable schedule header values ignored since start-up


def _raise_limits(manager: LogManager) -> None:
    """Raise the existing topic's batch and segment limits to :data:`QUEUE_STATE_CONFIG`'s
    when they are lower (a checkpoint is one batch and may be large)."""
    config = manager.topic(QUEUE_STATE_TOPIC).config
    if config.max_batch_bytes < int(QUEUE_STATE_CONFIG["max_batch_bytes"]):
        manager.alter_topic_config(
            QUEUE_STATE_TOPIC,
            {k: QUEUE_STATE_CONFIG[k] for k in ("segment_bytes", "max_batch_bytes")},
        )


class QueueStateLog:
    """The ``__queue_state`` topic: one writer per group (:meth:`writer`), replay, compaction.

    The topic is created on the first write (the first queue group), so a broker that never
    had a queue group has no such topic; replay of a missing topic finds no groups."""

    def __init__(self, manager: LogManager, clock: Clock) -> None:
        self._manager = manager
        self._log: PartitionLog | None = None
        if QUEUE_STATE_TOPIC in manager.topics():
            self._log = manager.get_log(QUEUE_STATE_TOPIC, 0)
        self._clock = clock
        self._lock = threading.Lock()
        self._floors: dict[str, int] = {}  # group -> offset its replay needs from
        self._redriven: dict[str, set[int]] = {}  # group -> dead-letter offsets redriven

    @classmethod
    def open(cls, manager: LogManager, clock: Clock) -> QueueStateLog:
        if QUEUE_STATE_TOPIC in manager.topics():
            _raise_limits(manager)  # a data directory from before large checkpoints
        return cls(manager, clock)

    @property
    def exists(self) -> bool:
        return self._log is not None

    def _target(self) -> PartitionLog:
        """The topic's partition, created now if needed (call under ``self._lock``)."""
        if self._log is None:
            if QUEUE_STATE_TOPIC not in self._manager.topics():
                try:
                    self._manager.create_topic(QUEUE_STATE_TOPIC, 1, dict(QUEUE_STATE_CONFIG))
                except TopicAlreadyExistsError:
                    pass
            self._log = self._manager.get_log(QUEUE_STATE_TOPIC, 0)
        return self._log

    def replay(self) -> ReplayedState:
        """Every live group's records in order, and what each group redrove."""
        state = ReplayedState()
        plog = self._log
        if plog is None:
            return state
        for data in read_range(plog, plog.log_start_offset, plog.log_end_offset):
            for batch in iter_batches(data):
                keys, values = batch.key_list(), batch.value_list()
                for off, k, v in zip(batch.offsets.tolist(), keys, values, strict=True):
                    if not k or off < plog.log_start_offset:
                        continue
                    kind, group = k[0], k[1:].decode("utf-8", "replace")
                    if kind == KIND_DELETED:
                        state.records.pop(group, None)
                        state.redriven.pop(group, None)
                        state.intents.pop(group, None)
                        state.floors.pop(group, None)
                    elif kind == KIND_STATE and v:
                        state.records.setdefault(group, []).append(v)
                        state.floors.setdefault(group, off)
                        if v[0] == T_CHECKPOINT_BEGIN:
                            state.floors[group] = off
                    elif kind == KIND_REDRIVEN and v:
                        state.redriven[group].update(_offsets(v).tolist())
                    elif kind == KIND_REDRIVE_INTENT and v:
                        state.intents[group].append(RedriveIntent.decode(v))
        self._floors = dict(state.floors)
        self._redriven = {g: set(s) for g, s in state.redriven.items()}
        return state

    def redriven_set(self, group: str) -> set[int]:
        """The live set of dead-letter offsets ``group`` redrove (updated by
        :meth:`redriven`; the caller reads it under the group's lock)."""
        with self._lock:
            return self._redriven.setdefault(group, set())

    def _append(self, keys: list[bytes], values: list[bytes | None]) -> int:
        batch = encode_batch(values, keys=keys, timestamps=self._clock.now_ms())
        with self._lock:  # encoded just above: no CRC re-check on append
            return self._target().append(batch, trusted=True).base_offset

    def writer(self, group: str) -> GroupStateWriter:
        return GroupStateWriter(self, group)

    def deleted(self, group: str) -> None:
        self._append([_key(KIND_DELETED, group)], [None])
        with self._lock:
            self._floors.pop(group, None)
            self._redriven.pop(group, None)
        self.compact()

    def redrive_intents(self, group: str, intents: Sequence[RedriveIntent]) -> None:
        """Record, as one unit, what a redrive is about to copy (before it copies)."""
        if intents:
            key = _key(KIND_REDRIVE_INTENT, group)
            self._append([key] * len(intents), [i.encode() for i in intents])

    def redriven(self, group: str, offsets: Sequence[int] | np.ndarray) -> None:
        """Record that ``group`` redrove these dead letters (after the copies)."""
        if len(offsets) == 0:
            return
        self._append([_key(KIND_REDRIVEN, group)], [_runs(offsets).tobytes()])
        with self._lock:
            self._redriven.setdefault(group, set()).update(int(o) for o in offsets)

    def compact(self) -> int:
        """Delete sealed segments no live group needs; returns how many."""
        plog = self._log
        if plog is None:
            return 0
        with self._lock:
            floor = min(self._floors.values(), default=plog.log_end_offset)
        if floor <= plog.log_start_offset:
            return 0
        plog.flush()
        return int(plog.delete_segments_before(floor))


class GroupStateWriter:
    """A :class:`~logstream.coordinator.queues.StateLogWriter` for one group."""

    def __init__(self, log: QueueStateLog, group: str) -> None:
        self._log = log
        self._key = _key(KIND_STATE, group)
        self._group = group
        self._last_base = -1

    def append(self, records: Sequence[bytes]) -> None:
        if not records:
            return
        base = self._log._append([self._key] * len(records), list(records))
        self._last_base = base
        with self._log._lock:
            self._log._floors.setdefault(self._group, base)

    def append_checkpoint(self, units: Sequence[Sequence[bytes]]) -> None:
        """The units in order; the floor (compaction keeps everything from it) is the first
        unit's base, where the checkpoint's BEGIN is."""
        first = -1
        for unit in units:
            self.append(unit)
            first = self._last_base if first < 0 else first
        with self._log._lock:
            self._log._floors[self._group] = first
            done = sorted(self._log._redriven.get(self._group, ()))
        if done:  # above the new floor: compaction keeps it
            self._log._append([_key(KIND_REDRIVEN, self._group)], [_runs(done).tobytes()])
        self._log.compact()


class DeadLetterTopic:
    """A group's :class:`~logstream.coordinator.queues.DeadLetterOutbox`."""

    def __init__(
        self,
        manager: LogManager,
        topic: str,
        notify: Callable[[str, int], None],
        clock: Clock,
    ) -> None:
        self._manager = manager
        self.topic = topic
        self._notify = notify
        self._clock = clock

    def _target(self) -> PartitionLog:
        topic = self.topic
        if topic not in self._manager.topics():
            try:
                self._manager.create_topic(topic, 1)
            except TopicAlreadyExistsError:
                pass
        return self._manager.get_log(topic, 0)

    def write(self, letters: Sequence[DeadLetter]) -> None:
        by_source: dict[tuple[str, int], list[DeadLetter]] = defaultdict(list)
        for d in letters:
            by_source[(d.source_topic, d.source_partition)].append(d)
        target = self._target()
        for (topic, partition), items in by_source.items():
            wanted = np.array(sorted(d.source_offset for d in items), np.int64)
            found = read_records(self._manager, topic, partition, wanted)
            keys: list[bytes | None] = []
            values: list[bytes | None] = []
            headers: list[bytes] = []
            for d in items:
                key, value, hdrs = found.get(d.source_offset, (None, None, ()))
                keys.append(key)
                values.append(value)
                headers.append(encode_headers([*hdrs, *d.headers()]))
            target.append(
                encode_batch(values, keys=keys, headers=headers, timestamps=self._clock.now_ms())
            )
        self._notify(self.topic, 0)

    def written(
        self,
        group: str,
        source_topic: str,
        source_partition: int,
        offsets: np.ndarray,
        since_ms: int = 0,
    ) -> np.ndarray:
        if self.topic not in self._manager.topics():
            return np.zeros(len(offsets), bool)
        have: set[int] = set()
        for _, hdrs in iter_dead_letters(self._manager, self.topic):
            h = dict(hdrs)
            if (
                h.get(HEADER_GROUP) == group.encode()
                and h.get(HEADER_TOPIC) == source_topic.encode()
                and h.get(HEADER_PARTITION) == str(source_partition).encode()
                and (not since_ms or _letter_time(h) > since_ms)
            ):
                have.add(int(h.get(HEADER_OFFSET, b"-1")))
        return np.isin(offsets, np.fromiter(have, np.int64, len(have)))


def _letter_time(headers: dict[str, bytes]) -> int:
    """When a letter was written (0 when it does not say: taken for an old one, so the
    worst case is a second copy, never a record left undelivered)."""
    try:
        return int(headers.get(HEADER_TIME, b"0"))
    except ValueError:
        return 0


def read_records(
    manager: LogManager, topic: str, partition: int, offsets: np.ndarray
) -> dict[int, tuple[bytes | None, bytes | None, Headers]]:
    """(key, value, headers) of each of ``offsets`` still in the log."""
    try:
        plog = manager.get_log(topic, partition)
    except UnknownTopicOrPartitionError:
        return {}
    want = set(offsets.tolist())
    out: dict[int, tuple[bytes | None, bytes | None, Headers]] = {}
    for batch in iter_batches(batches_for(plog, offsets)):
        for i, off in enumerate(batch.offsets.tolist()):
            if off in want:
                out[off] = (batch.key(i), batch.value(i), tuple(batch.record_headers(i)))
    return out


def iter_dead_letters(
    manager: LogManager, topic: str
) -> Iterator[tuple[tuple[int, int, bytes | None, bytes | None], Headers]]:
    """((partition, offset, key, value), headers) of every record of a dead-letter topic."""
    for partition in range(len(manager.topic(topic).partitions)):
        plog = manager.get_log(topic, partition)
        for data in read_range(plog, plog.log_start_offset, plog.log_end_offset):
            for batch in iter_batches(data):
                for i, off in enumerate(batch.offsets.tolist()):
                    yield (
                        (partition, off, batch.key(i), batch.value(i)),
                        tuple(batch.record_headers(i)),
                    )
