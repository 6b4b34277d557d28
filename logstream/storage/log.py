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

Crash story: at open (loader.py), unless the data dir has a clean-shutdown marker, the last
segment is recovered (segment.py: scan, verify CRCs past the last trusted index entry,
truncate at the first bad batch) and the producer state is rebuilt from its snapshot plus a
header-only walk. Sealed segments are trusted (they were fsync'ed when sealed); their
indexes are sanity-checked when first read and rebuilt from the log if they fail. A disk
error while
flushing or sealing marks the partition failed: further appends raise KafkaStorageError
until the log is reopened (the data may or may not be on disk: never pretend it is).

The reads (by offset, by time) are :class:`~.partition_reader.PartitionReader`'s, shared
with the read-only :class:`~.snapshot.PartitionSnapshot`; the segments are a
:class:`~.segment_set.SegmentSet`.

Thread safety: one lock per partition serialises appends, reads (which copy the bytes they
return, so nothing keeps a map or a deleted file alive), flushes and retention. Batch
validation (the CRC) runs before taking the lock. Safe to call from many threads, except
:meth:`PartitionLog.flush`'s msync, which runs outside the lock by design.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from logstream.clock import SYSTEM_CLOCK, Clock
from logstream.codec import check_batch, read_header
from logstream.errors import (
    KafkaStorageError,
    MessageTooLargeError,
)
from logstream.storage import files, prefault
from logstream.storage.config import TopicConfig
from logstream.storage.index import MAX_RELATIVE_OFFSET
from logstream.storage.loader import RecoveryReport, load_partition, timed_report
from logstream.storage.partition_reader import PartitionReader
from logstream.storage.retention import deletable_prefix
from logstream.storage.segment import ParkedTail, Segment

__all__ = ["AppendResult", "PartitionLog", "RecoveryReport"]

log = logging.getLogger("logstream.storage")

PRODUCER_EXPIRY_CHECK_MS = 60_000  # how often enforce_retention looks for idle producer ids


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


class PartitionLog(PartitionReader[Segment]):
    """One partition: append, read, look up by timestamp, flush, roll, retention.

    Open through :class:`~logstream.storage.LogManager`; the constructor is for embedding and
    tests. Thread-safe (one internal lock; see the module docstring). ``clean_shutdown``
    and ``parked_tail`` come from the data directory's clean-shutdown marker.
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
        prefault_pages: bool | prefault.Prefaulter = True,
        parked_tail: ParkedTail | None = None,
    ) -> None:
        super().__init__(
            Path(directory),
            topic=topic,
            partition=partition,
            config=config if config is not None else TopicConfig(),
        )
        self._clock = clock
        self._last_flush_mono = clock.monotonic()
        self._failed: str | None = None
        self._producers_checked_ms = 0  # last producer-id expiry pass (enforce_retention)
        # The active segment's pages ahead of the cursor are populated by a background
        # thread (prefault.py), keeping page faults off the append path.
        # ``prefault_pages`` may be a Prefaulter of the caller's own (tests).
        self._prefaulter = (
            prefault_pages
            if isinstance(prefault_pages, prefault.Prefaulter)
            else prefault.shared()
            if prefault_pages
            else None
        )
        t0 = time.perf_counter()
        loaded = load_partition(
            self.dir,
            clock=clock,
            prefaulter=self._prefaulter,
            clean=clean_shutdown,
            parked_tail=parked_tail,
        )
        self._segments = loaded.segments
        self._producers = loaded.producers
        self._set_bounds(loaded.checkpoint)
        self.recovery_report = timed_report(
            t0,
            topic=topic,
            partition=partition,
            loaded=loaded,
            producers=len(self._producers),
            log_start=self._log_start,
            log_end=self._next_offset,
        )

    @property
    def failed(self) -> str | None:
        """Why the partition stopped accepting appends (a disk error), or None."""
        return self._failed

    # -- append ------------------------------------------------------------------------------

    def append(
        self, batch: bytes | bytearray | memoryview, *, trusted: bool = False
    ) -> AppendResult:
        """Append ONE encoded batch; assign its offsets. See AppendResult.

        ``trusted``: the caller encoded the batch itself (``encode_batch`` in this process,
        e.g. the broker's internal state logs), so its CRC and record section are right by
        construction and are not checked again; only the header is read. Never for bytes
        that came from a client or a file.

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
        if trusted:
            header = read_header(batch)
        else:
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
            self._check_offsets()
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
        if self._failed is not None:
            raise KafkaStorageError(
                f"partition {self.topic}-{self.partition} failed earlier: {self._failed}"
            )
        if self._closed:
            raise KafkaStorageError(f"partition {self.topic}-{self.partition} is closed")

    def _segment_for_append(self, nbytes: int, count: int, now: int) -> Segment:
        config = self.config
        seg = self._segments.last
        fits_offsets = seg is not None and (
            self._next_offset + count - 1 - seg.base_offset <= MAX_RELATIVE_OFFSET
        )
        if seg is not None and not seg.active:
            if seg.size:
                seg.indexes()  # a parked segment rebuilds them here: finds any damage
            # A damaged segment stays as it is (its good batches readable, the damage
            # reported); appends go to a new segment after it.
            if fits_offsets and seg.damage is None and seg.size + nbytes <= config.segment_bytes:
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
        old = self._segments.last
        if old is not None and old.size == 0:
            old.delete()  # an empty segment too small for this batch: replace it
            self._segments.pop()
        elif old is not None:
            try:
                old.seal()
            except KafkaStorageError as exc:
                self._failed = str(exc)
                raise
            self._producers.write_snapshot(self.dir / files.PRODUCER_STATE_FILE, self._next_offset)
            self._flushed_offset = max(self._flushed_offset, old.next_offset)
            self._check_offsets()
        capacity = max(self.config.segment_bytes, nbytes)
        seg = Segment.create(
            self.dir, self._next_offset, capacity, now, prefaulter=self._prefaulter
        )
        self._segments.append(seg)
        return seg

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
            dirty = self._segments.last if self._flushed_offset < target else None
        if dirty is not None:
            self._sync(dirty)
        with self._lock:
            self._raise_if_failed()
            return self._mark_flushed(target)

    def _flush_locked(self) -> int:
        """:meth:`flush` with the partition lock held (the ``every_batch`` policy)."""
        self._raise_if_failed()
        target = self._next_offset
        last = self._segments.last
        if self._flushed_offset < target and last is not None:
            self._sync(last)
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
        self._check_offsets()
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
            if self._closed:
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
            if self._closed:
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
        for seg in segments.drop_prefix(k):
            seg.delete()
        self._ts_prefix = []  # the running max included the deleted segments
        self._log_start = max(self._log_start, new_start)
        self._check_offsets()
        log.info(
            "%s deleted %d segments of %s-%d; log start offset is now %d",
            why,
            k,
            self.topic,
            self.partition,
            self._log_start,
        )
        return k

    # -- closing -----------------------------------------------------------------------------

    def close(self) -> bool:
        """Seal the active segment (trim files), snapshot producer state, release files.
        Returns True when everything reached disk. Later reads and appends raise
        KafkaStorageError; no call reopens a file."""
        return self._close(Segment.close)

    def park(self) -> bool:
        """Close as :meth:`close` does, but park the active segment instead of sealing it
        (decision 0011): msync'ed and closed with its reserved zero tail and no index files.
        :meth:`parked_tail` then tells what the clean-shutdown marker must record (without
        it the next open recovers the segment, which is safe). For LogManager.close."""
        return self._close(Segment.park)

    def parked_tail(self) -> ParkedTail | None:
        """The tail of the parked last segment (after :meth:`park`), else None."""
        last = self._segments.last
        return last.parked_tail() if last is not None else None

    def abandon(self) -> None:
        """Release every handle as a killed process would: seal, trim, sync and snapshot
        nothing, so the files stay as they are (tests of recovery use it). Later reads and
        appends raise KafkaStorageError."""
        with self._lock:
            if not self._closed:
                self._closed = True
                for seg in self._segments:
                    seg.abandon()

    def discard(self) -> None:
        """The topic is being deleted: release every handle, seal or write nothing. Every
        later call raises UnknownTopicOrPartitionError."""
        with self._lock:
            self._deleted = True
            if not self._closed:
                self._closed = True
                for seg in self._segments:
                    seg.abandon()

    def _close(self, close_segment: Callable[[Segment], None]) -> bool:
        with self._lock:
            if self._closed:
                return self._failed is None
            self._closed = True
            if self._failed is not None:
                for seg in self._segments:
                    seg.abandon()
                return False
            try:
                for seg in self._segments:
                    close_segment(seg)
                    seg.release()
                path = self.dir / files.PRODUCER_STATE_FILE
                if len(self._producers) or path.exists():
                    self._producers.write_snapshot(path, self._next_offset)
            except (KafkaStorageError, OSError) as exc:
                self._failed = f"close failed: {exc}"
                log.error("closing %s-%d failed: %s", self.topic, self.partition, exc)
                for seg in self._segments:
                    seg.abandon()
                return False
            self._flushed_offset = self._next_offset
            return True
