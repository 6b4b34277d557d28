"""SegmentReader: what every segment can do with its files, writable or not: reads.

A segment is one ``<base>.log`` data file plus its offset and time indexes (index.py), all
named by the 20-digit base offset. ``<base>.log`` holds record batches back to back, exactly
as the codec encodes them (see ``logstream/codec/header.py`` for the 72-byte header), with
``base_offset`` stamped by storage. Batch ``i`` starts where batch ``i-1`` ends; the first
at 0; offsets are contiguous.

The reader knows the segment's bounds (``base_offset``, ``size``: the logical end,
``next_offset``), opens a read descriptor lazily, maps the trimmed index files read-only on
first use and sanity-checks them then. Every read is a ``pread`` that returns a ``bytes``
copy, so nothing pins a map or a deleted file. An index that fails its check is rebuilt
from the log; where the rebuilt columns go is the subclass's policy
(:meth:`SegmentReader._keep_rebuilt_indexes`): the writable :class:`~.segment.Segment` writes
files, a read-only :class:`~.snapshot.SnapshotSegment` keeps them in memory.

Concurrency: not thread-safe; the owner (a PartitionLog or a snapshot) serialises calls.
"""

from __future__ import annotations

import bisect
import logging
import os
from pathlib import Path

import numpy as np

from logstream.codec import HEADER_SIZE, BatchHeader, check_frames, read_header
from logstream.errors import CorruptRecordError
from logstream.storage import files
from logstream.storage.index import (
    IndexCorruptError,
    OffsetIndex,
    TimeIndex,
    read_last_timestamp,
)
from logstream.storage.recovery import (
    IndexColumns,
    ScanResult,
    base_offset_at,
    index_columns,
    scan_batches,
)

log = logging.getLogger("logstream.storage")


class EntryRanges:
    """Disjoint, sorted ranges ``[lo, hi)`` of index entry numbers (merged when they touch):
    which batches of a segment already passed the framing check. Usually one range."""

    __slots__ = ("_hi", "_lo")

    def __init__(self) -> None:
        self._lo: list[int] = []
        self._hi: list[int] = []

    def covers(self, lo: int, hi: int) -> bool:
        i = bisect.bisect_right(self._lo, lo) - 1
        return i >= 0 and self._hi[i] >= hi

    def add(self, lo: int, hi: int) -> None:
        if hi <= lo:
            return
        i = bisect.bisect_left(self._hi, lo)  # the first range that ends at or after lo
        j = bisect.bisect_right(self._lo, hi)  # past the last range that starts by hi
        if i < j:
            lo, hi = min(lo, self._lo[i]), max(hi, self._hi[j - 1])
        self._lo[i:j] = [lo]
        self._hi[i:j] = [hi]

    def __repr__(self) -> str:
        return f"EntryRanges({list(zip(self._lo, self._hi, strict=True))})"


class SegmentReader:
    """Bounds, lazy indexes and ``pread`` reads of one segment; see the module docstring."""

    def __init__(
        self, directory: Path, base_offset: int, size: int, next_offset: int | None = None
    ) -> None:
        self.dir = directory
        self.base_offset = base_offset
        self.size = size
        self.next_offset = base_offset if next_offset is None else next_offset
        stem = files.segment_stem(base_offset)
        self.log_path = directory / (stem + files.LOG_SUFFIX)
        self.index_path = directory / (stem + files.INDEX_SUFFIX)
        self.timeindex_path = directory / (stem + files.TIMEINDEX_SUFFIX)
        self.indexes_rebuilt = False  # for the open's report
        self._fd: int | None = None  # read descriptor, opened on first read
        self._oi: OffsetIndex | None = None
        self._ti: TimeIndex | None = None
        self._max_ts: int | None = None  # cached last time-index entry of a closed file
        # (byte position, offset) where a rebuild found damage: the indexes cover only the
        # batches before it, and reads at or past that offset are refused with its range.
        self.damage: tuple[int, int] | None = None
        # The framing check's memory (see read): entries that passed it, and the byte
        # position from which this process appended the batches itself (None: none).
        self.framed = EntryRanges()
        self.appended_from: int | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_offset}..{self.next_offset}, {self.size}B)"

    # -- reads -----------------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int, *, at_least_one: bool = True) -> bytes:
        """Whole batches from the one containing ``offset``, up to ``max_bytes`` (but at least
        one batch when ``at_least_one``). Always a ``bytes`` copy.

        Every batch read is checked against the index (:func:`~logstream.codec.check_frames`:
        its base offset and length, the header bytes the CRC does not cover); the read
        stops before the first batch that disagrees, and raises CorruptRecordError (with
        the damaged offset range) when that is the first one. Each batch is checked once:
        the index entries that passed are remembered (``framed``), and batches this
        process appended (from ``appended_from`` on) are framed by construction."""
        if self.size == 0:
            return b""
        oi, _ = self.indexes()
        data_end = self.size
        if self.damage is not None:
            data_end, damaged_from = self.damage
            if offset >= damaged_from:
                raise CorruptRecordError(
                    f"segment {self.log_path.name} is damaged at byte {data_end}: offsets "
                    f"from {damaged_from} cannot be read",
                    first_offset=damaged_from,
                    last_offset=self.next_offset - 1 if self.next_offset > damaged_from else None,
                )
        k, start = self.position_of(offset)
        end = oi.end_of_batches(k, max_bytes, data_end)
        if not at_least_one and end - start > max_bytes:
            return b""
        data = self._pread(start, end - start)
        positions = oi.column(1)
        j = int(positions.searchsorted(np.uint32(end), side="left"))
        m = j  # entries k..m need the check: not appended by this process, not checked yet
        if self.appended_from is not None and self.appended_from < end:
            m = max(k, int(positions.searchsorted(np.uint32(self.appended_from), side="left")))
        if m > k and not self.framed.covers(k, m):
            checked_end = end if m == j else int(positions[m])
            cut = self._check_framing(data, checked_end - start, oi, k, m, start, offset)
            if cut is not None:
                return data[:cut]
            self.framed.add(k, m)
        return data

    def _check_framing(
        self,
        data: bytes,
        checked_bytes: int,
        oi: OffsetIndex,
        k: int,
        m: int,
        start: int,
        offset: int,
    ) -> int | None:
        """Check index entries ``k..m`` (the first ``checked_bytes`` of ``data``, read from
        byte ``start`` for ``offset``). None when they all follow; else the length of the
        good prefix to serve; CorruptRecordError when nothing before the damage is left."""
        batch_positions = oi.column(1)[k:m].astype(np.int64) - start
        bases = oi.column(0)[k:m].astype(np.int64) + self.base_offset
        try:
            good = check_frames(memoryview(data)[:checked_bytes], batch_positions, bases)
        except CorruptRecordError as exc:
            # The index knows where the next batch starts even when this read held one.
            following = (
                self.base_offset + oi.entry(k + 1)[0] if k + 1 < oi.entries else self.next_offset
            )
            exc.last_offset = following - 1 if following > int(bases[0]) else None
            raise
        if good == len(batch_positions):
            return None
        cut = int(batch_positions[good])
        last_good = read_header(data, int(batch_positions[good - 1]))
        if last_good.next_offset <= offset:
            # The index sent the read to a batch before ``offset`` (a damaged index
            # entry): serving it would stall the reader on the same offset for ever.
            raise CorruptRecordError(
                f"segment {self.log_path.name}: the index and the data disagree at "
                f"byte {start + cut}; offset {offset} cannot be located",
                first_offset=offset,
                last_offset=int(bases[good]) - 1 if int(bases[good]) > offset else None,
            )
        return cut

    def position_of(self, offset: int) -> tuple[int, int]:
        """(entry number, position) of the batch containing ``offset``."""
        oi, _ = self.indexes()
        k = max(oi.lookup(offset - self.base_offset), 0)
        return k, oi.entry(k)[1]

    def offset_for_timestamp(self, timestamp_ms: int) -> int | None:
        """Base offset of the first batch whose max timestamp is >= ``timestamp_ms``."""
        _, ti = self.indexes()
        rel = ti.lookup(timestamp_ms)
        return None if rel is None else self.base_offset + rel

    @property
    def max_timestamp(self) -> int | None:
        """Largest batch max timestamp in the segment; None if empty. One pread when cold."""
        if self._ti is not None:
            return self._ti.last_timestamp()
        if self._max_ts is None and self.size:
            self._max_ts = read_last_timestamp(self.timeindex_path)
            if self._max_ts is None:
                self._max_ts = self.indexes()[1].last_timestamp()
        return self._max_ts if self.size else None

    def headers_from(self, offset: int) -> list[BatchHeader]:
        """Headers of the batches whose last offset is >= ``offset`` (header-only walk)."""
        if self.size == 0 or offset >= self.next_offset:
            return []
        start = 0 if offset <= self.base_offset else self.position_of(offset)[1]
        data = self._pread(start, self.size - start)
        return scan_batches(data, base_offset_at(data), verify_from=len(data) + 1).headers

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

    # -- indexes ---------------------------------------------------------------------------

    def indexes(self) -> tuple[OffsetIndex, TimeIndex]:
        """The indexes, mapped on first use and sanity-checked (rebuilt from the log if bad)."""
        if self._oi is None or self._ti is None:
            try:
                self._oi, self._ti = self._open_index_files()
            except FileNotFoundError as exc:
                self._log_missing_indexes(str(exc))
                self.rebuild_indexes()
            except (IndexCorruptError, CorruptRecordError) as exc:
                log.warning("rebuilding indexes of %s: %s", self.log_path, exc)
                self.rebuild_indexes()
        assert self._oi is not None and self._ti is not None
        return self._oi, self._ti

    def _open_index_files(self) -> tuple[OffsetIndex, TimeIndex]:
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
        return oi, ti

    def _log_missing_indexes(self, why: str) -> None:
        log.warning("rebuilding indexes of %s: %s", self.log_path, why)

    def rebuild_indexes(self) -> ScanResult:
        """Rebuild both indexes from the log, verifying every batch's CRC; where they are
        kept is :meth:`_keep_rebuilt_indexes`."""
        data = self._pread(0, self.size)
        result = scan_batches(data, self.base_offset)
        if result.failure or result.end_position != self.size:
            log.error(
                "segment %s is damaged at position %d (%s); only the prefix is indexed, "
                "offsets from %d are refused with CORRUPT_MESSAGE",
                self.log_path,
                result.end_position,
                result.failure,
                result.next_offset,
            )
            self.damage = (result.end_position, result.next_offset)
        off_cols, time_cols = index_columns(self.base_offset, result.positions, result.headers)
        self._close_indexes()
        self.framed = EntryRanges()  # entry numbers of a rebuilt index may differ
        self._keep_rebuilt_indexes(off_cols, time_cols)
        self.indexes_rebuilt = True
        return result

    def _keep_rebuilt_indexes(self, off_cols: IndexColumns, time_cols: IndexColumns) -> None:
        """Policy hook: the base keeps rebuilt indexes in memory."""
        self._set_memory_indexes(off_cols, time_cols)

    def _set_memory_indexes(self, off_cols: IndexColumns, time_cols: IndexColumns) -> None:
        self._close_indexes()
        self._oi = OffsetIndex.in_memory(self.index_path, off_cols)
        self._ti = TimeIndex.in_memory(self.timeindex_path, time_cols)

    def _close_indexes(self) -> None:
        for index in (self._oi, self._ti):
            if index is not None:
                index.close()
        self._oi = self._ti = None

    # -- handles ---------------------------------------------------------------------------

    def release_fd(self) -> None:
        """Close the read descriptor (the next read reopens it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def release(self) -> None:
        """Drop the indexes and the read descriptor (reads reopen them lazily)."""
        self._close_indexes()
        self.release_fd()
