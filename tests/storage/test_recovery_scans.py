"""The pure scans of storage/recovery.py and the SegmentSet lookups, without a PartitionLog."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from storage_helpers import make_batch

from logstream.codec import RECORD_COUNT_POS, stamp_base_offset
from logstream.storage.index import MAX_RELATIVE_OFFSET
from logstream.storage.recovery import ScanFailureKind, scan_batches, scan_tail
from logstream.storage.segment_reader import SegmentReader
from logstream.storage.segment_set import SegmentSet


def _log(*counts: int, base: int = 0) -> bytearray:
    """Batches of ``counts`` records back to back, offsets stamped from ``base``."""
    out = bytearray()
    for i, n in enumerate(counts):
        batch = bytearray(make_batch(n, tag=i))
        stamp_base_offset(batch, base)
        base += n
        out += batch
    return out


def test_a_zero_tail_is_a_normal_end():
    data = _log(2, 3) + bytes(4096)
    result = scan_batches(bytes(data), 0)
    assert result.failure is None
    assert result.next_offset == 5 and result.end_position == len(data) - 4096
    assert len(result.headers) == 2


def test_a_damaged_batch_is_a_corrupt_batch_failure_at_its_position():
    data = _log(2, 3, 4)
    second = len(_log(2))
    data[second + 40] ^= 0xFF  # inside the CRC-covered part of the second batch
    result = scan_batches(bytes(data), 0)
    assert result.failure is not None
    assert result.failure.kind is ScanFailureKind.CORRUPT_BATCH
    assert result.failure.position == second == result.end_position
    assert result.next_offset == 2


def test_a_break_in_offsets_is_an_offset_gap():
    data = _log(2) + _log(3, base=7)
    result = scan_batches(bytes(data), 0)
    assert result.failure is not None and result.failure.kind is ScanFailureKind.OFFSET_GAP
    assert "expected 2" in str(result.failure)


def test_offsets_past_the_u32_of_the_index_are_their_own_failure():
    """Headers only (the trusted region), so record counts can be made huge."""
    big = (1 << 31) - 1
    data = _log(1, 1, 1)
    size = len(data) // 3
    base = 0
    for i, count in enumerate((big, big, 2)):
        struct.pack_into("<i", data, i * size + RECORD_COUNT_POS, count)
        stamp_base_offset(data, base, i * size)
        base += count
    assert base > MAX_RELATIVE_OFFSET  # the next offset no longer fits
    result = scan_batches(bytes(data), 0, verify_from=len(data) + 1)
    assert result.failure is not None
    assert result.failure.kind is ScanFailureKind.RELATIVE_OFFSET_OVERFLOW
    assert result.failure.position == 2 * size and len(result.headers) == 2


def test_scan_tail_measures_garbage_past_the_last_good_batch(tmp_path: Path):
    good = _log(2, 3)
    path = tmp_path / "s.log"
    path.write_bytes(bytes(good) + b"\x01garbage" + bytes(1 << 16))
    fd = os.open(path, os.O_RDONLY)
    try:
        tail = scan_tail(fd, 0, tmp_path / "missing.index")
    finally:
        os.close(fd)
    assert tail.scan.end_position == len(good) and tail.scan.next_offset == 5
    assert tail.garbage_bytes == len(b"\x01garbage")
    assert tail.file_size == len(good) + 8 + (1 << 16)


def test_segment_set_finds_the_segment_holding_an_offset(tmp_path: Path):
    segs = SegmentSet([SegmentReader(tmp_path, b, 0) for b in (0, 10, 25)])
    assert [segs.floor(o).base_offset for o in (0, 9, 10, 24, 25, 1000)] == [0, 0, 10, 10, 25, 25]
    assert segs.floor_index(-1) == -1
    gone = segs.drop_prefix(2)
    assert [s.base_offset for s in gone] == [0, 10] and segs.bases == [25]
    assert segs.floor(30).base_offset == 25 and len(segs) == 1
