"""Committed offsets, persisted as records of the internal topic ``__consumer_offsets``.

The table (group -> topic-partition -> committed offset) lives in memory; every change is
first appended as a record batch to ``__consumer_offsets`` through the ordinary storage
engine, so the broker rebuilds the table at start-up by replaying the topic from its log start
(the last record for a key wins). A group's records all go to one partition of the topic
(``crc32(group) % partitions``), so their order is kept.

Record layout (all integers little-endian)::

    key, type 1 (an offset commit of one partition):
        u8   key_type = 1
        u16  group length, then the group id (UTF-8)
        u16  topic length, then the topic name (UTF-8)
        i32  partition
    value of type 1 (null value = tombstone: the commit of this partition is deleted):
        u8   value_version = 1
        i64  offset                 the next offset the group will consume
        i64  commit_timestamp_ms    broker wall-clock time of the commit
        u32  metadata length, then the metadata (UTF-8)

    key, type 2 (the whole group): u8 key_type = 2, u16 group length, group id
    value of type 2: always null (tombstone: every offset of the group is deleted: the
        group was deleted, or its offsets expired)

    key, type 3 (checkpoint marker): u8 key_type = 3
    value of type 3:
        u8   value_version = 1
        i64  start          offset of the first record of the checkpoint
        i64  entries        how many offset records the checkpoint holds

One commit request is one batch, appended with one ``append``: after a crash it is either
entirely in the log or entirely cut off by storage recovery (the batch CRC), never half.
Unknown key types and value versions are skipped on replay (forward compatibility).

Compaction (checkpoints). The log is append-only with whole-segment deletion, so instead of
rewriting it, :meth:`OffsetStore.maybe_compact` (called by the coordinator's expiry timer)
appends a **checkpoint** to a partition once the records written there since its last
checkpoint exceed ``max(min_records, 4 x live entries)``: every live offset of the groups of
that partition, re-appended with their original values (a few batches), then the marker
(type 3) naming where the checkpoint starts. Only after the marker is appended and the log
flushed are the sealed segments lying entirely below the checkpoint start deleted
(``PartitionLog.delete_segments_before``, which advances the log start). Replay still reads
from the log start: the kept segment holding the checkpoint start may begin with older
records, but the checkpoint re-states the value of every key live at its start, and records
after it apply in order, so the result is the same table. A crash while the checkpoint is
written leaves records that re-state current values (harmless when replayed) and no marker, so
nothing was deleted: the older records are all still there. Tombstones need no entry in the
checkpoint: a deleted key is simply absent from it, and the records that had set it lie below
the checkpoint start (deleted with their segments, or replayed before the tombstone that
follows them).

Thread safety: every public method takes the store's lock; appends are serialized. A
checkpoint takes the lock once per batch it writes, so commits are not held up by it.
"""

from __future__ import annotations

import struct
import threading
import time
import zlib
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, Protocol

from logstream.clock import Clock
from logstream.codec import encode_batch, iter_batches
from logstream.errors import CorruptRecordError
from logstream.types import OffsetAndMetadata, TopicPartition

OFFSETS_TOPIC = "__consumer_offsets"
DEFAULT_OFFSETS_PARTITIONS = 1
OFFSETS_TOPIC_CONFIG: dict[str, int | str] = {
    "retention_ms": -1,  # never by time or size: checkpoints delete segments (see above)
    "retention_bytes": -1,
    "segment_bytes": 16 * 1024 * 1024,
}

KEY_OFFSET = 1
KEY_GROUP = 2
KEY_CHECKPOINT = 3
VALUE_VERSION = 1
CHECKPOINT_VERSION = 1

COMPACT_MIN_RECORDS = 10_000
"""A checkpoint is written once more records than max(this, 4 x live entries) were appended
to a partition since its last checkpoint."""
COMPACT_LIVE_FACTOR = 4
CHECKPOINT_BATCH_RECORDS = 1_000
"""Keys a checkpoint re-states per batch (per hold of the table's lock): a commit from another
thread waits for at most one batch, not for the whole checkpoint."""
_CHECKPOINT_BATCH_BYTES = 256 * 1024

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")
_VALUE_HEAD = struct.Struct(
    "<"
    "B"  # value_version
    "q"  # offset
    "q"  # commit_timestamp_ms
    "I"  # metadata length
)
_CHECKPOINT_VALUE = struct.Struct(
    "<"
    "B"  # value_version
    "q"  # start: offset of the first record of the checkpoint
    "q"  # entries
)

_READ_BYTES = 4 * 1024 * 1024


class CommittedOffset(NamedTuple):
    """A committed position of a group in one partition."""

    offset: int
    metadata: str
    commit_timestamp_ms: int


class _PartitionLog(Protocol):
    log_start_offset: int
    log_end_offset: int

    def append(self, batch: bytes) -> Any: ...

    def read(self, offset: int, max_bytes: int) -> bytes | memoryview: ...

    def flush(self) -> Any: ...

    def delete_segments_before(self, offset: int) -> int: ...


# ----------------------------------------------------------------------------- encoding


def _str(s: str) -> bytes:
    raw = s.encode("utf-8")
    return _U16.pack(len(raw)) + raw


def encode_offset_key(group: str, tp: TopicPartition) -> bytes:
    return _U8.pack(KEY_OFFSET) + _str(group) + _str(tp.topic) + _I32.pack(tp.partition)


def encode_group_key(group: str) -> bytes:
    return _U8.pack(KEY_GROUP) + _str(group)


def encode_offset_value(offset: int, metadata: str, commit_timestamp_ms: int) -> bytes:
    raw = metadata.encode("utf-8")
    return _VALUE_HEAD.pack(VALUE_VERSION, offset, commit_timestamp_ms, len(raw)) + raw


def encode_checkpoint_key() -> bytes:
    return _U8.pack(KEY_CHECKPOINT)


def encode_checkpoint_value(start: int, entries: int) -> bytes:
    return _CHECKPOINT_VALUE.pack(CHECKPOINT_VERSION, start, entries)


def decode_checkpoint_value(value: bytes) -> tuple[int, int] | None:
    """(start, entries) of a checkpoint marker; None for an unknown version."""
    version, start, entries = _CHECKPOINT_VALUE.unpack_from(value, 0)
    if version != CHECKPOINT_VERSION:
        return None
    return start, entries


def _read_str(buf: bytes, pos: int) -> tuple[str, int]:
    (n,) = _U16.unpack_from(buf, pos)
    pos += 2
    if pos + n > len(buf):
        raise CorruptRecordError("string runs past the record key")
    return buf[pos : pos + n].decode("utf-8"), pos + n


def decode_key(key: bytes) -> tuple[int, str, TopicPartition | None]:
    """(key type, group, partition or None). Unknown types come back with an empty group."""
    (kind,) = _U8.unpack_from(key, 0)
    if kind == KEY_OFFSET:
        group, pos = _read_str(key, 1)
        topic, pos = _read_str(key, pos)
        (partition,) = _I32.unpack_from(key, pos)
        return kind, group, TopicPartition(topic, partition)
    if kind == KEY_GROUP:
        group, _ = _read_str(key, 1)
        return kind, group, None
    return kind, "", None


def decode_offset_value(value: bytes) -> CommittedOffset | None:
    """The committed offset in ``value``; None for an unknown value version."""
    version, offset, ts, n = _VALUE_HEAD.unpack_from(value, 0)
    if version != VALUE_VERSION:
        return None
    start = _VALUE_HEAD.size
    return CommittedOffset(offset, value[start : start + n].decode("utf-8"), ts)


# ----------------------------------------------------------------------------- the store


class OffsetStore:
    """The committed-offsets table backed by ``__consumer_offsets``.

    Build it with :meth:`open` (creates the topic when missing, then replays it). Thread-safe:
    one lock guards the table and serializes appends.
    """

    def __init__(
        self,
        logs: list[_PartitionLog],
        clock: Clock,
        *,
        compact_min_records: int = COMPACT_MIN_RECORDS,
        checkpoint_batch_records: int = CHECKPOINT_BATCH_RECORDS,
    ) -> None:
        self._logs = logs
        self._clock = clock
        self._lock = threading.Lock()
        self._compact_lock = threading.Lock()  # one checkpoint at a time
        self._table: dict[str, dict[TopicPartition, CommittedOffset]] = {}
        self.records_replayed = 0
        self.compact_min_records = compact_min_records
        self.checkpoint_batch_records = checkpoint_batch_records
        # per partition of the topic: records appended since its last complete checkpoint,
        # the count at which to look again, and where that checkpoint starts (-1: none)
        self._since_checkpoint = [0] * len(logs)
        self._next_check = [compact_min_records] * len(logs)
        self.checkpoint_start = [-1] * len(logs)
        self.checkpoints_written = 0

    @classmethod
    def open(
        cls,
        log_manager: Any,
        clock: Clock,
        *,
        partitions: int = DEFAULT_OFFSETS_PARTITIONS,
        topic_config: Any = None,
        compact_min_records: int = COMPACT_MIN_RECORDS,
    ) -> OffsetStore:
        """Open (creating if needed) ``__consumer_offsets`` in ``log_manager`` and replay it.

        An existing topic keeps its partition count (the group -> partition mapping depends
        on it). ``topic_config`` is passed to ``create_topic`` as is.
        """
        if OFFSETS_TOPIC not in set(log_manager.topics()):
            config = OFFSETS_TOPIC_CONFIG if topic_config is None else topic_config
            log_manager.create_topic(OFFSETS_TOPIC, partitions, config)
        n = len(_partition_list(log_manager.topic(OFFSETS_TOPIC)))
        logs = [log_manager.get_log(OFFSETS_TOPIC, p) for p in range(n)]
        store = cls(logs, clock, compact_min_records=compact_min_records)
        store.replay()
        return store

    # -------------------------------------------------------------- replay

    def replay(self) -> None:
        """Rebuild the table from the logs (the last record of a key wins)."""
        with self._lock:
            self._table.clear()
            self.records_replayed = 0
            for i, log in enumerate(self._logs):
                self._since_checkpoint[i] = 0
                self._next_check[i] = self.compact_min_records
                self.checkpoint_start[i] = -1
                self._replay_log(i, log)

    def _replay_log(self, index: int, log: _PartitionLog) -> None:
        pos = int(log.log_start_offset)
        end = int(log.log_end_offset)
        while pos < end:
            data = log.read(pos, _READ_BYTES)
            progressed = False
            for batch in iter_batches(data):
                if batch.header.next_offset <= pos:
                    continue
                keys = batch.key_list()
                values = batch.value_list()
                first = max(0, pos - batch.header.base_offset)
                for key, value in zip(keys[first:], values[first:], strict=True):
                    if key and key[0] == KEY_CHECKPOINT and value is not None:
                        marker = _decode_marker(value)
                        if marker is not None:  # a complete checkpoint: count from here
                            self.checkpoint_start[index] = marker[0]
                            self._since_checkpoint[index] = 0
                            continue
                    self._apply(key, value)
                    self.records_replayed += 1
                    self._since_checkpoint[index] += 1
                pos = batch.header.next_offset
                progressed = True
            if not progressed:
                break

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if not key:
            return
        try:
            kind, group, tp = decode_key(key)
            if kind == KEY_OFFSET and tp is not None:
                if value is None:
                    table = self._table.get(group)
                    if table is not None:
                        table.pop(tp, None)
                        if not table:
                            del self._table[group]
                    return
                committed = decode_offset_value(value)
                if committed is not None:
                    self._table.setdefault(group, {})[tp] = committed
            elif kind == KEY_GROUP:
                self._table.pop(group, None)
        except (struct.error, UnicodeDecodeError, CorruptRecordError):
            return  # a record we cannot read is skipped, never fatal

    # -------------------------------------------------------------- writes

    def _index_for(self, group: str) -> int:
        return zlib.crc32(group.encode("utf-8")) % len(self._logs)

    def _log_for(self, group: str) -> _PartitionLog:
        return self._logs[self._index_for(group)]

    def _write(self, group: str, keys: list[bytes], values: list[bytes | None]) -> None:
        now = self._clock.now_ms()
        batch = encode_batch(values, keys=keys, timestamps=now)
        index = self._index_for(group)
        self._logs[index].append(batch)
        self._since_checkpoint[index] += len(keys)
        for k, v in zip(keys, values, strict=True):
            self._apply(k, v)

    # -------------------------------------------------------------- compaction

    def maybe_compact(self) -> int:
        """Checkpoint (and drop the segments below the checkpoint of) every partition of the
        topic that has had more than ``max(compact_min_records, 4 x live entries)`` records
        appended since its last checkpoint. Returns the segments deleted. Cheap when there is
        nothing to do (one comparison per partition); call it periodically."""
        deleted = 0
        for i in range(len(self._logs)):
            if self._since_checkpoint[i] < self._next_check[i]:
                continue
            with self._lock:
                live = self._live_entries(i)
                threshold = max(self.compact_min_records, COMPACT_LIVE_FACTOR * live)
                if self._since_checkpoint[i] <= threshold:
                    self._next_check[i] = threshold + 1  # no rescan before that
                    continue
                # If the checkpoint fails (storage error), try again only after as many
                # records again, not on every tick of the timer.
                self._next_check[i] = self._since_checkpoint[i] + self.compact_min_records
            deleted += self.compact(i)
        return deleted

    def compact(self, index: int = 0) -> int:
        """Write a checkpoint of partition ``index`` of the topic now, then delete the sealed
        segments entirely below it. Returns the segments deleted.

        The table lock is held per checkpoint batch, not for the whole checkpoint, so
        commits keep flowing while a large table is re-stated. Each batch re-states the
        values its keys have *when it is written*; a commit landing between two batches is
        appended between them, so replaying the log in order still ends with the newest
        value of every key (see the module docstring)."""
        with self._compact_lock:
            with self._lock:
                log = self._logs[index]
                start = int(log.log_end_offset)
                counted_before = self._since_checkpoint[index]
                keys_to_restate = [
                    (group, tp)
                    for group in sorted(self._table)
                    if self._index_for(group) == index
                    for tp in self._table[group]
                ]
            entries = 0
            step = self.checkpoint_batch_records
            for lo in range(0, len(keys_to_restate), step):
                with self._lock:
                    entries += self._restate_locked(log, keys_to_restate[lo : lo + step])
                time.sleep(0)  # a commit waiting for the lock gets it before the next batch
            with self._lock:
                marker = encode_batch(
                    [encode_checkpoint_value(start, entries)],
                    keys=[encode_checkpoint_key()],
                    timestamps=self._clock.now_ms(),
                )
                log.append(marker)
            log.flush()  # the checkpoint is on disk before what it replaces is deleted
            with self._lock:
                self.checkpoint_start[index] = start
                # commits that landed during the checkpoint still count towards the next one
                self._since_checkpoint[index] = max(
                    0, self._since_checkpoint[index] - counted_before
                )
                self._next_check[index] = max(
                    self.compact_min_records, COMPACT_LIVE_FACTOR * entries
                )
                self.checkpoints_written += 1
            return int(log.delete_segments_before(start))

    def _live_entries(self, index: int) -> int:
        return sum(len(t) for g, t in self._table.items() if self._index_for(g) == index)

    def _restate_locked(self, log: _PartitionLog, keys: list[tuple[str, TopicPartition]]) -> int:
        """Append the current values of ``keys`` (those still in the table; commit times
        kept), in batches of at most ``_CHECKPOINT_BATCH_BYTES``; returns how many."""
        out_keys: list[bytes] = []
        out_values: list[bytes | None] = []
        size = 0
        entries = 0

        def flush_batch() -> None:
            nonlocal size
            if out_keys:
                log.append(encode_batch(out_values, keys=out_keys, timestamps=self._clock.now_ms()))
                out_keys.clear()
                out_values.clear()
                size = 0

        for group, tp in keys:
            c = self._table.get(group, {}).get(tp)
            if c is None:  # deleted since the list was taken: its tombstone is in the log
                continue
            k = encode_offset_key(group, tp)
            v = encode_offset_value(c.offset, c.metadata, c.commit_timestamp_ms)
            out_keys.append(k)
            out_values.append(v)
            size += len(k) + len(v)
            entries += 1
            if size >= _CHECKPOINT_BATCH_BYTES:
                flush_batch()
        flush_batch()
        return entries

    def commit(self, group: str, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> int:
        """Persist ``offsets`` for ``group`` (one batch); returns the commit timestamp.

        The caller has validated the offsets. Raises the storage's errors (e.g.
        KafkaStorageError) with the table unchanged."""
        if not offsets:
            return self._clock.now_ms()
        now = self._clock.now_ms()
        keys = [encode_offset_key(group, tp) for tp in offsets]
        values: list[bytes | None] = [
            encode_offset_value(om.offset, om.metadata, now) for om in offsets.values()
        ]
        with self._lock:
            self._write(group, keys, values)
        return now

    def delete_group(self, group: str) -> None:
        """Forget every offset of ``group`` (a group tombstone)."""
        with self._lock:
            self._write(group, [encode_group_key(group)], [None])

    def delete_offsets(self, group: str, partitions: Iterable[TopicPartition]) -> None:
        """Forget the offsets of some partitions (per-key tombstones)."""
        tps = list(partitions)
        if not tps:
            return
        with self._lock:
            self._write(group, [encode_offset_key(group, tp) for tp in tps], [None] * len(tps))

    # -------------------------------------------------------------- reads

    def get(self, group: str) -> dict[TopicPartition, CommittedOffset]:
        """A copy of the committed offsets of ``group`` (empty when it has none)."""
        with self._lock:
            return dict(self._table.get(group, {}))

    def groups(self) -> list[str]:
        """Groups that have at least one committed offset."""
        with self._lock:
            return sorted(self._table)

    def last_commit_ms(self, group: str) -> int | None:
        with self._lock:
            table = self._table.get(group)
            if not table:
                return None
            return max(c.commit_timestamp_ms for c in table.values())


def _decode_marker(value: bytes) -> tuple[int, int] | None:
    try:
        return decode_checkpoint_value(value)
    except struct.error:
        return None


def _partition_list(topic: Any) -> list[Any]:
    parts = topic.partitions
    if isinstance(parts, int):
        return list(range(parts))
    return list(parts)
