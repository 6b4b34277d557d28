"""Scans over a segment's bytes: pure functions that read and return what they found.

Nothing here writes a file or holds a segment: the callers (``segment.py`` for crash
recovery and index rebuilds, ``snapshot.py`` for read-only views, ``tools/verify_log.py``)
decide what to cut, keep or index from the returned :class:`ScanResult`.

A scan walks back-to-back batches from a start position. It ends normally at an all-zero
header (the reserved zero tail of an active or parked segment) or at the end of the bytes;
it ends with a :class:`ScanFailure` at the first batch that is damaged (bad header, length
or CRC), whose base offset breaks the contiguity of offsets, or whose offsets no longer fit
the indexes' u32 relative offset (see :data:`~logstream.storage.index.MAX_RELATIVE_OFFSET`).

Crash recovery (:func:`scan_tail`) reads only a file's data regions (``SEEK_HOLE`` /
``SEEK_DATA``): the reserved, never-written tail of an active segment is a hole on ext4, so
a crashed 64 MiB segment holding a few KB costs a few KB of reads. Up to the last entry of
the old offset index that still points at a valid batch ("trusted") only headers are
checked; from there on every batch's length and CRC. A failure that a batch which parses
follows is damage, not a torn tail (:func:`resume_after_damage`, decision 0034): the scan
goes on past it and reports where the data really ends.

Concurrency: the functions share no state and are safe from any thread; the caller owns
the file descriptors it passes.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from logstream.codec import (
    HEADER_SIZE,
    MAGIC,
    MAGIC_POS,
    BatchHeader,
    read_header,
    validate_batch,
)
from logstream.errors import CorruptRecordError
from logstream.storage.index import MAX_RELATIVE_OFFSET, U32, OffsetIndex, read_last_offset_entry

_READ_CHUNK = 1 << 20  # bytes per pread when a scan reads a file piecewise


class ScanFailureKind(enum.Enum):
    """Why a scan stopped before the end of the bytes (a zero tail is not a failure)."""

    CORRUPT_BATCH = "corrupt batch"  # bad header, length or CRC
    OFFSET_GAP = "offset gap"  # base offset is not the previous batch's next offset
    RELATIVE_OFFSET_OVERFLOW = "relative offset overflows u32"  # the indexes cannot hold it


@dataclass(frozen=True, slots=True)
class ScanFailure:
    """The first batch a scan refused, where it starts and why."""

    kind: ScanFailureKind
    position: int
    detail: str

    def __str__(self) -> str:
        return f"position {self.position}: {self.kind.value}: {self.detail}"


@dataclass
class ScanResult:
    """What a walk over a segment's bytes found: the good batches and where they end."""

    end_position: int = 0
    next_offset: int = 0
    positions: list[int] = field(default_factory=list)
    headers: list[BatchHeader] = field(default_factory=list)
    failure: ScanFailure | None = None


@dataclass(frozen=True, slots=True)
class TailScan:
    """What :func:`scan_tail` found in a segment that was not closed cleanly.

    ``scan`` holds the good batches before the first failure (what the indexes cover).
    Without damage, ``end`` and ``next_offset`` are the scan's own; with ``damaged`` (good
    batches follow the failure: corruption, not a torn tail) they lie past those batches,
    and ``last_batch_pos`` is where the last of them starts."""

    scan: ScanResult
    file_size: int  # the file's size as found (capacity of an untrimmed segment)
    garbage_bytes: int  # non-zero bytes past ``end`` (the torn tail a cut removes)
    end: int = 0
    next_offset: int = 0
    damaged: bool = False
    last_batch_pos: int = -1


def scan_batches(buf: bytes | memoryview, base_offset: int, *, verify_from: int = 0) -> ScanResult:
    """Walk back-to-back batches in ``buf`` from position 0, the first one expected at
    ``base_offset``. Batches at positions >= ``verify_from`` get a full ``validate_batch``
    (length + CRC); earlier ones a header check."""
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
                result.failure = ScanFailure(ScanFailureKind.CORRUPT_BATCH, pos, str(exc))
            break
        if header.base_offset != expected:
            result.failure = ScanFailure(
                ScanFailureKind.OFFSET_GAP,
                pos,
                f"base offset {header.base_offset}, expected {expected}",
            )
            break
        if header.next_offset - base_offset > MAX_RELATIVE_OFFSET:
            result.failure = ScanFailure(
                ScanFailureKind.RELATIVE_OFFSET_OVERFLOW,
                pos,
                f"next offset {header.next_offset} is more than {MAX_RELATIVE_OFFSET} past "
                f"the segment base {base_offset}",
            )
            break
        result.positions.append(pos)
        result.headers.append(header)
        pos += header.batch_length
        expected = header.next_offset
    result.end_position = pos
    result.next_offset = expected
    return result


IndexColumns = list[npt.NDArray[Any]]  # the columns of one index, in DTYPES order


def index_columns(
    base_offset: int, positions: list[int], headers: list[BatchHeader]
) -> tuple[IndexColumns, IndexColumns]:
    """Offset-index and time-index columns for scanned batches."""
    rel = np.array([h.base_offset - base_offset for h in headers], dtype=U32)
    pos = np.array(positions, dtype=U32)
    ts_list: list[int] = []
    ts_rel: list[int] = []
    running: int | None = None
    for h in headers:
        if running is None or h.max_timestamp > running:
            running = h.max_timestamp
            ts_list.append(h.max_timestamp)
            ts_rel.append(h.base_offset - base_offset)
    return [rel, pos], [np.array(ts_list, dtype=np.int64), np.array(ts_rel, dtype=U32)]


def scan_tail(fd: int, base_offset: int, index_path: Path) -> TailScan:
    """Crash recovery's scan of the last segment open at ``fd``: read its data regions,
    trust the batches up to the last still-valid entry of the old offset index at
    ``index_path`` (headers only), verify every batch after it, and measure the non-zero
    bytes past the last good batch. Reads only; raises OSError from the reads."""
    file_size = os.fstat(fd).st_size
    data_end = first_hole(fd, file_size)
    data = pread_all(fd, data_end)
    trusted = trusted_position(data, base_offset, index_path)
    scan = scan_batches(data, base_offset, verify_from=trusted)
    cut, next_offset = scan.end_position, scan.next_offset
    last_pos = scan.positions[-1] if scan.positions else -1
    damaged = False
    if scan.failure is not None:
        hints: list[tuple[int, int | None]] = []
        with contextlib.suppress(OSError, ValueError, IndexError):
            entry = read_last_offset_entry(index_path)
            if entry is not None:
                hints.append((entry[1], base_offset + entry[0]))
        resumed = resume_after_damage(data, scan, hints)
        if resumed is not None:
            damaged = True
            cut, next_offset, last_pos = resumed
    end = max(last_nonzero(data, cut), nonzero_end(fd, data_end, file_size))
    return TailScan(scan, file_size, end - cut, cut, next_offset, damaged, last_pos)


_MAX_DAMAGED_RUN = 64
"""Damaged batches in a row that :func:`resume_after_damage` follows by their own lengths
before it looks for the next batch by its header alone."""


def resume_after_damage(
    data: bytes | memoryview, result: ScanResult, hints: Sequence[tuple[int, int | None]] = ()
) -> tuple[int, int, int] | None:
    """Where the data of a last segment ends when good batches follow the damage at which
    ``result`` (a scan of ``data`` from its start) stopped: ``(end position, next offset,
    position of the last good batch)``, or None when none follows.

    The rule that tells damage from a torn tail: a torn tail is only the bytes after the
    last batch that parses (a whole batch whose CRC holds, at an offset not below the one
    expected); damage that such a batch follows is corruption, not a tail, and the bytes
    up to the last parsable batch are kept. A crashed writer tears only its last append;
    anything it wrote whole after a damaged range was written (and maybe acknowledged)
    before the crash.

    The next parsable batch is looked for where ``hints`` say (``(position, base offset
    or None)``: a sealed index's last entry, a clean-shutdown record), then past the
    damaged batches by their own lengths (also several in a row), then at every later
    position whose header could start a batch. Past a batch found, the scan goes on; a
    second damaged range is passed the same way."""
    end = len(data)
    pos, expected = result.end_position, result.next_offset
    found: tuple[int, int, int] | None = None
    while True:
        at = _next_parsable(data, pos, expected, hints)
        if at is None:
            return found
        rest = scan_batches(memoryview(data)[at:], read_header(data, at).base_offset)
        last = at + rest.positions[-1]
        found = (at + rest.end_position, rest.next_offset, last)
        pos, expected = found[0], found[1]
        if rest.failure is None or pos + HEADER_SIZE > end:
            return found


def _next_parsable(
    data: bytes | memoryview, cut: int, expected: int, hints: Sequence[tuple[int, int | None]]
) -> int | None:
    """The position of the first batch after ``cut`` that parses (see
    :func:`resume_after_damage`), or None."""
    end = len(data)

    def parses(pos: int, base: int | None = None) -> bool:
        if pos <= cut or pos + HEADER_SIZE > end:
            return False
        try:
            header = read_header(data, pos)
            if (
                header.magic != MAGIC
                or header.base_offset < expected
                or header.record_count <= 0
                or header.batch_length > end - pos
            ):
                return False
            if base is not None and header.base_offset != base:
                return False
            validate_batch(data, pos)
        except CorruptRecordError:
            return False
        return True

    for pos, base in hints:
        if parses(pos, base):
            return pos
    pos = cut
    for _ in range(_MAX_DAMAGED_RUN):  # damaged batches whose lengths still hold
        try:
            length = read_header(data, pos).batch_length
        except CorruptRecordError:
            break
        if length < HEADER_SIZE or pos + length + HEADER_SIZE > end:
            break
        pos += length
        if parses(pos):
            return pos
    view = np.frombuffer(data, dtype=np.uint8)
    starts = np.flatnonzero(view[cut + 1 + MAGIC_POS : end - HEADER_SIZE + 1 + MAGIC_POS] == MAGIC)
    for start in (starts + cut + 1).tolist():
        if parses(start):
            return int(start)
    return None


def scan_appended(fd: int, start: int, expected_offset: int) -> ScanResult:
    """Scan the batches a writer appended to the file at ``fd`` from byte ``start`` on (the
    first expected at ``expected_offset``), about 1 MiB per read, stopping at the zero tail,
    a torn batch or the first failure. Positions in the result are file positions."""
    file_end = os.fstat(fd).st_size
    out = ScanResult(end_position=start, next_offset=expected_offset)
    pos, expected = start, expected_offset
    while file_end - pos >= HEADER_SIZE:
        head = os.pread(fd, HEADER_SIZE, pos)
        if not any(head):
            break
        try:
            want = max(_READ_CHUNK, read_header(head).batch_length)
        except CorruptRecordError:
            break
        data = pread_all(fd, min(pos + want, file_end), start=pos)
        result = scan_batches(data, expected)
        out.failure = result.failure
        if not result.headers:
            break
        out.positions += [pos + p for p in result.positions]
        out.headers += result.headers
        pos += result.end_position
        expected = result.next_offset
    out.end_position, out.next_offset = pos, expected
    return out


def trusted_position(data: bytes, base_offset: int, index_path: Path) -> int:
    """Position of the last entry of the old offset index at ``index_path`` that still
    points at a valid batch with the expected base offset; 0 if none (verify everything)."""
    cols = OffsetIndex.read_raw_columns(index_path)
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
        if header.base_offset == base_offset + int(rel[k]):
            return p
    return 0


def base_offset_at(data: bytes) -> int:
    """The base offset of the batch starting at ``data[0]`` (0 if too short)."""
    return read_header(data, 0).base_offset if len(data) >= HEADER_SIZE else 0


def last_nonzero(buf: bytes, start: int) -> int:
    """1 + position of the last non-zero byte at or after ``start`` (``start`` if none)."""
    arr = np.frombuffer(buf, dtype=np.uint8)
    end = len(buf)
    while end > start:
        lo = max(start, end - _READ_CHUNK)
        nz = np.flatnonzero(arr[lo:end])
        if nz.size:
            return lo + int(nz[-1]) + 1
        end = lo
    return start


def first_hole(fd: int, file_size: int) -> int:
    """Where the first hole of ``fd`` starts (``file_size`` if none or unsupported)."""
    try:
        return min(os.lseek(fd, 0, os.SEEK_HOLE), file_size)
    except (OSError, AttributeError):
        return file_size


def nonzero_end(fd: int, start: int, file_size: int) -> int:
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
            chunk = os.pread(fd, min(_READ_CHUNK, stop - pos), pos)
            if not chunk:
                return end
            last = last_nonzero(chunk, 0)
            if last:
                end = pos + last
            pos += len(chunk)
    return end


def pread_all(fd: int, size: int, *, start: int = 0) -> bytes:
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
