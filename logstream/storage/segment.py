"""Segment: one segment of a writable partition, in one of three states.

The file format and the reads are :class:`~.segment_reader.SegmentReader`'s; this class adds
the state machine, appends, the seal and crash recovery.

States (:class:`SegmentState`):

* **active** (at most one per partition, the last segment): the segment holds an
  :class:`~.active_file.ActiveFile` (the write map, the disk reservation ahead of the
  cursor, readahead advice, the prefault window, msync with its sticky error). An append is
  one copy of the batch into the map plus two index entries; the indexes live in memory
  (``ColumnarIndex.growable``, decision 0011), never files. ``size`` lives in memory; the
  rest of the file is zeros (reserved or sparse).
* **parked** (decision 0011): what a clean close leaves of an active segment: closed, the file still
  at its capacity (zero tail), no index files; the clean-shutdown marker holds its
  :class:`ParkedTail`, which the next open checks and adopts (:meth:`adopt_parked_tail`).
  A crash recovery whose tail is clean zeros leaves the segment parked too. A roll trims it
  (:meth:`seal`), so only the last segment of a partition is ever parked.
* **sealed**: trimmed to ``size`` bytes, index files trimmed. Opening one costs nothing
  until it is read: bounds from the file names and ``stat`` sizes, indexes mapped on use.

Crash story. The last segment of a partition that was not closed cleanly may be untrimmed
(zero tail), may end in a torn batch, or may hold garbage. :meth:`Segment.recover` scans it
(``recovery.scan_tail``: headers up to the last trusted index entry, CRCs after it). The
first bad batch, or a zero length (the reserved tail), ends the log unless a batch that
parses follows it (decision 0034): when only garbage follows (a torn tail), the file is
truncated there and both indexes are rewritten; when only zeros follow (a crash of a
healthy process) nothing is written and the segment is parked; when whole batches follow,
the bad range is damage: kept on disk, refused by name, the log going on after the last
good batch (only the garbage after that is cut).

Concurrency: not thread-safe; the owning PartitionLog serialises every call with its lock
(except :meth:`flush`, see :class:`~.active_file.ActiveFile`).
"""

from __future__ import annotations

import enum
import errno
import logging
import os
from pathlib import Path
from typing import NamedTuple

from logstream.codec import (
    HEADER_SIZE,
    BatchHeader,
    read_header,
    stamp_base_offset,
    stamp_log_append_time,
)
from logstream.errors import CorruptRecordError, KafkaStorageError
from logstream.storage import files, prefault
from logstream.storage.active_file import ActiveFile
from logstream.storage.index import OffsetIndex, TimeIndex, read_last_offset_entry
from logstream.storage.recovery import IndexColumns, ScanResult, index_columns, scan_tail
from logstream.storage.segment_reader import SegmentReader

log = logging.getLogger("logstream.storage")

_NO_TIMESTAMP = -(2**63)


def index_capacity(segment_capacity: int) -> int:
    """Entries preallocated for the active segment's indexes (roll when full)."""
    return min(max(segment_capacity // 128, 64), 1 << 20)


class SegmentState(enum.Enum):
    ACTIVE = "active"  # holds an ActiveFile
    PARKED = "parked"  # closed untrimmed (zero tail past size), no index files
    SEALED = "sealed"  # trimmed to size, index files written


class ParkedTail(NamedTuple):
    """The logical end of a parked segment, as the clean-shutdown marker records it."""

    base_offset: int
    size: int
    next_offset: int
    last_batch_pos: int  # where the last batch starts; -1 when the segment is empty


class Segment(SegmentReader):
    """One segment of a writable partition; see the module docstring."""

    def __init__(
        self,
        directory: Path,
        base_offset: int,
        size: int,
        next_offset: int | None = None,
        *,
        prefaulter: prefault.Prefaulter | None = None,
    ) -> None:
        super().__init__(directory, base_offset, size, next_offset)
        self.state = SegmentState.SEALED  # as found at open until recovery or adoption
        self.active_file: ActiveFile | None = None  # present exactly while ACTIVE
        self.last_batch_pos = -1  # where the last batch starts, while PARKED
        self._prefaulter = prefaulter
        self._newest_ts = _NO_TIMESTAMP  # while ACTIVE: the time index's running max

    def __repr__(self) -> str:
        return f"Segment({self.base_offset}..{self.next_offset}, {self.size}B, {self.state.value})"

    @property
    def active(self) -> bool:
        return self.active_file is not None

    @property
    def capacity(self) -> int:
        """The data file's size: its capacity while active, else ``size``."""
        return self.active_file.capacity if self.active_file is not None else self.size

    @property
    def created_ms(self) -> int:
        """When the segment last became active (0 when it is not active)."""
        return self.active_file.created_ms if self.active_file is not None else 0

    # -- becoming active ---------------------------------------------------------------------

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
        """A new, empty, active segment of ``capacity`` bytes. Raises KafkaStorageError
        (and leaves no file behind) when the disk is full."""
        seg = cls(directory, base_offset, 0, prefaulter=prefaulter)
        try:
            for stale in (seg.log_path, seg.index_path, seg.timeindex_path):
                files.remove_quietly(stale)  # a stale leftover must not shine through
            seg._become_active(capacity, None, None, now_ms, new=True)
        except BaseException:
            files.remove_quietly(seg.log_path)
            raise
        return seg

    def activate(self, capacity: int, now_ms: int) -> None:
        """Make this (sealed or parked, last) segment writable again."""
        oi, ti = self.indexes()
        off_cols, time_cols = oi.columns(), ti.columns()
        self.release()
        try:
            self._become_active(max(capacity, self.size), off_cols, time_cols, now_ms, new=False)
        except BaseException:
            with files.storage_errors(f"restoring {self.log_path}"):
                files.truncate(self.log_path, self.size)  # the index files were not touched
            self.state = SegmentState.SEALED
            raise

    def _become_active(
        self,
        capacity: int,
        off_cols: IndexColumns | None,
        time_cols: IndexColumns | None,
        now_ms: int,
        *,
        new: bool,
    ) -> None:
        self.active_file = ActiveFile.open(
            self.log_path,
            end=self.size,
            capacity=capacity,
            now_ms=now_ms,
            prefaulter=self._prefaulter,
            new=new,
        )
        if self.appended_from is None:  # what append() writes needs no framing check
            self.appended_from = self.size
        icap = index_capacity(capacity)
        self._oi = OffsetIndex.growable(self.index_path, icap, off_cols)
        self._ti = TimeIndex.growable(self.timeindex_path, icap, time_cols)
        last = self._ti.last_timestamp()
        self._newest_ts = _NO_TIMESTAMP if last is None else last
        self.state = SegmentState.ACTIVE

    # -- append ------------------------------------------------------------------------------

    def fits(self, nbytes: int) -> bool:
        active, oi = self.active_file, self._oi
        assert active is not None and oi is not None
        return active.fits(nbytes) and not oi.is_full

    def append(
        self,
        batch: bytes | bytearray | memoryview,
        header: BatchHeader,
        base_offset: int,
        log_append_time_ms: int | None,
    ) -> int:
        """Copy ``batch`` into the map at the end, stamp its base offset, index it. Returns
        the batch's max timestamp as stored. The caller checked :meth:`fits`."""
        active, oi, ti = self.active_file, self._oi, self._ti
        assert active is not None and oi is not None and ti is not None
        pos = self.size
        end = pos + header.batch_length
        active.make_room(end)
        mm = active.map
        mm[pos:end] = batch
        with memoryview(mm) as view:
            stamp_base_offset(view, base_offset, pos)
            max_ts = header.max_timestamp
            if log_append_time_ms is not None:
                max_ts = stamp_log_append_time(view, log_append_time_ms, pos)
        rel = base_offset - self.base_offset
        oi.append(rel, pos)
        if max_ts > self._newest_ts:
            ti.append(max_ts, rel)
            self._newest_ts = max_ts
        self.size = end
        self.next_offset = base_offset + header.record_count
        active.advance(end)
        return max_ts

    def flush(self) -> None:
        """msync the data map (the active indexes are derived data: never synced; the seal
        writes them). Safe without the partition lock (ActiveFile's map lock)."""
        active = self.active_file
        if active is not None:
            active.flush()

    # -- closing -----------------------------------------------------------------------------

    def seal(self) -> None:
        """Trim the data file and both indexes to their real size, fsync, unmap. Afterwards
        the segment is read through ``pread`` only. A parked segment is trimmed here too,
        so every segment but the last is always sealed."""
        if self.state is SegmentState.PARKED:
            self._trim_parked()
            return
        active = self.active_file
        if active is None:
            return
        with files.storage_errors(f"sealing segment {self.log_path}"):
            active.seal()
            self.active_file = None
            self.state = SegmentState.SEALED
            self._max_ts = self._newest_ts
            assert self._oi is not None and self._ti is not None
            off_cols, time_cols = self._oi.columns(), self._ti.columns()
            self._close_indexes()
            self._store_indexes(off_cols, time_cols)

    def park(self) -> None:
        """A clean close without the trim (decision 0011): msync, unmap and close, but keep the file
        at its capacity with its zero tail, and write no index files (rebuilt from the log
        when the segment is next read). The caller records :meth:`parked_tail` in the
        clean-shutdown marker; the next open adopts it (:meth:`adopt_parked_tail`)."""
        active = self.active_file
        if active is None:
            return
        with files.storage_errors(f"closing segment {self.log_path}"):
            assert self._oi is not None
            last = self._oi.last_entry()
            active.park()
            self.active_file = None
            self._max_ts = self._newest_ts
            self.last_batch_pos = -1 if last is None else last[1]
            self._close_indexes()
            # Older trimmed index files of a reactivated segment would now be stale.
            files.remove_quietly(self.index_path)
            files.remove_quietly(self.timeindex_path)
            self.state = SegmentState.PARKED

    def close(self) -> None:
        """Seal (an active or parked segment), then release every handle."""
        self.seal()
        self.release()

    def parked_tail(self) -> ParkedTail | None:
        """The logical end of a parked segment, for the clean-shutdown marker; else None."""
        if self.state is not SegmentState.PARKED:
            return None
        return ParkedTail(self.base_offset, self.size, self.next_offset, self.last_batch_pos)

    def abandon(self) -> None:
        """Release every handle without syncing or trimming (after a disk error; tests use
        it to leave the files as a crash would)."""
        if self.active_file is not None:
            self.active_file.discard()
            self.active_file = None
            self.state = SegmentState.PARKED  # the file keeps its zero tail
        self.release()

    def delete(self) -> None:
        """Remove the segment's files (retention). Readers copy bytes under the partition
        lock, so no reader can observe a half-deleted segment."""
        self.abandon()
        for p in (self.log_path, self.index_path, self.timeindex_path):
            files.remove_quietly(p)

    def release_fd(self) -> None:
        """Close the read descriptor of a segment that is not active."""
        if self.active_file is None:
            super().release_fd()

    # -- opening -----------------------------------------------------------------------------

    def adopt_parked_tail(self, tail: ParkedTail) -> bool:
        """At a clean open: take the logical end a clean close recorded for this (parked)
        last segment, after checking it against the file (its size, and the header of the
        last batch: base offset, length and next offset). One pread. Returns False when it
        does not match (the caller then recovers the segment)."""
        file_size = self.size  # from stat
        size, next_offset, last_batch_pos = tail.size, tail.next_offset, tail.last_batch_pos
        if tail.base_offset != self.base_offset or size > file_size or size < 0:
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
        self.size = size
        self.next_offset = next_offset
        self.last_batch_pos = last_batch_pos
        self.state = SegmentState.PARKED if file_size > size else SegmentState.SEALED
        return True

    def load_next_offset(self) -> bool:
        """Derive ``next_offset`` of a sealed segment from its last index entry (two small
        preads) and that batch's header. False when they do not describe the file (no
        index, or a batch that does not end at the file's end): the segment is not the
        sealed one a clean shutdown promised, and the caller recovers it."""
        if self.size == 0:
            self.next_offset = self.base_offset
            return True
        last = read_last_offset_entry(self.index_path)
        if last is not None and last[1] < self.size:
            try:
                header = read_header(self._pread(last[1], HEADER_SIZE))
                if (
                    header.base_offset == self.base_offset + last[0]
                    and last[1] + header.batch_length == self.size
                ):
                    self.next_offset = header.next_offset
                    return True
            except CorruptRecordError:
                pass
        return False

    def recover(self) -> tuple[int, ScanResult]:
        """Scan this (last, not cleanly closed) segment and cut its torn tail: the bytes
        after the last batch that parses. Returns (bytes_truncated, scan of the good
        prefix). A tail of zeros only is not cut: the segment is parked with its indexes
        in memory. A bad batch that good ones follow is damage, not a tail
        (:func:`~.recovery.resume_after_damage`): nothing before the last good batch is
        cut, reads from the bad batch's offset are refused with CORRUPT_MESSAGE naming the
        range (``damage``, as a rebuild that finds damage sets it), the log goes on after
        the last good batch, and appends go to a new segment."""
        with files.storage_errors(f"recovering segment {self.log_path}"):
            fd = os.open(self.log_path, os.O_RDWR)
            try:
                tail = scan_tail(fd, self.base_offset, self.index_path)
                result, cut = tail.scan, tail.end
                truncated = tail.garbage_bytes
                if truncated:
                    files.ftruncate(fd, cut)
                    files.fsync(fd)
            finally:
                os.close(fd)
            self.release()
            off_cols, time_cols = index_columns(self.base_offset, result.positions, result.headers)
            # The old indexes go first (a crash in between leaves none: rebuilt on first
            # read); on a full disk the rebuilt ones stay in memory (_store_indexes).
            files.remove_quietly(self.index_path)
            files.remove_quietly(self.timeindex_path)
            self.size = cut
            if tail.damaged:  # the indexes cover the prefix; found again at every open
                self.damage = (result.end_position, result.next_offset)
                self._set_memory_indexes(off_cols, time_cols)
                self.indexes_rebuilt = True
                parked = not truncated and tail.file_size > cut
                self.state = SegmentState.PARKED if parked else SegmentState.SEALED
                self.last_batch_pos = tail.last_batch_pos
            elif truncated:
                self._store_indexes(off_cols, time_cols)
                self.state = SegmentState.SEALED
            else:
                self._set_memory_indexes(off_cols, time_cols)
                self.indexes_rebuilt = True
                parked = tail.file_size > cut
                self.state = SegmentState.PARKED if parked else SegmentState.SEALED
                self.last_batch_pos = result.positions[-1] if result.positions else -1
        self.next_offset = tail.next_offset
        self._max_ts = None
        if tail.damaged:
            log.error(
                "recovery: %s is damaged at position %d (%s) and good batches follow it: "
                "not a torn tail, nothing cut before position %d; offsets %d..%d are "
                "refused with CORRUPT_MESSAGE",
                self.log_path,
                result.end_position,
                result.failure,
                cut,
                result.next_offset,
                tail.next_offset - 1,
            )
        if truncated:
            log.warning(
                "recovery cut %d bytes from %s at position %d: %s",
                truncated,
                self.log_path,
                cut,
                result.failure or "torn tail",
            )
        return truncated, result

    # -- indexes -----------------------------------------------------------------------------

    def _log_missing_indexes(self, why: str) -> None:
        if self.state is SegmentState.PARKED:  # expected: a clean close writes none (decision 0011)
            log.debug("rebuilding indexes of %s: %s", self.log_path, why)
        else:
            super()._log_missing_indexes(why)

    def _keep_rebuilt_indexes(self, off_cols: IndexColumns, time_cols: IndexColumns) -> None:
        if self._store_indexes(off_cols, time_cols):
            self._oi = OffsetIndex.open_readonly(self.index_path)
            self._ti = TimeIndex.open_readonly(self.timeindex_path)

    def _store_indexes(self, off_cols: IndexColumns, time_cols: IndexColumns) -> bool:
        """Write the trimmed index files. They are derived data: on a full disk they are
        kept in memory instead, and the files are rebuilt from the log when the segment is
        next opened. Returns whether the files were written."""
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
            self.indexes_rebuilt = True
            return False

    def _trim_parked(self) -> None:
        """Trim a parked segment that is no longer the last one (a roll after a clean open):
        the index files (rebuilt from the log), then the data file, fsync'ed."""
        oi, ti = self.indexes()  # rebuilt (and written) if the files are missing
        if not (self.index_path.exists() and self.timeindex_path.exists()):
            self._store_indexes(oi.columns(), ti.columns())  # in memory after a recovery
        with files.storage_errors(f"trimming segment {self.log_path}"):
            files.truncate(self.log_path, self.size, sync=True)
        self.state = SegmentState.SEALED
