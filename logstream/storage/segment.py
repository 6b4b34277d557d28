"""A segment: one ``.log`` data file plus its offset and time indexes.

``<base>.log`` holds record batches back to back, exactly as the codec encodes them (see
``logstream/codec/header.py`` for the 72-byte header, field by field), with ``base_offset``
stamped by storage. Batch ``i`` starts where batch ``i-1`` ends; the first starts at 0;
offsets are contiguous: each batch's base offset is the previous one's last offset + 1.

States:

* **active** (at most one per partition, the last segment): the file is sized to its capacity
  and memory-mapped read-write, but disk blocks are reserved (``posix_fallocate``) only for a
  prefix that grows ahead of the append cursor (:func:`reserve_goal`: as much again as the
  segment holds, 1 MiB .. 16 MiB ahead), so a partition that takes a few KB does not pin
  ``segment_bytes`` of disk. Nothing ever writes into the map past the reservation (appends
  grow it first, the prefault thread stops at it), so a full disk is still a named error from
  ``posix_fallocate``, never a SIGBUS. An append is one copy of the batch into the map plus
  two index entries. ``size`` (the logical end) lives in memory; the rest of the file is
  zeros (reserved or sparse). The directory entry of a new segment is made durable by its
  first flush or seal, not at creation.
* **parked** (D11): what ``LogManager.close`` leaves of an active segment: closed, file still
  at its capacity (zero tail), no index files; the clean-shutdown marker holds its end. A
  crash recovery whose tail is clean zeros leaves the segment in the same state. A roll
  trims it (:meth:`Segment.seal`), so only the last segment of a partition is ever parked.
  The active segment's indexes are in memory (``ColumnarIndex.growable``), never files.
* **sealed**: trimmed to ``size`` bytes, indexes trimmed. Opening one costs nothing until it
  is read: its bounds come from the file names (base offsets) and ``stat`` sizes; its indexes
  are mapped read-only on first use and sanity-checked then (rebuilt from the log if bad).
  Reads use ``pread`` (each read returns a ``bytes`` copy, so nothing pins a map).

Crash story. The last segment of a partition that was not closed cleanly may be untrimmed
(zero tail), may end in a torn batch, or may hold garbage. :meth:`Segment.recover` walks the
batches from position 0: up to the last index entry that still points at a valid batch with
the right base offset ("trusted"), only headers are checked; from there on every batch's
length and CRC are verified (``codec.validate_batch``), and offsets must be contiguous. The
first bad batch, or a zero length (the preallocated tail), ends the log: the file is
truncated there, both indexes are rebuilt for what was scanned, and the number of non-zero
bytes cut off is reported.

Concurrency: not thread-safe; the owning PartitionLog serialises every call with its lock.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from logstream.codec import (
    HEADER_SIZE,
    MAGIC,
    BatchHeader,
    read_header,
    stamp_base_offset,
    stamp_log_append_time,
    validate_batch,
)
from logstream.errors import CorruptRecordError, KafkaStorageError
from logstream.storage import files, libc, prefault
from logstream.storage.index import (
    U32,
    IndexCorruptError,
    OffsetIndex,
    TimeIndex,
    read_last_offset_entry,
    read_last_timestamp,
)

log = logging.getLogger("logstream.storage")

MAX_RELATIVE_OFFSET = 2**32 - 1


RESERVE_MIN = 1 << 20  # disk reserved ahead of an active segment's cursor: at least this
RESERVE_MAX = 16 << 20  # ... and at most this (>= prefault.MAX_AHEAD, so prefault never starves)
READAHEAD_FROM = RESERVE_MIN // 2  # write map: MADV_RANDOM below this size, normal above


def reserve_goal(end: int, capacity: int) -> int:
    """How far an active segment's disk reservation should reach with its cursor at ``end``:
    as much again as the segment holds, between RESERVE_MIN and RESERVE_MAX ahead, page
    aligned, at most ``capacity``. Appends grow it when half of that lead is used up."""
    return min(capacity, prefault.page_up(end + min(max(end, RESERVE_MIN), RESERVE_MAX)))


def index_capacity(segment_capacity: int) -> int:
    """Entries preallocated for the active segment's indexes (roll when full)."""
    return min(max(segment_capacity // 128, 64), 1 << 20)


@dataclass
class ScanResult:
    """What a walk over a segment's bytes found."""

    end_position: int = 0
    next_offset: int = 0
    positions: list[int] = field(default_factory=list)
    headers: list[BatchHeader] = field(default_factory=list)
    error: str | None = None


def scan_batches(buf: bytes | memoryview, base_offset: int, *, verify_from: int = 0) -> ScanResult:
    """Walk back-to-back batches in ``buf`` starting at 0. Batches at positions >=
    ``verify_from`` get a full ``validate_batch`` (length + CRC); earlier ones a header check.
    Stops at an all-zero header (the preallocated tail: a normal end), the first bad batch
    (``error`` says why), or a break in offset contiguity."""
    result = ScanResult(next_offset=base_offset)
    end = len(buf)
    pos = 0
    expected = base_offset
    while end - pos >= HEADER_SIZE:
        try:
            if pos >= verify_from:
                header = validate_batch(buf, pos)
            else:
                header = read_header(buf, pos)
                if (
                    header.magic != MAGIC
                    or header.batch_length < HEADER_SIZE
                    or header.batch_length > end - pos
                    or header.record_count <= 0
                ):
                    raise CorruptRecordError("bad header in the trusted region")
        except CorruptRecordError as exc:
            if any(buf[pos : pos + HEADER_SIZE]):
                result.error = f"position {pos}: {exc}"
            break
        if header.base_offset != expected:
            result.error = (
                f"position {pos}: base offset {header.base_offset}, expected {expected}"
            )
            break
        if header.next_offset - base_offset > MAX_RELATIVE_OFFSET:
            result.error = f"position {pos}: relative offset overflows u32"
            break
        result.positions.append(pos)
        result.headers.append(header)
        pos += header.batch_length
        expected = header.next_offset
    result.end_position = pos
    result.next_offset = expected
    return result


def index_columns(
    base_offset: int, positions: list[int], headers: list[BatchHeader]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Offset-index and time-index columns for scanned batches."""
    rel = np.array([h.base_offset - base_offset for h in headers], dtype=U32)
    pos = np.array(positions, dtype=U32)
    ts_list: list[int] = []
    ts_rel: list[int] = []
    running = None
    for h in headers:
        if running is None or h.max_timestamp > running:
            running = h.max_timestamp
            ts_list.append(h.max_timestamp)
            ts_rel.append(h.base_offset - base_offset)
    return [rel, pos], [np.array(ts_list, dtype=np.int64), np.array(ts_rel, dtype=U32)]


def _last_nonzero(buf: bytes, start: int) -> int:
    """1 + position of the last non-zero byte at or after ``start`` (``start`` if none)."""
    arr = np.frombuffer(buf, dtype=np.uint8)
    chunk = 1 << 20
    end = len(buf)
    while end > start:
        lo = max(start, end - chunk)
        nz = np.flatnonzero(arr[lo:end])
        if nz.size:
            return lo + int(nz[-1]) + 1
        end = lo
    return start


class Segment:
    """One segment of a partition. See the module docstring for states and the crash story."""

    def __init__(
        self,
        directory: Path,
        base_offset: int,
        size: int,
        next_offset: int | None = None,
        *,
        prefaulter: prefault.Prefaulter | None = None,
        read_only: bool = False,
    ) -> None:
        self.dir = directory
        self.read_only = read_only  # never writes a file; indexes rebuilt in memory
        self.base_offset = base_offset
        self.size = size
        self.next_offset = base_offset if next_offset is None else next_offset
        stem = files.segment_stem(base_offset)
        self.log_path = directory / (stem + files.LOG_SUFFIX)
        self.index_path = directory / (stem + files.INDEX_SUFFIX)
        self.timeindex_path = directory / (stem + files.TIMEINDEX_SUFFIX)
        self.active = False
        self.capacity = size
        self.created_ms = 0
        self.indexes_rebuilt = False
        self._fd: int | None = None  # read fd (sealed) or read-write fd (active)
        self._mm: mmap.mmap | None = None  # write map, active only
        self._oi: OffsetIndex | None = None
        self._ti: TimeIndex | None = None
        self._max_ts: int | None = None
        # Prefaulting (prefault.py): pages [0, _populated) of the write map are populated;
        # _pf_lock is held by the prefault thread around each madvise, by a flush outside the
        # partition lock around its msync (flush), and by whoever unmaps.
        self._prefaulter = prefaulter
        self._pf_lock = threading.Lock()
        self._sync_error: OSError | None = None  # the first failed msync (see _msync)
        self._pf_addr = 0
        self._pf_pending = False
        self._populated = 0
        self._activated_size = 0
        # Disk blocks of the data file are reserved for [0, _reserved) (active only).
        self._reserved = 0
        # False from creation until the directory entry was fsync'ed (first flush or seal).
        self._dir_synced = True
        self._readahead = True  # the write map's advice: MADV_NORMAL (True) or MADV_RANDOM
        # Parked by a clean close (D11): the file keeps its zero tail past ``size`` and has
        # no index files; ``last_batch_pos`` is where its last batch starts (-1: none).
        self.untrimmed = False
        self.last_batch_pos = -1

    def __repr__(self) -> str:
        state = "active" if self.active else "sealed"
        return f"Segment({self.base_offset}..{self.next_offset}, {self.size}B, {state})"

    # -- creation and state changes -----------------------------------------------------------

    @classmethod
    def create(
        cls,
        directory: Path,
        base_offset: int,
        capacity: int,
        now_ms: int,
        *,
        prefaulter: prefault.Prefaulter | None = None,
    ) -> Segment:
        """A new, empty, active segment with ``capacity`` bytes reserved on disk.
        Raises KafkaStorageError (and leaves no file behind) when the disk is full."""
        seg = cls(directory, base_offset, 0, prefaulter=prefaulter)
        try:
            for stale in (seg.log_path, seg.index_path, seg.timeindex_path):
                files.remove_quietly(stale)  # a stale leftover must not shine through
            seg._open_writable(capacity, None, None, now_ms)
            # The directory entry is fsync'ed by the first flush or the seal (before any of
            # this segment's offsets count as flushed), not here: one fsync of a directory
            # per new segment on the append path costs ~10 ms under write load on ext4
            # (a journal commit), and the first append of 512 partitions paid it 512 times.
            seg._dir_synced = False
        except BaseException:
            seg._discard_maps()
            for p in (seg.log_path, seg.index_path, seg.timeindex_path):
                files.remove_quietly(p)
            raise
        return seg

    def activate(self, capacity: int, now_ms: int) -> None:
        """Make this (trimmed, last) segment writable again: preallocate and map it."""
        oi, ti = self.indexes()
        off_cols, time_cols = oi.columns(), ti.columns()
        self._drop_readers()
        self.untrimmed = False  # active: the seal or the next park decides
        try:
            self._open_writable(max(capacity, self.size), off_cols, time_cols, now_ms)
        except BaseException:
            self._discard_maps()
            with files.storage_errors(f"restoring {self.log_path}"):
                os.truncate(self.log_path, self.size)  # the index files were not touched
            raise

    def _open_writable(
        self,
        capacity: int,
        off_cols: list[np.ndarray] | None,
        time_cols: list[np.ndarray] | None,
        now_ms: int,
    ) -> None:
        with files.storage_errors(f"opening segment {self.log_path} for append"):
            fd = os.open(self.log_path, os.O_RDWR | os.O_CREAT, 0o644)
            self._fd = fd
            if os.fstat(fd).st_size < capacity:
                os.ftruncate(fd, capacity)  # sparse past the reservation; never written there
            reserved = reserve_goal(self.size, capacity)
            files.reserve(fd, self.size, reserved - self.size)
            self._reserved = reserved
            self._mm = mmap.mmap(fd, capacity, access=mmap.ACCESS_WRITE)
            # No read-around on write faults while the segment is small (a new partition
            # would zero-fill read_ahead_kb of page cache on its first byte); back to
            # normal once it grows (see _reserve_ahead).
            files.no_readahead(self._mm)
            self._readahead = False
        # The indexes live in memory while the segment is active (D11): no files, maps or
        # descriptors (an active segment held 6 fds, 2 now); the seal writes them trimmed.
        icap = index_capacity(capacity)
        self._oi = OffsetIndex.growable(self.index_path, icap, off_cols)  # type: ignore[assignment]
        self._ti = TimeIndex.growable(self.timeindex_path, icap, time_cols)  # type: ignore[assignment]
        self.capacity = capacity
        self.active = True
        self.created_ms = now_ms
        assert self._ti is not None
        last = self._ti.last_timestamp()
        self._max_ts = -(2**63) if last is None else last
        self._pf_addr = libc.map_address(self._mm)
        self._populated = self._activated_size = self.size - self.size % prefault.PAGE
        self._pf_pending = False
        self._want_prefault()

    def _want_prefault(self) -> None:
        """Queue this segment for the prefault thread when the populated region ahead of
        the cursor has shrunk below half its window (cheap: a few int compares)."""
        pf = self._prefaulter
        if (
            pf is not None
            and not self._pf_pending
            and self._populated < self._reserved
            and self._populated - self.size < prefault.window(self.size, self._activated_size) // 2
            and pf.enabled
        ):
            self._pf_pending = True
            pf.request(self)

    def prefault_step(self, madvise: prefault._Madvise) -> bool:
        """Called by the prefault thread, without the partition lock: populate the next
        ``prefault.STEP`` bytes ahead of the cursor. Returns True while more is wanted.

        ``size`` is read without the partition lock. The pending flag is cleared *before*
        the last look at ``size``, and an append updates ``size`` before it looks at the
        flag, so an append that lands meanwhile is seen by one side or the other."""
        with self._pf_lock:
            if self._mm is None or not self.active:
                self._pf_pending = False
                return False
            start, goal = self._prefault_range()
            if start < goal:
                length = min(prefault.STEP, goal - start)
                if madvise(self._pf_addr + start, length):
                    self._pf_pending = False
                    return False
                self._populated = start + length
            self._pf_pending = False
            start, goal = self._prefault_range()
            if start < goal:
                self._pf_pending = True
                return True
            return False

    def _prefault_range(self) -> tuple[int, int]:
        """Page-aligned ``[start, goal)`` still to populate ahead of the cursor."""
        size = self.size
        start = max(self._populated, size - size % prefault.PAGE)
        # Never past the disk reservation: populating a sparse page would allocate (and on
        # a full disk fail) outside posix_fallocate's named error.
        ahead = size + prefault.window(size, self._activated_size)
        goal = min(self._reserved, prefault.page_up(min(self.capacity, ahead)))
        return start, goal

    def _unmap(self) -> None:
        """Close the write map, waiting for a running prefault step."""
        with self._pf_lock:
            if self._mm is not None:
                self._mm.close()
                self._mm = None
            self._pf_addr = 0

    def seal(self) -> None:
        """Trim the data file and both indexes to their real size, fsync, unmap. Afterwards
        the segment is read through ``pread`` only. A parked segment (see :meth:`park`) is
        trimmed here too, so every segment but the last is always trimmed."""
        if not self.active:
            if self.untrimmed:
                self._trim_parked()
            return
        with files.storage_errors(f"sealing segment {self.log_path}"):
            assert self._mm is not None and self._fd is not None
            self._msync()
            self._unmap()
            os.ftruncate(self._fd, self.size)
            files.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            self.capacity = self._reserved = self.size
            self.active = False
            assert self._oi is not None and self._ti is not None
            off_cols, time_cols = self._oi.columns(), self._ti.columns()
            self._oi.close()
            self._ti.close()
            self._oi = self._ti = None
            self._store_indexes(off_cols, time_cols)
            if not self._dir_synced:  # the index writes above fsync'ed the directory anyway
                files.fsync_dir(self.dir)
                self._dir_synced = True

    def close(self, *, trim: bool = True) -> None:
        """Seal (``trim``) or park (not ``trim``) if active, then release every file handle
        and map."""
        if trim:
            self.seal()  # also trims a parked or recovered, untrimmed segment
        elif self.active:
            self.park()
        self._drop_readers()

    def park(self) -> None:
        """A clean close without the trim (D11): msync, unmap and close, but keep the file at
        its capacity with its reserved zero tail, and write no index files (the in-memory
        ones are dropped; they are rebuilt from the log when the segment is next read).
        Trimming 5,000 segments at close cost ~1 ms each on ext4 (ftruncate of reserved
        blocks, two index files created and renamed) and does not overlap across threads;
        the caller records ``(size, next_offset, last_batch_pos)`` in the clean-shutdown
        marker instead, and the next open adopts them (:meth:`adopt_clean_tail`)."""
        if not self.active:
            return
        with files.storage_errors(f"closing segment {self.log_path}"):
            assert self._mm is not None and self._fd is not None
            assert self._oi is not None and self._ti is not None
            self._msync()
            self._unmap()
            os.close(self._fd)
            self._fd = None
            last = self._oi.last_entry()
            self.last_batch_pos = -1 if last is None else last[1]
            self._oi.close()
            self._ti.close()
            self._oi = self._ti = None
            # Older trimmed index files of a reactivated segment would now be stale.
            files.remove_quietly(self.index_path)
            files.remove_quietly(self.timeindex_path)
            self.capacity = self._reserved = self.size
            self.active = False
            self.untrimmed = True
            if not self._dir_synced:
                files.fsync_dir(self.dir)
                self._dir_synced = True

    def clean_tail(self) -> list[int] | None:
        """``[base_offset, size, next_offset, last_batch_pos]`` of a parked segment, for the
        clean-shutdown marker; None when the file is trimmed."""
        if not self.untrimmed or self.active:
            return None
        return [self.base_offset, self.size, self.next_offset, self.last_batch_pos]

    def adopt_clean_tail(self, size: int, next_offset: int, last_batch_pos: int) -> bool:
        """At a clean open: take the logical end a clean close recorded for this (parked,
        untrimmed) last segment, after checking it against the file (its size, and the
        header of the last batch: base offset, length and next offset). One pread. Returns
        False when it does not match (the caller then recovers the segment)."""
        file_size = self.size  # from stat
        if size > file_size or size < 0:
            return False
        if size == 0:
            ok = next_offset == self.base_offset
        else:
            try:
                header = read_header(self._pread(last_batch_pos, HEADER_SIZE))
            except CorruptRecordError:
                return False
            ok = (
                0 <= last_batch_pos < size
                and header.base_offset >= self.base_offset
                and last_batch_pos + header.batch_length == size
                and header.next_offset == next_offset
            )
        if not ok:
            return False
        self.size = self.capacity = size
        self.next_offset = next_offset
        self.last_batch_pos = last_batch_pos
        self.untrimmed = file_size > size
        return True

    def _trim_parked(self) -> None:
        """Trim a parked segment that is no longer the last one (a roll after a clean open):
        the index files (rebuilt from the log), then the data file, fsync'ed."""
        oi, ti = self.indexes()  # rebuilt (and written) if the files are missing
        if not (self.index_path.exists() and self.timeindex_path.exists()):
            self._store_indexes(oi.columns(), ti.columns())  # in memory after a recovery
        with files.storage_errors(f"trimming segment {self.log_path}"):
            fd = os.open(self.log_path, os.O_RDWR)
            try:
                os.ftruncate(fd, self.size)
                files.fsync(fd)
            finally:
                os.close(fd)
        self.untrimmed = False

    def release_fd(self) -> None:
        """Close the read fd of a non-active segment (the next read reopens it)."""
        if self._fd is not None and not self.active:
            os.close(self._fd)
            self._fd = None

    def _drop_readers(self) -> None:
        if self._oi is not None:
            self._oi.close()
        if self._ti is not None:
            self._ti.close()
        self._oi = self._ti = None
        if self._fd is not None and not self.active:
            os.close(self._fd)
            self._fd = None

    def _discard_maps(self) -> None:
        """Release everything without trimming (error paths, deletion)."""
        for idx in (self._oi, self._ti):
            if idx is not None:
                idx.close()
        self._oi = self._ti = None
        self._unmap()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.active = False

    def delete_handles(self) -> None:
        """Release handles without trimming (after a disk error)."""
        self._discard_maps()

    def delete(self) -> None:
        """Remove the segment's files (retention). Readers copy bytes under the partition
        lock, so no reader can observe a half-deleted segment."""
        self._discard_maps()
        for p in (self.log_path, self.index_path, self.timeindex_path):
            files.remove_quietly(p)

    # -- append ------------------------------------------------------------------------------

    def fits(self, nbytes: int) -> bool:
        assert self._oi is not None
        return self.size + nbytes <= self.capacity and not self._oi.is_full

    def append(
        self,
        batch: bytes | bytearray | memoryview,
        header: BatchHeader,
        base_offset: int,
        log_append_time_ms: int | None,
    ) -> int:
        """Copy ``batch`` into the map at the end, stamp its base offset, index it. Returns
        the batch's max timestamp as stored. The caller checked :meth:`fits`."""
        mm = self._mm
        assert mm is not None and self._oi is not None and self._ti is not None
        pos = self.size
        end = pos + header.batch_length
        lead = self._reserved - end
        if self._reserved < self.capacity and lead < min(max(end, RESERVE_MIN), RESERVE_MAX) // 2:
            self._reserve_ahead(end)
        mm[pos:end] = batch
        with memoryview(mm) as view:
            stamp_base_offset(view, base_offset, pos)
            max_ts = header.max_timestamp
            if log_append_time_ms is not None:
                max_ts = stamp_log_append_time(view, log_append_time_ms, pos)
        rel = base_offset - self.base_offset
        self._oi.append(rel, pos)
        if max_ts > self._max_ts:  # type: ignore[operator]
            self._ti.append(max_ts, rel)
            self._max_ts = max_ts
        self.size = end
        self.next_offset = base_offset + header.record_count
        if self._populated - end < prefault.MAX_AHEAD // 2:
            self._want_prefault()
        return max_ts

    def _reserve_ahead(self, end: int) -> None:
        """Grow the disk reservation to :func:`reserve_goal` of ``end`` before bytes up to
        ``end`` go into the map. If the disk cannot give the whole lead, settle for what this
        batch needs; if not even that, raise KafkaStorageError with nothing written."""
        assert self._fd is not None
        start = self._reserved
        goal = reserve_goal(end, self.capacity)
        try:
            files.reserve(self._fd, start, goal - start)
        except KafkaStorageError:
            need = min(self.capacity, prefault.page_up(end))
            if need <= start:
                return  # this batch is covered; the next append tries again
            files.reserve(self._fd, start, need - start)
            goal = need
        self._reserved = goal
        if not self._readahead and end >= READAHEAD_FROM and self._mm is not None:
            files.normal_readahead(self._mm)
            self._readahead = True

    def flush(self) -> None:
        """msync the data map (and, once, fsync the directory of a new segment so its entry
        survives a machine crash). The active segment's index maps are not synced: they are
        derived data that crash recovery rebuilds from the log (an index left stale only
        moves recovery's trusted point back, so it CRC-checks more), and the seal writes
        and fsyncs the trimmed indexes. Each msync is an fsync with its journal commit on
        ext4; three per flush made the 1 s interval flush of 512 partitions take seconds.

        Safe without the partition lock: the map lock (the one every unmap takes) keeps the
        map alive during the msync, and a segment sealed or closed meanwhile was msync'ed by
        that seal or close."""
        self._msync()
        if not self._dir_synced:
            files.fsync_dir(self.dir)
            self._dir_synced = True

    def _msync(self) -> None:
        """msync the data map under the map lock. Linux reports a writeback error to one
        msync only, so the first failure is kept and every later msync of this segment fails
        too: a concurrent flush cannot succeed over pages that were lost."""
        with self._pf_lock:
            if self._sync_error is not None:
                raise OSError(
                    errno.EIO, f"an earlier msync of {self.log_path} failed: {self._sync_error}"
                )
            if self._mm is None:
                return
            try:
                files.msync(self._mm)
            except OSError as exc:
                self._sync_error = exc
                raise

    # -- reading -----------------------------------------------------------------------------

    def indexes(self) -> tuple[OffsetIndex, TimeIndex]:
        """The indexes, mapped on first use and sanity-checked (rebuilt from the log if bad)."""
        if self._oi is None or self._ti is None:
            try:
                oi = OffsetIndex.open_readonly(self.index_path)
                ti = TimeIndex.open_readonly(self.timeindex_path)
                oi.sanity_check(self.size)
                last = oi.last_entry()
                ti.sanity_check(None if last is None else last[0])
                if last is not None:
                    header = read_header(self._pread(last[1], HEADER_SIZE))
                    if header.base_offset != self.base_offset + last[0]:
                        raise IndexCorruptError(
                            f"{self.index_path}: last entry points at base offset "
                            f"{header.base_offset}, expected {self.base_offset + last[0]}"
                        )
                    if last[1] + header.batch_length != self.size:
                        raise IndexCorruptError(
                            f"{self.index_path}: last entry's batch ends at "
                            f"{last[1] + header.batch_length}, the data at {self.size}"
                        )
                self._oi, self._ti = oi, ti  # type: ignore[assignment]
            except FileNotFoundError as exc:
                # Expected for a parked segment (a clean close keeps no index files: D11).
                (log.debug if self.untrimmed else log.warning)(
                    "rebuilding indexes of %s: %s", self.log_path, exc)
                self.rebuild_indexes()
            except (IndexCorruptError, CorruptRecordError) as exc:
                log.warning("rebuilding indexes of %s: %s", self.log_path, exc)
                self.rebuild_indexes()
        assert self._oi is not None and self._ti is not None
        return self._oi, self._ti

    def rebuild_indexes(self) -> ScanResult:
        """Rewrite both (trimmed) index files from the log, verifying every batch's CRC.
        A read-only segment keeps the rebuilt indexes in memory instead."""
        data = self._pread(0, self.size)
        result = scan_batches(data, self.base_offset)
        if result.error or result.end_position != self.size:
            log.error(
                "segment %s is damaged at position %d (%s); only the prefix is indexed",
                self.log_path, result.end_position, result.error,
            )
        off_cols, time_cols = index_columns(self.base_offset, result.positions, result.headers)
        if self.read_only:
            self._set_memory_indexes(off_cols, time_cols)
            return result
        if self._oi is not None:
            self._oi.close()
        if self._ti is not None:
            self._ti.close()
        self._oi = self._ti = None
        if self._store_indexes(off_cols, time_cols):
            self._oi = OffsetIndex.open_readonly(self.index_path)  # type: ignore[assignment]
            self._ti = TimeIndex.open_readonly(self.timeindex_path)  # type: ignore[assignment]
        self.indexes_rebuilt = True
        return result

    def _store_indexes(self, off_cols: list[np.ndarray], time_cols: list[np.ndarray]) -> bool:
        """Write the trimmed index files. They are derived data: on a full disk (the active
        segment's indexes are in memory, so there is no preallocated index file to free
        first) they are kept in memory instead, and the files are rebuilt from the log when
        the segment is next opened. Returns whether the files were written."""
        try:
            OffsetIndex.write_trimmed(self.index_path, off_cols)
            TimeIndex.write_trimmed(self.timeindex_path, time_cols)
            return True
        except KafkaStorageError as exc:
            cause = exc.__cause__
            if not isinstance(cause, OSError) or cause.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            for p in (self.index_path, self.timeindex_path):
                files.remove_quietly(p)
                files.remove_quietly(p.with_name(p.name + files.TMP_SUFFIX))
            log.warning("disk full: indexes of %s kept in memory (%s)", self.log_path, exc)
            self._set_memory_indexes(off_cols, time_cols)
            return False

    def _set_memory_indexes(
        self, off_cols: list[np.ndarray], time_cols: list[np.ndarray]
    ) -> None:
        if self._oi is not None:
            self._oi.close()
        if self._ti is not None:
            self._ti.close()
        self._oi = OffsetIndex.in_memory(self.index_path, off_cols)  # type: ignore[assignment]
        self._ti = TimeIndex.in_memory(self.timeindex_path, time_cols)  # type: ignore[assignment]
        self.indexes_rebuilt = True

    def scan_read_only(self) -> tuple[int, ScanResult]:
        """The read-only counterpart of :meth:`recover` for the last segment: read the whole
        file, verify every batch (length, CRC, contiguous offsets) and stop at the first
        bad batch or at the zero tail (a crashed or live, preallocated segment). Nothing is
        written: ``size`` becomes the end of the last good batch and the indexes are built
        in memory. Returns (non-zero bytes past that end, scan)."""
        if self._fd is None:
            self._fd = os.open(self.log_path, os.O_RDONLY)
        data = _pread_all(self._fd, os.fstat(self._fd).st_size)
        result = scan_batches(data, self.base_offset)
        cut = result.end_position
        beyond = _last_nonzero(data, cut) - cut
        self.size = self.capacity = cut
        self.next_offset = result.next_offset
        self._max_ts = None
        off_cols, time_cols = index_columns(self.base_offset, result.positions, result.headers)
        self._set_memory_indexes(off_cols, time_cols)
        self.indexes_rebuilt = False
        if beyond:
            log.warning(
                "read-only: %s has %d bytes past its last good batch at position %d (%s); "
                "not read, not cut", self.log_path, beyond, cut, result.error or "torn tail",
            )
        return beyond, result

    def extend_read_only(self) -> int:
        """A read-only segment: scan the bytes a writer appended past ``size`` since the last
        scan (same checks as :meth:`scan_read_only`) and extend the in-memory indexes.
        Reads ~1 MiB at a time and stops at the zero tail, so a live broker's preallocated
        segment is not read whole. Returns the number of new batches. A torn or
        half-written batch just ends the scan; the next call retries from there."""
        assert self.read_only
        if self._fd is None:
            self._fd = os.open(self.log_path, os.O_RDONLY)
        fd = self._fd
        file_end = os.fstat(fd).st_size
        pos, expected = self.size, self.next_offset
        positions: list[int] = []
        headers: list[BatchHeader] = []
        while file_end - pos >= HEADER_SIZE:
            head = os.pread(fd, HEADER_SIZE, pos)
            if not any(head):
                break
            try:
                want = max(1 << 20, read_header(head).batch_length)
            except CorruptRecordError:
                break
            data = _pread_all(fd, min(pos + want, file_end), start=pos)
            result = scan_batches(data, expected)
            if not result.headers:
                break
            positions += [pos + p for p in result.positions]
            headers += result.headers
            pos += result.end_position
            expected = result.next_offset
        if not headers:
            return 0
        oi, ti = self.indexes()
        new_off, new_time = index_columns(self.base_offset, positions, headers)
        last_ts = ti.last_timestamp()
        if last_ts is not None:
            keep = new_time[0] > last_ts
            new_time = [c[keep] for c in new_time]
        off_cols = [np.concatenate([a, b]) for a, b in zip(oi.columns(), new_off, strict=True)]
        time_cols = [np.concatenate([a, b]) for a, b in zip(ti.columns(), new_time, strict=True)]
        self._set_memory_indexes(off_cols, time_cols)
        self.indexes_rebuilt = False
        self.size = self.capacity = pos
        self.next_offset = expected
        self._max_ts = None
        return len(headers)

    def _pread(self, pos: int, n: int) -> bytes:
        # Also for the active segment: pread sees the same page cache as the map, and keeps
        # the file's readahead for a reader whose pages were evicted (the map has none).
        if self._fd is None:
            self._fd = os.open(self.log_path, os.O_RDONLY)
        chunks = []
        while n > 0:
            chunk = os.pread(self._fd, n, pos)
            if not chunk:
                break
            chunks.append(chunk)
            pos += len(chunk)
            n -= len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def position_of(self, offset: int) -> tuple[int, int]:
        """(entry number, position) of the batch containing ``offset``."""
        oi, _ = self.indexes()
        k = max(oi.lookup(offset - self.base_offset), 0)
        return k, oi.entry(k)[1]

    def read(self, offset: int, max_bytes: int, *, at_least_one: bool = True) -> bytes:
        """Whole batches from the one containing ``offset``, up to ``max_bytes`` (but at least
        one batch when ``at_least_one``). Always a ``bytes`` copy."""
        if self.size == 0:
            return b""
        oi, _ = self.indexes()
        k, start = self.position_of(offset)
        end = oi.end_of_batches(k, max_bytes, self.size)
        if not at_least_one and end - start > max_bytes:
            return b""
        return self._pread(start, end - start)

    def offset_for_timestamp(self, timestamp_ms: int) -> int | None:
        _, ti = self.indexes()
        rel = ti.lookup(timestamp_ms)
        return None if rel is None else self.base_offset + rel

    @property
    def max_timestamp(self) -> int | None:
        """Largest batch max timestamp in the segment; None if empty. One pread when cold."""
        if self.active or self._ti is not None:
            last = self._ti.last_timestamp() if self._ti is not None else None
            return last
        if self._max_ts is None and self.size:
            self._max_ts = read_last_timestamp(self.timeindex_path)
            if self._max_ts is None:
                self._max_ts = self.indexes()[1].last_timestamp()
        return self._max_ts if self.size else None

    def load_next_offset(self) -> None:
        """Derive ``next_offset`` of a trimmed segment from its last index entry (two small
        preads) and that batch's header; rebuild the indexes if they disagree."""
        if self.size == 0:
            self.next_offset = self.base_offset
            return
        last = read_last_offset_entry(self.index_path)
        if last is not None and last[1] < self.size:
            try:
                header = read_header(self._pread(last[1], HEADER_SIZE))
                if (
                    header.base_offset == self.base_offset + last[0]
                    and last[1] + header.batch_length == self.size
                ):
                    self.next_offset = header.next_offset
                    return
            except CorruptRecordError:
                pass
        result = self.rebuild_indexes()
        self.next_offset = result.next_offset

    def headers_from(self, offset: int) -> list[BatchHeader]:
        """Headers of the batches whose last offset is >= ``offset`` (header-only walk)."""
        if self.size == 0 or offset >= self.next_offset:
            return []
        start = 0 if offset <= self.base_offset else self.position_of(offset)[1]
        data = self._pread(start, self.size - start)
        return scan_batches(data, _base_at(data), verify_from=len(data) + 1).headers

    # -- crash recovery ---------------------------------------------------------------------

    def recover(self) -> tuple[int, ScanResult]:
        """Scan this (last, not cleanly closed) segment and cut the first bad batch and all
        after it. Returns (bytes_truncated, scan).

        Only the file's data regions are read (``SEEK_HOLE``/``SEEK_DATA``: the reserved,
        never-written tail of an active segment is a hole on ext4), so a crashed 64 MiB
        segment holding a few KB costs a few KB of reads, not 64 MiB. When everything past
        the last good batch is zeros (a crash of a healthy process), nothing is written:
        the segment stays untrimmed, like a parked one (D11), with its indexes in memory.
        Otherwise the file is truncated there and both indexes are rewritten."""
        with files.storage_errors(f"recovering segment {self.log_path}"):
            fd = os.open(self.log_path, os.O_RDWR)
            try:
                file_size = os.fstat(fd).st_size
                data_end = _first_hole(fd, file_size)
                data = _pread_all(fd, data_end)
                trusted = self._trusted_position(data)
                result = scan_batches(data, self.base_offset, verify_from=trusted)
                cut = result.end_position
                end = max(_last_nonzero(data, cut), _nonzero_end(fd, data_end, file_size))
                truncated = end - cut
                if truncated:
                    os.ftruncate(fd, cut)
                    files.fsync(fd)
            finally:
                os.close(fd)
            self._discard_maps()
            off_cols, time_cols = index_columns(self.base_offset, result.positions, result.headers)
            # The old indexes go first (a crash in between leaves none: rebuilt on first
            # read); on a full disk the rebuilt ones stay in memory (_store_indexes).
            files.remove_quietly(self.index_path)
            files.remove_quietly(self.timeindex_path)
            if truncated:
                self._store_indexes(off_cols, time_cols)
                self.untrimmed = False
            else:
                self._set_memory_indexes(off_cols, time_cols)
                self.untrimmed = file_size > cut
                self.last_batch_pos = result.positions[-1] if result.positions else -1
        self.size = self.capacity = cut
        self.next_offset = result.next_offset
        self._max_ts = None
        if truncated:
            log.warning(
                "recovery cut %d bytes from %s at position %d: %s",
                truncated, self.log_path, cut, result.error or "torn tail",
            )
        return truncated, result

    def _trusted_position(self, data: bytes) -> int:
        """Position of the last entry of the old offset index that still points at a valid
        batch with the expected base offset; 0 if none (verify everything)."""
        cols = OffsetIndex.read_raw_columns(self.index_path)
        if cols is None or not len(cols[0]):
            return 0
        rel = cols[0].astype(np.int64)
        pos = cols[1].astype(np.int64)
        if rel[0] != 0 or pos[0] != 0:
            return 0
        bad = np.flatnonzero((np.diff(rel) <= 0) | (np.diff(pos) <= 0))
        n = int(bad[0]) + 1 if bad.size else len(rel)
        for k in range(n - 1, max(n - 65, -1), -1):
            p = int(pos[k])
            try:
                header = validate_batch(data, p)
            except CorruptRecordError:
                continue
            if header.base_offset == self.base_offset + int(rel[k]):
                return p
        return 0


def _base_at(data: bytes) -> int:
    return read_header(data, 0).base_offset if len(data) >= HEADER_SIZE else 0


def _first_hole(fd: int, file_size: int) -> int:
    """Where the first hole of ``fd`` starts (``file_size`` if none or unsupported)."""
    try:
        return min(os.lseek(fd, 0, os.SEEK_HOLE), file_size)
    except (OSError, AttributeError):
        return file_size


def _nonzero_end(fd: int, start: int, file_size: int) -> int:
    """1 + position of the last non-zero byte in ``[start, file_size)`` (0 if none),
    reading only the data regions (``SEEK_DATA``), 1 MiB at a time."""
    end = 0
    pos = start
    while pos < file_size:
        try:
            pos = os.lseek(fd, pos, os.SEEK_DATA)
            stop = min(os.lseek(fd, pos, os.SEEK_HOLE), file_size)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data past pos
                break
            stop = file_size  # unsupported: read it all
        except AttributeError:
            stop = file_size
        while pos < stop:
            chunk = os.pread(fd, min(1 << 20, stop - pos), pos)
            if not chunk:
                return end
            last = _last_nonzero(chunk, 0)
            if last:
                end = pos + last
            pos += len(chunk)
    return end


def _pread_all(fd: int, size: int, *, start: int = 0) -> bytes:
    """Bytes ``[start, size)`` of ``fd`` (fewer if the file is shorter)."""
    parts = []
    pos = start
    while pos < size:
        chunk = os.pread(fd, min(size - pos, 1 << 26), pos)
        if not chunk:
            break
        parts.append(chunk)
        pos += len(chunk)
    return b"".join(parts)
