"""PartitionReader: the reads every partition serves, writable (log.py) or a snapshot.

It owns the partition's :class:`~.segment_set.SegmentSet`, its offset bounds and its lock,
and answers reads by offset and lookups by time. :class:`~.log.PartitionLog` adds appends,
flushes, retention and closing; :class:`~.snapshot.PartitionSnapshot` adds ``refresh``.

Offsets (their order is asserted wherever one of them changes)::

    log_start_offset <= flushed_offset <= log_end_offset

Thread safety: one lock per partition serialises every call; reads copy the bytes they
return, so nothing keeps a map or a deleted file alive.
"""

from __future__ import annotations

import bisect
import threading
from pathlib import Path
from typing import Generic

import numpy as np

from logstream.codec import decode_batch
from logstream.errors import (
    CorruptRecordError,
    KafkaStorageError,
    OffsetOutOfRangeError,
    UnknownTopicOrPartitionError,
)
from logstream.storage.config import TopicConfig
from logstream.storage.segment_set import S, SegmentSet

DEFAULT_READ_BYTES = 1024 * 1024
_NO_TIMESTAMP = -(2**63)


class PartitionReader(Generic[S]):
    """Reads of one partition's segments; see the module docstring."""

    def __init__(self, directory: Path, *, topic: str, partition: int, config: TopicConfig) -> None:
        self.dir = directory
        self.topic = topic
        self.partition = partition
        self.config = config
        self._lock = threading.Lock()
        self._segments: SegmentSet[S] = SegmentSet()
        # Running max of the max timestamps of segments [0, len) (sealed ones only, filled
        # lazily by lookups by time; reset by retention).
        self._ts_prefix: list[int] = []
        self._log_start = 0
        self._next_offset = 0
        self._flushed_offset = 0
        self._closed = False
        self._deleted = False

    def _set_bounds(self, checkpoint: int | None) -> None:
        """Log start, end and flushed offsets from the segments and the start checkpoint."""
        first, last = (self._segments[0], self._segments.last) if self._segments else (None, None)
        start = max(checkpoint or 0, first.base_offset if first is not None else 0)
        self._next_offset = last.next_offset if last is not None else start
        self._log_start = min(start, self._next_offset)
        self._flushed_offset = self._next_offset
        self._check_offsets()

    def _check_offsets(self) -> None:
        assert self._log_start <= self._flushed_offset <= self._next_offset, (
            self._log_start,
            self._flushed_offset,
            self._next_offset,
        )

    # -- properties --------------------------------------------------------------------------

    @property
    def log_start_offset(self) -> int:
        return self._log_start

    @property
    def log_end_offset(self) -> int:
        """The next offset to assign (everything below it is appended, maybe not flushed)."""
        return self._next_offset

    @property
    def flushed_offset(self) -> int:
        """Everything below this offset is on disk (msync/fsync)."""
        return self._flushed_offset

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    def segments(self) -> list[S]:
        """The segments now, oldest first (a copy: for tools, tests and inspection; the
        log may roll or delete segments right after)."""
        with self._lock:
            return list(self._segments)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.topic}-{self.partition}, offsets "
            f"[{self._log_start}, {self._next_offset}), {len(self._segments)} segments)"
        )

    def _check_readable(self) -> None:
        """Reads of a closed log fail with a named error instead of reopening (or, after a
        delete, not finding) its files."""
        if self._deleted:
            raise UnknownTopicOrPartitionError(
                f"partition {self.topic}-{self.partition} was deleted"
            )
        if self._closed:
            raise KafkaStorageError(f"partition {self.topic}-{self.partition} is closed")

    # -- reads -------------------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int = DEFAULT_READ_BYTES) -> bytes:
        """Whole batches starting with the one that contains ``offset``, at most ``max_bytes``
        but always at least one batch. ``b""`` at the log end. Raises OffsetOutOfRangeError
        (naming the earliest offset) below the log start or past the end."""
        with self._lock:
            self._check_readable()
            end = self._next_offset
            if offset == end:
                return b""
            if offset < self._log_start or offset > end:
                raise OffsetOutOfRangeError(
                    f"offset {offset} is out of range for {self.topic}-{self.partition}: "
                    f"earliest offset is {self._log_start}, log end is {end}",
                    earliest=self._log_start,
                    latest=end,
                )
            segments = self._segments
            i = segments.floor_index(offset)
            seg = segments[i]
            if offset >= seg.next_offset:  # a segment damaged at its end: a hole to the next
                following = segments[i + 1].base_offset if i + 1 < len(segments) else end
                raise self._named(
                    CorruptRecordError(
                        f"offsets {seg.next_offset}..{following - 1} are missing after "
                        f"segment {seg.base_offset}",
                        first_offset=seg.next_offset,
                        last_offset=following - 1,
                    )
                )
            try:
                data = seg.read(offset, max_bytes)
            except CorruptRecordError as exc:
                if exc.last_offset is None and exc.first_offset is not None:
                    # Nothing after the damage in this segment can be located: the next
                    # readable offset is the next segment's base (or the log end).
                    following = segments[i + 1].base_offset if i + 1 < len(segments) else end
                    if following > exc.first_offset:
                        exc.last_offset = following - 1
                raise self._named(exc) from None
            remaining = max_bytes - len(data)
            parts = [data]
            # Continue into the next segments while whole batches still fit.
            while (
                remaining > 0
                and i + 1 < len(segments)
                and seg.position_of(offset)[1] + len(data) >= seg.size
            ):
                i += 1
                seg = segments[i]
                offset = seg.base_offset
                try:
                    data = seg.read(offset, remaining, at_least_one=False)
                except CorruptRecordError:
                    break  # served up to the damage; the next read names it
                if not data:
                    break
                parts.append(data)
                remaining -= len(data)
            return parts[0] if len(parts) == 1 else b"".join(parts)

    def _named(self, exc: CorruptRecordError) -> CorruptRecordError:
        """``exc`` with this partition's name on it (the fields and the message)."""
        exc.topic, exc.partition = self.topic, self.partition
        exc.message = f"{self.topic}-{self.partition}: {exc.message}"
        exc.args = (exc.message,)
        return exc

    def position_of(self, offset: int) -> tuple[int, int]:
        """(segment base offset, byte position in it) of the batch holding ``offset``: the
        index lookup behind :meth:`read` (a bisect over segments, one searchsorted)."""
        with self._lock:
            self._check_readable()
            if not self._log_start <= offset < self._next_offset:
                raise OffsetOutOfRangeError(
                    f"offset {offset} is out of range: earliest offset is {self._log_start}, "
                    f"log end is {self._next_offset}",
                    earliest=self._log_start,
                    latest=self._next_offset,
                )
            seg = self._segments.floor(offset)
            return seg.base_offset, seg.position_of(offset)[1]

    def offset_for_timestamp(self, timestamp_ms: int) -> int | None:
        """The base offset of the first batch whose max timestamp is >= ``timestamp_ms``
        (a consumer skips that batch's records stamped earlier), or None if there is none.
        Never below the log start offset."""
        with self._lock:
            self._check_readable()
            return self._offset_for_timestamp_locked(timestamp_ms)

    def _offset_for_timestamp_locked(self, timestamp_ms: int) -> int | None:
        """A bisect over the running max of the segments' max timestamps (monotone even when
        producers' timestamps are not): the first segment whose running max reaches
        ``timestamp_ms`` is the first one holding a batch that does. The running max of
        the sealed segments (all but the last) is extended lazily, one cached value per
        segment (a pread of its time index's last entry when cold, once), and reset by
        retention; the last segment's is in memory. So a lookup touches one segment's
        time index, not every segment before the answer."""
        segs = self._segments
        if not segs:
            return None
        prefix = self._ts_prefix
        if len(prefix) < len(segs) - 1:
            running = prefix[-1] if prefix else _NO_TIMESTAMP
            for seg in segs[len(prefix) : len(segs) - 1]:
                ts = seg.max_timestamp
                if ts is not None and ts > running:
                    running = ts
                prefix.append(running)
        i = bisect.bisect_left(prefix, timestamp_ms, 0, len(segs) - 1)
        for seg in segs[i:]:  # one segment, unless an index disagrees with its max
            ts = seg.max_timestamp
            if ts is not None and ts >= timestamp_ms:
                found = seg.offset_for_timestamp(timestamp_ms)
                if found is not None:
                    return max(found, self._log_start)
        return None

    def record_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        """``(offset, timestamp)`` of the first record whose timestamp is >= ``timestamp_ms``
        (Kafka's ListOffsets semantic), or None if there is none.

        The time index finds the first batch whose max timestamp is >= it (no earlier batch
        holds such a record); that one batch is then decoded (numpy, no per-record loop) to
        pick the record, since timestamps inside a batch need not be ordered. One index
        lookup plus one batch decode: meant for lookups, not the fetch path."""
        with self._lock:
            self._check_readable()
            base = self._offset_for_timestamp_locked(timestamp_ms)
            if base is None:
                return None
            data = self._segments.floor(base).read(base, 1)  # exactly the batch of ``base``
        batch = decode_batch(data)  # outside the lock: may decompress
        hits = np.flatnonzero(batch.timestamps >= timestamp_ms)
        if not hits.size:  # the batch's max_timestamp lied (codec.check_batch refuses that now)
            return base, batch.header.max_timestamp
        k = int(hits[0])
        return int(batch.offsets[k]), int(batch.timestamps[k])
