"""Is a batch well formed? Every rule about a batch's bytes that can be checked without
knowing the log it goes into.

Two depths:

* :func:`validate_batch`: the batch fits the buffer, the magic is known, the CRC matches and
  the header's own arithmetic holds (positive ``record_count``, ``records_length ==
  batch_length - 72``, known codec, an uncompressed section of exactly the declared size).
  One CRC pass, no record decoded: what recovery and the consumer need.
* :func:`check_batch`: the append-time check. ``validate_batch``, the buffer is exactly one
  batch, then :func:`check_record_section`: a batch with a valid CRC can still lie about its
  records (a ``record_count`` of 2**31-1 in a 200-byte compressed batch would burn two
  billion offsets; a compressed section may inflate to something else; the length columns
  may not add up to ``keys_length``/``values_length``/``headers_length``). Stored, such a
  batch is a poison pill every consumer fails on, forever.

The record-section rules, checked per batch with a few reductions over the four int32
columns (layout in ``header.py``), never per record in Python:

* ``key_lengths``/``value_lengths`` >= -1, ``header_lengths`` >= 0, and their sums (nulls as
  0) equal the header's three section lengths;
* ``first_timestamp + max(timestamp_deltas) == max_timestamp`` (the time index and retention
  trust ``max_timestamp``);
* compressed (zstd, lz4): the declared uncompressed size must be at most
  :data:`MAX_UNCOMPRESSED_SECTION` (or the caller's ``max_batch_bytes`` if larger), and the
  frame is inflated by the bounded :func:`compression.decompress` to exactly that size.

Up to :data:`SMALL_BATCH` records the columns are summed with ``struct`` and builtins, above
it with numpy; both paths apply the same rules with the same messages. Raises
InvalidBatchError (INVALID_RECORD) for intact bytes that break a rule and CorruptRecordError
(CORRUPT_MESSAGE) for damaged ones. Stateless and thread-safe.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from logstream.codec import compression
from logstream.codec.crc import crc32c
from logstream.codec.header import (
    COLUMN_DTYPE,
    CRC_START,
    HEADER_SIZE,
    MAGIC,
    RECORD_COLUMNS,
    BatchHeader,
    Buffer,
    columns_struct,
    read_header,
)
from logstream.errors import CorruptRecordError, InvalidBatchError

MAX_UNCOMPRESSED_SECTION: Final = 64 * 1024 * 1024
"""Largest uncompressed record section of a compressed batch (unless max_batch_bytes is
larger): bounds what one produce can make the broker (and every consumer) allocate."""

SMALL_BATCH: Final = 16
"""Up to this many records the columns are checked with ``struct`` and builtins: six numpy
reductions cost ~25 us whatever the size, most of a one-record produce at low latency."""


def validate_batch(buf: Buffer, pos: int = 0) -> BatchHeader:
    """Check one batch at ``pos``: fits the buffer, known magic, CRC, header arithmetic.

    Costs one CRC over the batch; decodes no record. Raises CorruptRecordError (damaged
    bytes) or InvalidBatchError (intact bytes that break a rule).
    """
    header = read_header(buf, pos)
    length = header.batch_length
    if length < HEADER_SIZE:
        raise CorruptRecordError(f"batch_length {length} is smaller than the header")
    if length > len(buf) - pos:
        raise CorruptRecordError(
            f"truncated batch: batch_length {length}, only {len(buf) - pos} bytes present"
        )
    if header.magic != MAGIC:
        raise CorruptRecordError(f"unknown batch magic {header.magic}")
    actual = crc32c(memoryview(buf)[pos + CRC_START : pos + length])
    if actual != header.crc:
        raise CorruptRecordError(
            f"CRC mismatch: stored {header.crc:#010x}, computed {actual:#010x}"
        )
    check_header_arithmetic(header)
    return header


def check_header_arithmetic(h: BatchHeader) -> None:
    """The rules a header must satisfy on its own (no CRC, no record section)."""
    if h.record_count <= 0:
        raise InvalidBatchError(f"record_count {h.record_count} must be positive")
    if h.records_length != h.batch_length - HEADER_SIZE:
        raise InvalidBatchError("records_length does not match batch_length")
    if min(h.keys_length, h.values_length, h.headers_length) < 0:
        raise InvalidBatchError("negative section length")
    if h.compression not in compression.KNOWN:
        raise InvalidBatchError(f"unknown compression codec {h.compression}")
    if h.compression == compression.NONE and h.records_length != h.section_size:
        raise InvalidBatchError(
            f"record section is {h.records_length} bytes, header promises {h.section_size}"
        )
    if h.max_timestamp < h.first_timestamp:
        raise InvalidBatchError("max_timestamp is before first_timestamp")


def check_batch(buf: Buffer, *, max_batch_bytes: int = 0) -> BatchHeader:
    """The append-time check of a buffer holding exactly one batch: :func:`validate_batch`
    and then :func:`check_record_section`. Returns the header."""
    header = validate_batch(buf)
    nbytes = buf.nbytes if isinstance(buf, memoryview) else len(buf)
    if header.batch_length != nbytes:
        raise InvalidBatchError(
            f"append takes exactly one batch: batch_length {header.batch_length}, "
            f"buffer {nbytes} bytes"
        )
    check_record_section(buf, header, max_batch_bytes=max_batch_bytes)
    return header


def check_record_section(batch: Buffer, header: BatchHeader, *, max_batch_bytes: int = 0) -> None:
    """Raise unless the record section of ``batch`` (at position 0, already validated)
    matches ``header``. A compressed section is inflated once, bounded by its declared size."""
    expected = header.section_size
    if header.compression == compression.NONE:
        section: Buffer = batch
        start = HEADER_SIZE
    else:
        limit = max(MAX_UNCOMPRESSED_SECTION, max_batch_bytes)
        if expected > limit:
            raise InvalidBatchError(
                f"compressed batch declares {expected} uncompressed bytes "
                f"({header.record_count} records); the limit is {limit}"
            )
        stored = memoryview(batch)[HEADER_SIZE : header.batch_length]
        section = compression.decompress(header.compression, stored, expected)
        start = 0
    _check_columns(section, start, header)


def _check_columns(buf: Buffer, start: int, header: BatchHeader) -> None:
    """The column rules for the uncompressed record section at ``start`` of ``buf``."""
    if header.record_count <= SMALL_BATCH:
        _check_columns_small(buf, start, header)
    else:
        _check_columns_numpy(buf, start, header)


def _check_columns_numpy(buf: Buffer, start: int, header: BatchHeader) -> None:
    n = header.record_count
    cols = np.frombuffer(buf, dtype=COLUMN_DTYPE, count=RECORD_COLUMNS * n, offset=start)
    cols = cols.reshape(RECORD_COLUMNS, n)
    key_value = cols[:2]
    header_lengths = cols[3]
    require_lengths(int(key_value.min()), int(header_lengths.min()))
    nulls = np.count_nonzero(key_value == -1, axis=1)
    keys, values = (key_value.sum(axis=1, dtype=np.int64) + nulls).tolist()
    headers = int(header_lengths.sum(dtype=np.int64))
    require_totals(keys, values, headers, header)
    require_max_timestamp(int(cols[2].max()), header)


def _check_columns_small(buf: Buffer, start: int, header: BatchHeader) -> None:
    n = header.record_count
    cols = columns_struct(n).unpack_from(buf, start)
    key_lengths, value_lengths = cols[:n], cols[n : 2 * n]
    deltas, header_lengths = cols[2 * n : 3 * n], cols[3 * n :]
    require_lengths(min(min(key_lengths), min(value_lengths)), min(header_lengths))
    keys = sum(key_lengths) + key_lengths.count(-1)
    values = sum(value_lengths) + value_lengths.count(-1)
    require_totals(keys, values, sum(header_lengths), header)
    require_max_timestamp(max(deltas), header)


def require_lengths(min_key_or_value: int, min_header: int) -> None:
    """Key and value lengths are >= -1 (-1 is null), header-blob lengths >= 0."""
    if min_key_or_value < -1 or min_header < 0:
        raise InvalidBatchError("a record length is below -1 (or a header length below 0)")


def require_totals(keys: int, values: int, headers: int, header: BatchHeader) -> None:
    """The section totals of the columns (nulls counted as 0) match the header."""
    if (keys, values, headers) != (
        header.keys_length,
        header.values_length,
        header.headers_length,
    ):
        raise InvalidBatchError(
            f"record lengths add up to keys {keys}, values {values}, headers {headers}; the "
            f"header says {header.keys_length}, {header.values_length}, "
            f"{header.headers_length}"
        )


def require_max_timestamp(max_delta: int, header: BatchHeader) -> None:
    """The largest record timestamp is the header's ``max_timestamp``."""
    max_ts = header.first_timestamp + max_delta
    if max_ts != header.max_timestamp:
        raise InvalidBatchError(
            f"max_timestamp {header.max_timestamp} but the records' largest is {max_ts}"
        )
