"""Offset and time indexes of a segment: columnar, little-endian, memory-mapped numpy arrays.

Layout (Redpanda-style columnar rather than Kafka's interleaved entries, so that every
column is a contiguous array and ``numpy.searchsorted`` never copies)::

    <base>.index      (one entry per batch of the segment, in log order)
        u32 LE relative_offset[C]    batch base offset - segment base offset
        u32 LE position[C]           byte position of the batch in the .log file

    <base>.timeindex  (one entry each time the segment's running max timestamp grows)
        i64 LE max_timestamp[C]      the new running max timestamp (ms)
        u32 LE relative_offset[C]    base offset of the batch that raised it, minus base

``C`` is the file's capacity in entries: ``file_size // entry_size`` (8 and 12 bytes).
A sealed segment's index files are trimmed, so ``C`` is the number of entries. The active
segment's indexes live in memory (:meth:`ColumnarIndex.growable`, decision 0011): no file,
map or descriptor; the seal writes the trimmed files, and after a crash recovery rebuilds
them from the log (an older trimmed file, if the segment was reactivated, only serves as
recovery's trusted point).

Both columns of both indexes are strictly increasing (the max timestamp only gets an entry
when it grows). Indexes are derived data: they carry no checksum and are never trusted
blindly. :meth:`OffsetIndex.sanity_check` / :meth:`TimeIndex.sanity_check` look for the
damage a crash can leave (wrong size, non-monotonic entries, positions past the data); when a
check fails the segment rebuilds both files from the log (segment.py).

Lookups use keys of the column's dtype (``np.uint32(x)``, ``np.int64(t)``): a Python int key
makes numpy cast the whole column first (1000x slower).

Relative offsets are u32: a segment holds offsets ``[base, base + MAX_RELATIVE_OFFSET]``
at most, and the log rolls before an append would pass that.

Concurrency: not thread-safe; the owning PartitionLog holds its lock around every call.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Self, TypeVar

import numpy as np

from logstream.storage import files

T = TypeVar("T")
U32 = np.dtype("<u4")
I64 = np.dtype("<i8")
MAX_RELATIVE_OFFSET = 2**32 - 1  # the largest relative offset a u32 column holds
_GROWABLE_START = 64  # initial rows of a growable (active segment) index


class IndexCorruptError(Exception):
    """An index file fails its sanity check; the caller rebuilds it from the log."""


class ColumnarIndex:
    """A fixed-width columnar index file; subclasses name the columns."""

    DTYPES: ClassVar[tuple[np.dtype, ...]] = ()
    ENTRY_SIZE: ClassVar[int] = 0

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries = 0
        self.capacity = 0
        self.writable = False
        self._cols: list[np.ndarray] = []
        self._memory = False  # growable in-memory columns (the active segment's index)

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open_readonly(cls, path: Path) -> Self:
        """Map a trimmed index file read-only. Raises IndexCorruptError on a bad size and
        FileNotFoundError when it is missing."""
        index = cls(path)
        size = os.stat(path).st_size
        if size % cls.ENTRY_SIZE:
            raise IndexCorruptError(f"{path}: size {size} is not a multiple of {cls.ENTRY_SIZE}")
        n = size // cls.ENTRY_SIZE
        index.entries = index.capacity = n
        if n:
            raw = np.memmap(path, dtype=np.uint8, mode="r")
            index._cols = _split_columns(raw, cls.DTYPES, n)
        return index

    @classmethod
    def read_raw_columns(cls, path: Path) -> list[np.ndarray] | None:
        """All ``C`` rows of each column of a (possibly preallocated) file, copied into
        memory; None if the file is missing or has a bad size. Used by crash recovery."""
        try:
            raw = np.fromfile(path, dtype=np.uint8)
        except (FileNotFoundError, OSError):
            return None
        if raw.size % cls.ENTRY_SIZE:
            return None
        return _split_columns(raw, cls.DTYPES, raw.size // cls.ENTRY_SIZE)

    @classmethod
    def growable(cls, path: Path, capacity: int, columns: list[np.ndarray] | None = None) -> Self:
        """The active segment's index: in-memory columns holding ``columns``, appendable up
        to ``capacity`` entries (then :attr:`is_full`, and the segment rolls). No file, no
        map, no file descriptor: the entries are derived from the log, crash recovery
        rebuilds them, and :meth:`trim_and_close` writes the trimmed file at the seal.
        Storage grows by doubling from a small start, so an idle partition costs ~1 KiB,
        not ``capacity`` rows (decision 0011)."""
        n = len(columns[0]) if columns else 0
        capacity = max(capacity, n)
        index = cls(path)
        alloc = min(capacity, max(_GROWABLE_START, 2 * n))
        index._cols = [np.zeros(alloc, dtype=dt) for dt in cls.DTYPES]
        if n and columns is not None:
            for col, values in zip(index._cols, columns, strict=True):
                col[:n] = values
        index.entries = n
        index.capacity = capacity
        index.writable = True
        index._memory = True
        return index

    @classmethod
    def in_memory(cls, path: Path, columns: list[np.ndarray]) -> Self:
        """A read-only index over in-memory columns (a read-only data directory rebuilds
        indexes this way instead of writing files). ``path`` is only a label."""
        index = cls(path)
        index._cols = [
            np.ascontiguousarray(c, dtype=dt) for c, dt in zip(columns, cls.DTYPES, strict=True)
        ]
        index.entries = index.capacity = len(index._cols[0])
        return index

    @classmethod
    def write_trimmed(cls, path: Path, columns: list[np.ndarray]) -> None:
        """Write a sealed (trimmed) index file atomically from in-memory columns."""
        parts = [
            np.ascontiguousarray(c, dtype=dt).tobytes()
            for c, dt in zip(columns, cls.DTYPES, strict=True)
        ]
        files.atomic_write(path, b"".join(parts))

    # -- access ----------------------------------------------------------------------------

    def column(self, i: int) -> np.ndarray:
        """Column ``i`` restricted to the live entries (a view; do not keep it)."""
        if not self.entries:
            return np.empty(0, dtype=self.DTYPES[i])
        return self._cols[i][: self.entries]

    def columns(self) -> list[np.ndarray]:
        """Copies of the live entries of every column."""
        return [np.array(self.column(i)) for i in range(len(self.DTYPES))]

    @property
    def is_full(self) -> bool:
        return self.writable and self.entries >= self.capacity

    def _append(self, *values: int) -> None:
        n = self.entries
        if n >= self.capacity:
            raise IndexError(f"{self.path}: index full ({self.capacity} entries)")
        if n >= len(self._cols[0]):  # a growable (in-memory) index: double its storage
            alloc = min(self.capacity, 2 * n)
            grown = [np.zeros(alloc, dtype=dt) for dt in self.DTYPES]
            for new, old in zip(grown, self._cols, strict=True):
                new[:n] = old[:n]
            self._cols = grown
        for col, value in zip(self._cols, values, strict=True):
            col[n] = value
        self.entries = n + 1

    # -- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Drop the columns (and with them a read-only file map)."""
        self._cols = []
        self.writable = False


def _column_offsets(dtypes: tuple[np.dtype, ...], capacity: int) -> list[int]:
    offsets = []
    pos = 0
    for dt in dtypes:
        offsets.append(pos)
        pos += dt.itemsize * capacity
    return offsets


def _split_columns(raw: np.ndarray, dtypes: tuple[np.dtype, ...], n: int) -> list[np.ndarray]:
    out = []
    for dt, off in zip(dtypes, _column_offsets(dtypes, n), strict=True):
        out.append(raw[off : off + dt.itemsize * n].view(dt))
    return out


class OffsetIndex(ColumnarIndex):
    """relative_offset (u32) and position (u32) of every batch of one segment."""

    DTYPES = (U32, U32)
    ENTRY_SIZE = 8

    def append(self, relative_offset: int, position: int) -> None:
        self._append(relative_offset, position)

    def lookup(self, relative_offset: int) -> int:
        """Entry number of the batch containing ``relative_offset`` (the last entry whose
        relative offset is <= it); -1 if it lies before the first entry."""
        rel = self.column(0)
        return int(rel.searchsorted(U32.type(relative_offset), side="right")) - 1

    def entry(self, k: int) -> tuple[int, int]:
        """(relative_offset, position) of entry ``k``."""
        return int(self._cols[0][k]), int(self._cols[1][k])

    def last_entry(self) -> tuple[int, int] | None:
        return self.entry(self.entries - 1) if self.entries else None

    def end_of_batches(self, k: int, max_bytes: int, data_size: int) -> int:
        """End position of the run of whole batches starting at entry ``k`` that fits in
        ``max_bytes``, but at least the whole batch ``k``."""
        positions = self.column(1)
        start = int(positions[k])
        limit = start + max_bytes
        if limit >= data_size:
            return data_size
        j = int(positions.searchsorted(U32.type(limit), side="right")) - 1
        if j > k:
            return int(positions[j])
        return int(positions[k + 1]) if k + 1 < self.entries else data_size

    def sanity_check(self, data_size: int) -> None:
        """Raise IndexCorruptError unless the entries can describe a log of ``data_size``."""
        n = self.entries
        if (n == 0) != (data_size == 0):
            raise IndexCorruptError(f"{self.path}: {n} entries for {data_size} data bytes")
        if n == 0:
            return
        rel, pos = self.column(0), self.column(1)
        if int(rel[0]) != 0 or int(pos[0]) != 0:
            raise IndexCorruptError(f"{self.path}: first entry is not (0, 0)")
        if n > 1 and (not bool(np.all(rel[1:] > rel[:-1])) or not bool(np.all(pos[1:] > pos[:-1]))):
            raise IndexCorruptError(f"{self.path}: entries are not strictly increasing")
        if int(pos[-1]) >= data_size:
            raise IndexCorruptError(f"{self.path}: last position {int(pos[-1])} >= {data_size}")


class TimeIndex(ColumnarIndex):
    """(max_timestamp i64, relative_offset u32), an entry whenever the max timestamp grows."""

    DTYPES = (I64, U32)
    ENTRY_SIZE = 12

    def append(self, max_timestamp: int, relative_offset: int) -> None:
        self._append(max_timestamp, relative_offset)

    def lookup(self, timestamp_ms: int) -> int | None:
        """Relative offset of the first batch whose max timestamp >= ``timestamp_ms``."""
        ts = self.column(0)
        k = int(ts.searchsorted(I64.type(timestamp_ms), side="left"))
        if k >= self.entries:
            return None
        return int(self._cols[1][k])

    def last_timestamp(self) -> int | None:
        return int(self._cols[0][self.entries - 1]) if self.entries else None

    def sanity_check(self, last_relative_offset: int | None) -> None:
        n = self.entries
        if (n == 0) != (last_relative_offset is None):
            raise IndexCorruptError(f"{self.path}: {n} entries disagree with the offset index")
        if n == 0:
            return
        ts, rel = self.column(0), self.column(1)
        if int(rel[0]) != 0:
            raise IndexCorruptError(f"{self.path}: first entry is not at relative offset 0")
        if n > 1 and (not bool(np.all(ts[1:] > ts[:-1])) or not bool(np.all(rel[1:] > rel[:-1]))):
            raise IndexCorruptError(f"{self.path}: entries are not strictly increasing")
        assert last_relative_offset is not None
        if int(rel[-1]) > last_relative_offset:
            raise IndexCorruptError(f"{self.path}: entry past the last batch")


def _read_last_entry(path: Path, entry_size: int, read: Callable[[int, int], T]) -> T | None:
    """``read(fd, n)`` on a trimmed index file of ``n`` whole entries, without mapping it;
    None when the file is missing, empty or not a whole number of entries."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        size = os.fstat(fd).st_size
        if size == 0 or size % entry_size:
            return None
        return read(fd, size // entry_size)
    finally:
        os.close(fd)


def read_last_timestamp(path: Path) -> int | None:
    """The last max_timestamp of a trimmed time index without mapping it (one pread)."""

    def last(fd: int, n: int) -> int:
        return int(np.frombuffer(os.pread(fd, 8, 8 * (n - 1)), dtype=I64)[0])

    return _read_last_entry(path, TimeIndex.ENTRY_SIZE, last)


def read_last_offset_entry(path: Path) -> tuple[int, int] | None:
    """(relative_offset, position) of the last entry of a trimmed offset index (two preads)."""

    def last(fd: int, n: int) -> tuple[int, int]:
        rel = int(np.frombuffer(os.pread(fd, 4, 4 * (n - 1)), dtype=U32)[0])
        pos = int(np.frombuffer(os.pread(fd, 4, 4 * n + 4 * (n - 1)), dtype=U32)[0])
        return rel, pos

    return _read_last_entry(path, OffsetIndex.ENTRY_SIZE, last)
