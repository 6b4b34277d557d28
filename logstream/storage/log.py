"""PartitionLog: one partition's ordered, append-only log of record batches.

Directory ``<data-dir>/<topic>-<partition>/`` holds the segments (segment.py: ``.log``,
``.index``, ``.timeindex`` named by 20-digit base offset), ``log-start-offset`` (a checkpoint:
line 1 format version ``0``, line 2 the first readable offset) and ``producer-state.json``
(producer_state.py). A brand-new partition has no segment at all: the first append creates
it, so thousands of empty partitions cost no disk.

Offsets (every offset variable is one of these; their order is asserted)::

    log_start_offset <= flushed_offset <= log_end_offset

* ``log_end_offset`` (dirty): the next offset to assign; everything below it was appended
  and is in the page cache (survives a crash of this process, not of the machine).
* ``flushed_offset`` (stable): everything below it was msync'ed/fsync'ed (survives a
  machine crash). ``flush_policy`` moves it: ``every_batch`` before each append returns,
  ``interval`` from ``LogManager.flush_due``, ``never`` only by an explicit ``flush()``,
  at a roll (sealing fsyncs the old segment) and at close.
* ``log_start_offset``: the first readable offset; moved forward by retention only, and
  checkpointed (atomic_write) before any segment file is deleted.

Crash story: at open, unless the data dir has a clean-shutdown marker, the last segment is
recovered (segment.py: scan, verify CRCs past the last trusted index entry, truncate at the
first bad batch) and the producer state is rebuilt from its snapshot plus a header-only walk.
Sealed segments are trusted (they were fsync'ed when sealed); their indexes are
sanity-checked when first read and rebuilt from the log if they fail. A disk error while
flushing or sealing marks the partition failed: further appends raise KafkaStorageError
until the log is reopened (the data may or may not be on disk: never pretend it is).

Thread safety: one lock per partition serialises appends, reads (which copy the bytes they
return, so nothing keeps a map or a deleted file alive), flushes and retention. Batch
validation (the CRC) runs before taking the lock. Safe to call from many threads.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from logstream.clock import SYSTEM_CLOCK, Clock
from logstream.codec import BatchHeader, check_batch, decode_batch
from logstream.errors import (
    KafkaStorageError,
    MessageTooLargeError,
    OffsetOutOfRangeError,
    UnknownTopicOrPartitionError,
)
from logstream.storage import files, prefault
from logstream.storage.config import TopicConfig
from logstream.storage.producer_state import ProducerStateManager
from logstream.storage.retention import deletable_prefix
from logstream.storage.segment import MAX_RELATIVE_OFFSET, Segment

log = logging.getLogger("logstream.storage")

PRODUCER_EXPIRY_CHECK_MS = 60_000  # how often enforce_retention looks for idle producer ids

DEFAULT_READ_BYTES = 1024 * 1024
_NO_TIMESTAMP = -(2**63)


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where an appended batch landed.

    ``log_append_time_ms`` is the broker time stamped into the batch when the topic uses
    ``timestamp_type=log_append``, else -1 (Kafka's convention). ``duplicate`` is True when
    an idempotent producer retried a batch already written: nothing was written and the
    offsets are the original ones.
    """

    base_offset: int
    last_offset: int
    log_append_time_ms: int
    log_start_offset: int
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What opening a partition found and did."""

    topic: str
    partition: int
    clean_shutdown: bool
    segments: int
    batches_scanned: int
    bytes_truncated: int
    indexes_rebuilt: bool
    producers: int
    log_start_offset: int
    log_end_offset: int
    duration_ms: float
    read_only: bool = False  # then bytes_truncated were found past the end, not cut


class PartitionLog:
    """One partition: append, read, look up by timestamp, flush, roll, retention.

    Open through :class:`~logstream.storage.LogManager`; the constructor is for embedding and
    tests. Thread-safe (one internal lock; see the module docstring).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        topic: str,
        partition: int,
        config: TopicConfig | None = None,
        clock: Clock = SYSTEM_CLOCK,
        clean_shutdown: bool = False,
        prefault_pages: bool = True,
        read_only: bool = False,
        clean_tail: list[int] | None = None,
    ) -> None:
        self.dir = Path(directory)
        self.read_only = read_only
        self.topic = topic
        self.partition = partition
        self.config = config if config is not None else TopicConfig()
        self._clock = clock
        self._lock = threading.Lock()
        self._segments: list[Segment] = []
        self._bases: list[int] = []
        # Running max of the max timestamps of segments [0, len) (sealed ones only, filled
        # lazily by lookups by time; reset by retention).
        self._ts_prefix: list[int] = []
        self._log_start = 0
        self._next_offset = 0
        self._flushed_offset = 0
        self._last_flush_mono = clock.monotonic()
        self._last_append_ms: int | None = None
        self._failed: str | None = None
        self._closed = False
        self._deleted = False
        self._producers = ProducerStateManager()
        self._producers_checked_ms = 0  # last producer-id expiry pass (enforce_retention)
        # The active segment's pages ahead of the cursor are populated by a background
        # thread (prefault.py), keeping page faults off the append path.
        self._prefaulter = prefault.shared() if prefault_pages and not read_only else None
        if read_only:
            self.recovery_report = self._load_read_only(clean_shutdown)
        else:
            self.recovery_report = self._load(clean_shutdown, clean_tail)

    # -- opening -----------------------------------------------------------------------------

    def _load(self, clean: bool, clean_tail: list[int] | None = None) -> RecoveryReport:
        t0 = time.perf_counter()
        self.dir.mkdir(parents=True, exist_ok=True)
        sizes: dict[int, int] = {}
        stems: set[int] = set()
        for entry in os.scandir(self.dir):
            name = entry.name
            if name.endswith((files.TMP_SUFFIX, files.DELETED_SUFFIX)):
                files.remove_quietly(entry.path)
                continue
            base = files.parse_segment_stem(name, files.LOG_SUFFIX)
            if base is not None:
                sizes[base] = entry.stat().st_size
                continue
            for suffix in (files.INDEX_SUFFIX, files.TIMEINDEX_SUFFIX):
                b = files.parse_segment_stem(name, suffix)
                if b is not None:
                    stems.add(b)
        for orphan in stems - sizes.keys():  # index without a log: derived data, drop it
            stem = files.segment_stem(orphan)
            files.remove_quietly(self.dir / (stem + files.INDEX_SUFFIX))
            files.remove_quietly(self.dir / (stem + files.TIMEINDEX_SUFFIX))
        bases = sorted(sizes)
        checkpoint = files.read_checkpoint(self.dir / files.LOG_START_FILE)
        if checkpoint is not None:
            # Retention checkpointed the new start, then crashed before deleting: finish it.
            while len(bases) >= 2 and bases[1] <= checkpoint:
                Segment(self.dir, bases.pop(0), 0).delete()
        self._segments = [
            Segment(
                self.dir, b, sizes[b], bases[i + 1] if i + 1 < len(bases) else None,
                prefaulter=self._prefaulter,
            )
            for i, b in enumerate(bases)
        ]
        self._bases = bases
        truncated = 0
        recovered_headers: list[BatchHeader] | None = None
        scanned = 0
        if self._segments:
            last = self._segments[-1]
            if clean and clean_tail is not None and clean_tail[0] == last.base_offset:
                # A clean close parked this segment untrimmed and recorded its end (D11).
                if not last.adopt_clean_tail(*clean_tail[1:]):
                    log.warning("%s: the clean-shutdown record of its last segment does not "
                                "match the file; recovering it", self.dir)
                    clean = False
            elif clean:
                last.load_next_offset()
            if not clean:
                truncated, scan = last.recover()
                recovered_headers = scan.headers
                scanned = len(scan.headers)
        self._set_bounds(checkpoint)
        self._load_producer_state(clean, recovered_headers)
        for seg in self._segments:  # an idle partition holds no fd (reads reopen lazily)
            seg.release_fd()
        report = RecoveryReport(
            topic=self.topic,
            partition=self.partition,
            clean_shutdown=clean,
            segments=len(self._segments),
            batches_scanned=scanned,
            bytes_truncated=truncated,
            indexes_rebuilt=any(s.indexes_rebuilt for s in self._segments),
            producers=len(self._producers),
            log_start_offset=self._log_start,
            log_end_offset=self._next_offset,
            duration_ms=(time.perf_counter() - t0) * 1000,
        )
        if not clean and self._segments:
            log.info(
                "recovered %s-%d: %d batches scanned, %d bytes truncated, offsets [%d, %d)",
                self.topic, self.partition, scanned, truncated, self._log_start,
                self._next_offset,
            )
        return report

    def _load_read_only(self, clean: bool) -> RecoveryReport:
        """Open without changing a byte: no directory, index, checkpoint or snapshot is
        written, nothing is deleted or truncated. The last segment is always scanned in
        memory (``Segment.scan_read_only``: every CRC, stop at the first bad batch or the
        zero tail), whether or not the directory was closed cleanly, so a crashed directory
        and a live broker's preallocated active segment both read up to their last good
        batch. Producer state is not loaded (appends are refused)."""
        t0 = time.perf_counter()
        sizes: dict[int, int] = {}
        with files.storage_errors(f"listing {self.dir}"):
            entries = list(os.scandir(self.dir)) if self.dir.is_dir() else []
            for entry in entries:
                base = files.parse_segment_stem(entry.name, files.LOG_SUFFIX)
                if base is not None:
                    sizes[base] = entry.stat().st_size
        bases = sorted(sizes)
        checkpoint = files.read_checkpoint(self.dir / files.LOG_START_FILE)
        if checkpoint is not None:  # an interrupted retention: skip (do not delete) them
            while len(bases) >= 2 and bases[1] <= checkpoint:
                bases.pop(0)
        self._segments = [
            Segment(self.dir, b, sizes[b], bases[i + 1] if i + 1 < len(bases) else None,
                    read_only=True)
            for i, b in enumerate(bases)
        ]
        self._bases = bases
        beyond, scanned = 0, 0
        if self._segments:
            with files.storage_errors(f"reading {self._segments[-1].log_path}"):
                beyond, scan = self._segments[-1].scan_read_only()
            scanned = len(scan.headers)
        self._set_bounds(checkpoint)
        return RecoveryReport(
            topic=self.topic,
            partition=self.partition,
            clean_shutdown=clean,
            segments=len(self._segments),
            batches_scanned=scanned,
            bytes_truncated=beyond,
            indexes_rebuilt=False,
            producers=0,
            log_start_offset=self._log_start,
            log_end_offset=self._next_offset,
            duration_ms=(time.perf_counter() - t0) * 1000,
            read_only=True,
        )

    def refresh(self) -> int:
        """Read-only logs: pick up what a live writer appended since the open (or the last
        refresh): new batches of the last segment, then segments rolled since. Returns the
        new log end offset. Each call reads the last segment's file again (whole); meant
        for a forensics ``tail -f``, not a hot path."""
        with self._lock:
            self._check_readable()
            if not self.read_only:
                raise KafkaStorageError("refresh() is for read-only logs")
            with files.storage_errors(f"refreshing {self.dir}"):
                if self._segments:
                    self._segments[-1].extend_read_only()
                newer = []
                if self.dir.is_dir():
                    last = self._bases[-1] if self._bases else -1
                    for entry in os.scandir(self.dir):
                        base = files.parse_segment_stem(entry.name, files.LOG_SUFFIX)
                        if base is not None and base > last:
                            newer.append(base)
                for base in sorted(newer):
                    if base != self._next_offset_locked():
                        break  # the previous segment's tail is not visible yet: next time
                    seg = Segment(self.dir, base, 0, read_only=True)
                    seg.scan_read_only()
                    self._segments.append(seg)
                    self._bases.append(base)
            if not self._segments:
                return self._next_offset
            self._next_offset = self._flushed_offset = self._segments[-1].next_offset
            return self._next_offset

    def _next_offset_locked(self) -> int:
        return self._segments[-1].next_offset if self._segments else self._log_start

    def _set_bounds(self, checkpoint: int | None) -> None:
        """Log start, end and flushed offsets from the segments and the start checkpoint."""
        first_base = self._segments[0].base_offset if self._segments else 0
        self._log_start = max(checkpoint or 0, first_base)
        self._next_offset = self._segments[-1].next_offset if self._segments else self._log_start
        self._log_start = min(self._log_start, self._next_offset)
        self._flushed_offset = self._next_offset

    def _load_producer_state(self, clean: bool, recovered: list[BatchHeader] | None) -> None:
        path = self.dir / files.PRODUCER_STATE_FILE
        snap = ProducerStateManager.load_snapshot(path, self._clock.now_ms())
        if snap is not None and snap[1] <= self._next_offset:
            self._producers, start = snap
        elif snap is None and clean:
            return  # a clean close writes a snapshot whenever there is state to keep
        else:
            start = self._log_start
        if start >= self._next_offset:
            return
        for i, seg in enumerate(self._segments):
            if seg.next_offset <= start:
                continue
            if i == len(self._segments) - 1 and recovered is not None:
                headers = recovered
            else:
                headers = seg.headers_from(start)
            self._producers.replay(
                [h for h in headers if h.base_offset >= start], self._clock.now_ms()
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

    @property
    def last_append_time(self) -> int | None:
        """Clock time (ms) of the last append since open, or None."""
        return self._last_append_ms

    @property
    def failed(self) -> str | None:
        """Why the partition stopped accepting appends (a disk error), or None."""
        return self._failed

    def __repr__(self) -> str:
        return (
            f"PartitionLog({self.topic}-{self.partition}, offsets [{self._log_start}, "
            f"{self._next_offset}), {len(self._segments)} segments)"
        )

    # -- append ------------------------------------------------------------------------------

    def append(self, batch: bytes | bytearray | memoryview) -> AppendResult:
        """Append ONE encoded batch; assign its offsets. See AppendResult.

        Raises MessageTooLargeError, CorruptRecordError / InvalidBatchError (bad bytes; nothing
        written), OutOfOrderSequenceError / InvalidProducerEpochError (idempotence), and
        KafkaStorageError (disk full, failed flush, or the partition failed earlier).
        """
        nbytes = batch.nbytes if isinstance(batch, memoryview) else len(batch)
        config = self.config
        if nbytes > config.max_batch_bytes:
            raise MessageTooLargeError(
                f"batch of {nbytes} bytes exceeds max_batch_bytes {config.max_batch_bytes} "
                f"of topic {self.topic!r}"
            )
        header = check_batch(batch, max_batch_bytes=config.max_batch_bytes)
        log_append = config.timestamp_type == "log_append"
        with self._lock:
            self._check_writable()
            if header.producer_id >= 0:
                dup = self._producers.check(header)
                if dup is not None:
                    return AppendResult(
                        dup.base_offset,
                        dup.last_offset,
                        dup.timestamp if log_append else -1,
                        self._log_start,
                        duplicate=True,
                    )
            now = self._clock.now_ms()
            seg = self._segment_for_append(nbytes, header.record_count, now)
            base = self._next_offset
            max_ts = seg.append(batch, header, base, now if log_append else None)
            self._next_offset = base + header.record_count
            self._last_append_ms = now
            if header.producer_id >= 0:
                self._producers.update(header, base, max_ts, now)
            if config.flush_policy == "every_batch":
                self._flush_locked()
            return AppendResult(
                base, self._next_offset - 1, now if log_append else -1, self._log_start
            )

    def _check_writable(self) -> None:
        if self._deleted:
            self._check_readable()
        if self.read_only:
            raise KafkaStorageError(
                f"partition {self.topic}-{self.partition} was opened read-only"
            )
        if self._failed is not None:
            raise KafkaStorageError(
                f"partition {self.topic}-{self.partition} failed earlier: {self._failed}"
            )
        if self._closed:
            raise KafkaStorageError(f"partition {self.topic}-{self.partition} is closed")

    def _check_readable(self) -> None:
        """Reads of a closed log fail with a named error instead of reopening (or, after a
        delete, not finding) its files."""
        if self._deleted:
            raise UnknownTopicOrPartitionError(
                f"partition {self.topic}-{self.partition} was deleted"
            )
        if self._closed:
            raise KafkaStorageError(f"partition {self.topic}-{self.partition} is closed")

    def _segment_for_append(self, nbytes: int, count: int, now: int) -> Segment:
        config = self.config
        seg = self._segments[-1] if self._segments else None
        fits_offsets = seg is not None and (
            self._next_offset + count - 1 - seg.base_offset <= MAX_RELATIVE_OFFSET
        )
        if seg is not None and not seg.active:
            if fits_offsets and seg.size + nbytes <= config.segment_bytes:
                with files.storage_errors(f"activating {seg.log_path}"):
                    seg.activate(config.segment_bytes, now)
                return seg
        elif (
            seg is not None
            and fits_offsets
            and seg.fits(nbytes)
            and (seg.size == 0 or now - seg.created_ms < config.segment_ms)
        ):
            return seg
        return self._roll(nbytes, now)

    def _roll(self, nbytes: int, now: int) -> Segment:
        """Seal the last segment and start a new one at the log end."""
        old = self._segments[-1] if self._segments else None
        if old is not None and old.size == 0:
            old.delete()  # an empty segment too small for this batch: replace it
            self._segments.pop()
            self._bases.pop()
        elif old is not None:
            try:
                old.seal()
            except KafkaStorageError as exc:
                self._failed = str(exc)
                raise
            self._producers.write_snapshot(self.dir / files.PRODUCER_STATE_FILE, self._next_offset)
            self._flushed_offset = max(self._flushed_offset, old.next_offset)
        capacity = max(self.config.segment_bytes, nbytes)
        seg = Segment.create(
            self.dir, self._next_offset, capacity, now, prefaulter=self._prefaulter
        )
        self._segments.append(seg)
        self._bases.append(seg.base_offset)
        return seg

    # -- read --------------------------------------------------------------------------------

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
            i = bisect.bisect_right(self._bases, offset) - 1
            seg = self._segments[i]
            data = seg.read(offset, max_bytes)
            remaining = max_bytes - len(data)
            parts = [data]
            # Continue into the next segments while whole batches still fit.
            while remaining > 0 and i + 1 < len(self._segments) and _read_to_end(seg, offset, data):
                i += 1
                seg = self._segments[i]
                offset = seg.base_offset
                data = seg.read(offset, remaining, at_least_one=False)
                if not data:
                    break
                parts.append(data)
                remaining -= len(data)
            return parts[0] if len(parts) == 1 else b"".join(parts)

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
            seg = self._segments[bisect.bisect_right(self._bases, offset) - 1]
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
            i = bisect.bisect_right(self._bases, base) - 1
            data = self._segments[i].read(base, 1)  # exactly the batch holding ``base``
        batch = decode_batch(data)  # outside the lock: may decompress
        hits = np.flatnonzero(batch.timestamps >= timestamp_ms)
        if not hits.size:  # the batch's max_timestamp lied (codec.check_batch refuses that now)
            return base, batch.header.max_timestamp
        k = int(hits[0])
        return int(batch.offsets[k]), int(batch.timestamps[k])

    # -- durability --------------------------------------------------------------------------

    def flush(self) -> int:
        """msync the active segment; returns the new flushed offset. Raises
        KafkaStorageError (and fails the partition) if the disk reports an error.

        The msync runs without the partition lock: everything below the captured end is
        immutable, and holding the lock for the 3-15 ms of an msync stalled every append
        and read of the partition once per flush interval. The segment's map lock keeps it
        mapped meanwhile; if a roll sealed it first, the seal's own msync covered it."""
        with self._lock:
            self._raise_if_failed()
            target = self._next_offset
            dirty = self._segments[-1] if self._flushed_offset < target and self._segments else None
        if dirty is not None:
            self._sync(dirty)
        with self._lock:
            self._raise_if_failed()
            return self._mark_flushed(target)

    def _flush_locked(self) -> int:
        """:meth:`flush` with the partition lock held (the ``every_batch`` policy)."""
        self._raise_if_failed()
        target = self._next_offset
        if self._flushed_offset < target and self._segments:
            self._sync(self._segments[-1])
        return self._mark_flushed(target)

    def _raise_if_failed(self) -> None:
        if self._failed is not None:
            raise KafkaStorageError(
                f"partition {self.topic}-{self.partition} failed earlier: {self._failed}"
            )

    def _sync(self, segment: Segment) -> None:
        """msync ``segment``; a disk error fails the partition for good. (Called with or
        without the partition lock: ``_failed`` only ever goes from None to a reason, and
        the segment keeps its own first failure, so no flush can succeed over it.)"""
        try:
            segment.flush()
        except OSError as exc:
            self._failed = f"flush failed: {exc}"
            raise KafkaStorageError(
                f"flushing {self.topic}-{self.partition} failed: {exc}"
            ) from exc

    def _mark_flushed(self, target: int) -> int:
        """Lock held: everything below ``target`` is on disk."""
        self._flushed_offset = max(self._flushed_offset, target)
        self._last_flush_mono = self._clock.monotonic()
        assert self._log_start <= self._flushed_offset <= self._next_offset
        return self._flushed_offset

    def flush_if_due(self) -> bool:
        """Flush if the topic's policy is ``interval`` and the interval has passed."""
        config = self.config
        if config.flush_policy != "interval" or self._closed or self._failed is not None:
            return False
        if self._flushed_offset >= self._next_offset:
            return False
        if (self._clock.monotonic() - self._last_flush_mono) * 1000 < config.flush_interval_ms:
            return False
        self.flush()
        return True

    # -- retention ---------------------------------------------------------------------------

    def enforce_retention(self, now_ms: int | None = None) -> int:
        """Delete expired sealed segments (see retention.py); returns how many. Also forgets
        idempotent producers idle for ``producer_id_expiration_ms`` (checked at most once a
        minute per partition)."""
        with self._lock:
            if self._closed or self.read_only:
                return 0
            config = self.config
            now = self._clock.now_ms() if now_ms is None else now_ms
            if now >= self._producers_checked_ms + PRODUCER_EXPIRY_CHECK_MS:
                self._producers_checked_ms = now
                gone = self._producers.expire(now, config.producer_id_expiration_ms)
                if gone:
                    log.info(
                        "%s-%d: forgot %d idle producer id(s)", self.topic, self.partition, gone
                    )
            segments = self._segments
            k = deletable_prefix(
                [s.size for s in segments],
                lambda i: segments[i].max_timestamp,
                now_ms=now,
                retention_ms=config.retention_ms,
                retention_bytes=config.retention_bytes,
            )
            return self._delete_prefix_locked(k, "retention")

    def delete_segments_before(self, offset: int) -> int:
        """Delete the sealed segments that lie entirely below ``offset`` (never the last
        segment) and advance the log start to the first kept segment; returns how many.
        For an owner that knows the older records are obsolete (the offsets topic after a
        checkpoint). Same crash story as retention (log start checkpointed first)."""
        with self._lock:
            if self._closed or self.read_only:
                return 0
            segments = self._segments
            k = 0
            while k + 1 < len(segments) and segments[k + 1].base_offset <= offset:
                k += 1
            return self._delete_prefix_locked(k, "delete_segments_before")

    def _delete_prefix_locked(self, k: int, why: str) -> int:
        if k == 0:
            return 0
        segments = self._segments
        new_start = segments[k].base_offset
        files.write_checkpoint(self.dir / files.LOG_START_FILE, new_start)
        for seg in segments[:k]:
            seg.delete()
        del self._segments[:k]
        del self._bases[:k]
        self._ts_prefix = []  # the running max included the deleted segments
        self._log_start = max(self._log_start, new_start)
        log.info(
            "%s deleted %d segments of %s-%d; log start offset is now %d",
            why, k, self.topic, self.partition, self._log_start,
        )
        return k

    # -- closing -----------------------------------------------------------------------------

    def clean_tail(self) -> list[int] | None:
        """After a ``close(trim=False)``: ``[base, size, next_offset, last_batch_pos]`` of
        the parked (untrimmed) last segment, for the clean-shutdown marker; else None."""
        return self._segments[-1].clean_tail() if self._segments else None

    def close(self, *, discard: bool = False, trim: bool = True) -> bool:
        """Seal the active segment (trim files), snapshot producer state, release files.
        Returns True when everything reached disk (the caller may mark a clean shutdown).

        With ``trim=False`` (LogManager.close, decision D11) the active segment is parked,
        not sealed: msync'ed and closed with its reserved zero tail and no index files;
        :meth:`clean_tail` then tells what the clean-shutdown marker must record, without
        which the next open treats the segment as crashed (a recovery scan, which is safe).

        With ``discard`` (the topic is being deleted) nothing is sealed or written: handles
        are released and every later call raises UnknownTopicOrPartitionError. After a plain
        close, reads and appends raise KafkaStorageError. Either way no call reopens a file."""
        with self._lock:
            if discard:
                self._deleted = True
            if self._closed:
                return self._failed is None
            self._closed = True
            if discard or self.read_only:
                for seg in self._segments:
                    seg.delete_handles()
                return True
            if self._failed is not None:
                for seg in self._segments:
                    seg.delete_handles()
                return False
            try:
                for seg in self._segments:
                    seg.close(trim=trim)
                path = self.dir / files.PRODUCER_STATE_FILE
                if len(self._producers) or path.exists():
                    self._producers.write_snapshot(path, self._next_offset)
            except (KafkaStorageError, OSError) as exc:
                self._failed = f"close failed: {exc}"
                log.error("closing %s-%d failed: %s", self.topic, self.partition, exc)
                for seg in self._segments:
                    seg.delete_handles()
                return False
            self._flushed_offset = self._next_offset
            return True


def _read_to_end(seg: Segment, offset: int, data: bytes) -> bool:
    """Whether a read of ``data`` starting at ``offset``'s batch reached the segment end."""
    return seg.position_of(offset)[1] + len(data) >= seg.size
