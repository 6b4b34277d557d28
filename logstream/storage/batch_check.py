"""Does a batch's record section agree with its header? Checked once, before an append.

``codec.validate_batch`` checks the CRC and the header arithmetic, which is all the
broker's hot path needs to store bytes safely. But a batch with a valid CRC can still lie
about its records: a ``record_count`` of 2**31-1 in a 200-byte compressed batch (it would
burn two billion offsets), a compressed section that decompresses to something else, or
length columns that do not add up to ``keys_length``/``values_length``/``headers_length``.
Stored, such a batch is a poison pill: every consumer fails to decode it, forever.

:func:`check_record_section` looks at the record section as a whole, per batch, never per
record in Python (a few numpy reductions over the four int32 columns, see
``logstream/codec/batch.py`` for the layout):

* uncompressed: ``key_lengths``/``value_lengths`` >= -1, ``header_lengths`` >= 0, their
  clipped sums equal the header's three section lengths, and ``first_timestamp +
  max(timestamp_deltas) == max_timestamp`` (the time index and retention trust
  ``max_timestamp``);
* compressed (zstd, lz4): the declared uncompressed size ``16 * record_count + keys_length
  + values_length + headers_length`` must be at most :data:`MAX_UNCOMPRESSED_SECTION` (or
  the topic's ``max_batch_bytes`` if larger); a size the frame header declares must equal
  it; the frame is decompressed with its output bounded by it (no decompression bomb) and
  must produce exactly that many bytes; then the same column checks. This costs one
  decompression per compressed batch; uncompressed batches (the default) pay ~10 µs.

Raises ``InvalidBatchError`` (INVALID_RECORD) for intact bytes that break a rule and
``CorruptRecordError`` (CORRUPT_MESSAGE) for a section that cannot be decompressed.
Stateless and thread-safe.
"""

from __future__ import annotations

import struct

import numpy as np

from logstream.codec import compression
from logstream.codec.batch import HEADER_SIZE, RECORD_COLUMN_BYTES, BatchHeader
from logstream.errors import CorruptRecordError, InvalidBatchError

MAX_UNCOMPRESSED_SECTION = 64 * 1024 * 1024
"""Largest uncompressed record section of a compressed batch (unless max_batch_bytes is
larger): bounds what one produce can make the broker (and every consumer) allocate."""

COLUMN = np.dtype("<i4")
COLUMNS = 4  # key_lengths, value_lengths, timestamp_deltas, header_lengths


def check_record_section(
    batch: bytes | bytearray | memoryview, header: BatchHeader, *, max_batch_bytes: int = 0
) -> None:
    """Raise unless the record section of ``batch`` (already CRC-checked) matches ``header``."""
    n = header.record_count
    expected = (
        RECORD_COLUMN_BYTES * n
        + header.keys_length
        + header.values_length
        + header.headers_length
    )
    if header.compression == compression.NONE:
        section: bytes | bytearray | memoryview = batch
        start = HEADER_SIZE
    else:
        limit = max(MAX_UNCOMPRESSED_SECTION, max_batch_bytes)
        if expected > limit:
            raise InvalidBatchError(
                f"compressed batch declares {expected} uncompressed bytes "
                f"({n} records); the limit is {limit}"
            )
        stored = memoryview(batch)[HEADER_SIZE : header.batch_length]
        section = _decompress(header.compression, stored, expected)
        start = 0
    _check_columns(section, start, n, header)


def _decompress(codec: int, data: memoryview, expected: int) -> bytes:
    try:
        if codec == compression.ZSTD:
            import zstandard

            declared = zstandard.frame_content_size(data)
            if declared not in (-1, expected):
                raise InvalidBatchError(
                    f"zstd frame declares {declared} bytes, the header {expected}"
                )
            out = zstandard.ZstdDecompressor().decompress(
                bytes(data), max_output_size=max(expected, 1)
            )
        elif codec == compression.LZ4:
            import lz4.frame

            declared = lz4.frame.get_frame_info(bytes(data)).get("content_size", 0)
            if declared not in (0, expected):
                raise InvalidBatchError(
                    f"lz4 frame declares {declared} bytes, the header {expected}"
                )
            d = lz4.frame.LZ4FrameDecompressor()
            out = d.decompress(bytes(data), max_length=expected + 1)
            if not d.eof:
                raise InvalidBatchError("lz4 frame is incomplete or holds more than declared")
        else:  # validate_batch refused unknown codecs already
            raise InvalidBatchError(f"unknown compression codec {codec}")
    except (InvalidBatchError, CorruptRecordError):
        raise
    except Exception as exc:  # the libraries raise their own error types
        raise CorruptRecordError(f"cannot decompress the record section: {exc}") from exc
    if len(out) != expected:
        raise InvalidBatchError(
            f"record section decompresses to {len(out)} bytes, the header says {expected}"
        )
    return bytes(out)


SMALL_BATCH = 16
"""Up to this many records the columns are checked with ``struct`` and builtins: six numpy
reductions cost ~25 µs whatever the size, most of a one-record produce at low latency."""


def _check_columns(
    buf: bytes | bytearray | memoryview, start: int, n: int, header: BatchHeader
) -> None:
    if n <= SMALL_BATCH:
        _check_columns_small(buf, start, n, header)
        return
    cols = np.frombuffer(buf, dtype=COLUMN, count=COLUMNS * n, offset=start).reshape(COLUMNS, n)
    key_value = cols[:2]
    header_lengths = cols[3]
    if int(key_value.min()) < -1 or int(header_lengths.min()) < 0:
        raise InvalidBatchError("a record length is below -1 (or a header length below 0)")
    nulls = np.count_nonzero(key_value == -1, axis=1)
    keys, values = (key_value.sum(axis=1, dtype=np.int64) + nulls).tolist()
    headers = int(header_lengths.sum(dtype=np.int64))
    _check_against_header(keys, values, headers, int(cols[2].max()), header)


def _check_columns_small(
    buf: bytes | bytearray | memoryview, start: int, n: int, header: BatchHeader
) -> None:
    """:func:`_check_columns` for a few records: the same rules and messages, no numpy."""
    cols = struct.unpack_from(f"<{COLUMNS * n}i", buf, start)
    key_lengths, value_lengths = cols[:n], cols[n : 2 * n]
    deltas, header_lengths = cols[2 * n : 3 * n], cols[3 * n :]
    if n and (min(key_lengths) < -1 or min(value_lengths) < -1 or min(header_lengths) < 0):
        raise InvalidBatchError("a record length is below -1 (or a header length below 0)")
    keys = sum(key_lengths) + key_lengths.count(-1)
    values = sum(value_lengths) + value_lengths.count(-1)
    _check_against_header(keys, values, sum(header_lengths), max(deltas) if n else 0, header)


def _check_against_header(
    keys: int, values: int, headers: int, max_delta: int, header: BatchHeader
) -> None:
    """The section totals (nulls counted as 0) and the largest timestamp delta of the
    columns must match the header."""
    if (keys, values, headers) != (header.keys_length, header.values_length,
                                   header.headers_length):
        raise InvalidBatchError(
            f"record lengths add up to keys {keys}, values {values}, headers {headers}; the "
            f"header says {header.keys_length}, {header.values_length}, "
            f"{header.headers_length}"
        )
    max_ts = header.first_timestamp + max_delta
    if max_ts != header.max_timestamp:
        raise InvalidBatchError(
            f"max_timestamp {header.max_timestamp} but the records' largest is {max_ts}"
        )
