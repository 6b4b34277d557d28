"""The fixed batch header: its one layout, reading it, walking batches, stamping in place.

On-disk and on-the-wire layout (all integers little-endian)::

    offset  size  field             notes
    ------  ----  ----------------  --------------------------------------------------------
     0      8     base_offset       int64; offset of record 0. Stamped by the broker on append,
                                    so it is NOT covered by the CRC.
     8      4     batch_length      int32; total bytes of this batch, header included.
    12      1     magic             uint8; format version, currently 1.
    13      4     crc               uint32; CRC32C (Castagnoli) of bytes [17, batch_length).
    17      2     attributes        uint16; bits 0-2 compression (0 none, 1 zstd, 2 lz4),
                                    bit 3 timestamp type (0 create time, 1 log-append time).
    19      4     record_count      int32; N >= 0.
    23      8     first_timestamp   int64; ms since epoch of record 0 (the delta base).
    31      8     max_timestamp     int64; largest record timestamp in the batch.
    39      8     producer_id       int64; -1 when the producer is not idempotent.
    47      2     producer_epoch    int16; -1 when not idempotent.
    49      4     base_sequence     int32; sequence number of record 0, -1 when not idempotent.
    53      4     keys_length       int32; bytes of the concatenated keys (uncompressed).
    57      4     values_length     int32; bytes of the concatenated values (uncompressed).
    61      4     headers_length    int32; bytes of the concatenated header blobs (uncompressed).
    65      4     records_length    int32; bytes of the record section as stored (maybe compressed);
                                    always batch_length - 72.
    69      3     (reserved, zero)  pads the header to 72 bytes so the int32 columns are aligned.
    72            record section    (compressed as a whole when attributes say so)

The record section, uncompressed, is columnar: four int32 arrays of N entries, then three
byte runs::

    key_lengths[N]        int32; -1 means a null key (it then takes no bytes)
    value_lengths[N]      int32; -1 means a null value
    timestamp_deltas[N]   int32; record timestamp - first_timestamp (ms), so one batch spans
                          at most ~24 days
    header_lengths[N]     int32; bytes of each record's header blob (0 for no headers)
    keys                  keys_length bytes, concatenated in record order
    values                values_length bytes
    headers               headers_length bytes; one blob per record that has headers:
                          uint16 count, then per header: uint16 name length, UTF-8 name,
                          int32 value length (-1 null), value bytes

Because every per-record length sits in a fixed-width array, record boundaries are a
cumulative sum (``numpy.cumsum``): neither encoding nor decoding walks the records in Python.

The CRC starts after itself (byte 17), so ``base_offset``, ``batch_length`` and ``magic`` are
outside it: the broker stamps ``base_offset`` in place without touching the CRC
(:func:`stamp_base_offset`), and a damaged ``batch_length`` still fails the check, because
the CRC is computed over the range it names. Stamping log-append time changes covered fields,
so :func:`stamp_log_append_time` recomputes the CRC.

Crash story: a batch is written as one copy. A torn write leaves either a short batch
(``batch_length`` reaches past the end of what was written, or zeros) or a CRC mismatch, both
detected by ``validate_batch`` (``check.py``), which storage recovery uses to cut the log at
the first bad batch.

Every field position below is computed from :data:`HEADER`'s format; none is typed by hand.
Functions here are pure and thread-safe; the stamping ones write only the batch they are given.
"""

from __future__ import annotations

import functools
import itertools
import struct
from collections.abc import Iterator
from typing import Final, NamedTuple

import numpy as np

from logstream.codec.crc import crc32c
from logstream.errors import CorruptRecordError

Buffer = bytes | bytearray | memoryview
WritableBuffer = bytearray | memoryview

MAGIC: Final = 1

_LAYOUT: Final[tuple[tuple[str, str], ...]] = (
    ("base_offset", "q"),  # offset of record 0; stamped on append, outside the CRC
    ("batch_length", "i"),  # whole batch in bytes, header included
    ("magic", "B"),  # format version (MAGIC)
    ("crc", "I"),  # CRC32C of [attributes, batch end)
    ("attributes", "H"),  # compression bits 0-2, timestamp type bit 3
    ("record_count", "i"),  # N
    ("first_timestamp", "q"),  # ms; the base of the per-record deltas
    ("max_timestamp", "q"),  # ms; largest record timestamp
    ("producer_id", "q"),  # -1 unless idempotent
    ("producer_epoch", "h"),  # -1 unless idempotent
    ("base_sequence", "i"),  # sequence of record 0, -1 unless idempotent
    ("keys_length", "i"),  # uncompressed bytes of all keys
    ("values_length", "i"),  # uncompressed bytes of all values
    ("headers_length", "i"),  # uncompressed bytes of all header blobs
    ("records_length", "i"),  # record section as stored (batch_length - HEADER_SIZE)
)
_PADDING: Final = "3x"  # zero bytes so the int32 columns after the header are aligned

HEADER: Final = struct.Struct("<" + "".join(code for _, code in _LAYOUT) + _PADDING)
HEADER_SIZE: Final = HEADER.size

_FIELD: Final = {name: struct.Struct("<" + code) for name, code in _LAYOUT}
_POSITION: Final = dict(
    zip(
        (name for name, _ in _LAYOUT),
        itertools.accumulate((_FIELD[name].size for name, _ in _LAYOUT), initial=0),
        strict=False,
    )
)

BASE_OFFSET_POS: Final = _POSITION["base_offset"]
BATCH_LENGTH_POS: Final = _POSITION["batch_length"]
MAGIC_POS: Final = _POSITION["magic"]
CRC_POS: Final = _POSITION["crc"]
ATTRIBUTES_POS: Final = _POSITION["attributes"]
CRC_START: Final = ATTRIBUTES_POS  # the CRC covers [CRC_START, batch_length)
RECORD_COUNT_POS: Final = _POSITION["record_count"]
FIRST_TIMESTAMP_POS: Final = _POSITION["first_timestamp"]
MAX_TIMESTAMP_POS: Final = _POSITION["max_timestamp"]

_BASE_OFFSET: Final = _FIELD["base_offset"]
_LENGTH: Final = _FIELD["batch_length"]
_CRC: Final = _FIELD["crc"]
CRC_FIELD: Final = _CRC  # the crc field alone, for encoders that compute it themselves
_PRODUCER: Final = struct.Struct("<qhi")  # producer_id, producer_epoch, base_sequence
PRODUCER_ID_POS: Final = _POSITION["producer_id"]
_ATTRIBUTES: Final = _FIELD["attributes"]
_FIRST_TIMESTAMP: Final = _FIELD["first_timestamp"]
_MAX_TIMESTAMP: Final = _FIELD["max_timestamp"]
_LENGTH_END: Final = BATCH_LENGTH_POS + _LENGTH.size

COMPRESSION_MASK: Final = 0x07
TIMESTAMP_TYPE_LOG_APPEND: Final = 0x08

# The per-record header blob (see the record section above).
BLOB_COUNT: Final = struct.Struct("<H")  # headers in the blob
BLOB_NAME_LENGTH: Final = struct.Struct("<H")  # UTF-8 bytes of one name
BLOB_VALUE_LENGTH: Final = struct.Struct("<i")  # bytes of one value, -1 for null

NO_PRODUCER_ID: Final = -1
NO_PRODUCER_EPOCH: Final = -1
NO_SEQUENCE: Final = -1

COLUMN_DTYPE: Final = np.dtype("<i4")
"""Type of the four per-record columns of the record section (little-endian int32)."""
RECORD_COLUMNS: Final = 4  # key_lengths, value_lengths, timestamp_deltas, header_lengths
RECORD_COLUMN_BYTES: Final = RECORD_COLUMNS * COLUMN_DTYPE.itemsize
"""Bytes each record adds to the record section besides its key, value and headers: its four
int32 columns (key length, value length, timestamp delta, header length)."""


@functools.lru_cache(maxsize=64)
def columns_struct(n: int) -> struct.Struct:
    """The four int32 columns of an ``n``-record section as one ``struct`` (for small
    batches, where one unpack beats numpy's fixed per-call cost)."""
    return struct.Struct(f"<{RECORD_COLUMNS * n}i")


class BatchHeader(NamedTuple):
    """The decoded fixed header of one batch (fields in :data:`HEADER` order)."""

    base_offset: int
    batch_length: int
    magic: int
    crc: int
    attributes: int
    record_count: int
    first_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    keys_length: int
    values_length: int
    headers_length: int
    records_length: int

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.record_count - 1

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.record_count

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def last_sequence(self) -> int:
        if self.base_sequence < 0:
            return NO_SEQUENCE
        return self.base_sequence + self.record_count - 1

    @property
    def section_size(self) -> int:
        """Bytes of the record section once uncompressed, as the header declares them."""
        return (
            RECORD_COLUMN_BYTES * self.record_count
            + self.keys_length
            + self.values_length
            + self.headers_length
        )


assert HEADER_SIZE == 72
assert CRC_POS + _CRC.size == CRC_START
assert _POSITION["base_sequence"] == PRODUCER_ID_POS + 10
assert BatchHeader._fields == tuple(name for name, _ in _LAYOUT)


def read_header(buf: Buffer, pos: int = 0) -> BatchHeader:
    """Unpack the fixed header at ``pos``. Raises CorruptRecordError if it does not fit."""
    if pos < 0 or len(buf) - pos < HEADER_SIZE:
        raise CorruptRecordError(
            f"truncated batch: {max(len(buf) - pos, 0)} bytes, header needs {HEADER_SIZE}"
        )
    return BatchHeader._make(HEADER.unpack_from(buf, pos))


def peek_length(buf: Buffer, pos: int = 0) -> int:
    """The ``batch_length`` field at ``pos`` (no validation); 0 if it is not all there."""
    if len(buf) - pos < _LENGTH_END:
        return 0
    return int(_LENGTH.unpack_from(buf, pos + BATCH_LENGTH_POS)[0])


def batch_positions(buf: Buffer) -> Iterator[int]:
    """Yield the position of each complete batch in a buffer of back-to-back batches (e.g. a
    fetch answer). A short trailing fragment ends the walk; a ``batch_length`` below the
    header size raises CorruptRecordError (the walk could not go on past it)."""
    pos = 0
    end = len(buf)
    while end - pos >= HEADER_SIZE:
        length = peek_length(buf, pos)
        if length < HEADER_SIZE:
            raise CorruptRecordError(f"batch_length {length} at position {pos}")
        if length > end - pos:
            return
        yield pos
        pos += length


def iter_headers(buf: Buffer) -> Iterator[tuple[int, BatchHeader]]:
    """Yield (position, header) for each batch in a buffer of back-to-back batches, without
    CRC checks (use on trusted data, e.g. what the broker served). Stops at a short tail."""
    pos = 0
    end = len(buf)
    while end - pos >= HEADER_SIZE:
        header = read_header(buf, pos)
        if header.batch_length < HEADER_SIZE or header.batch_length > end - pos:
            break
        yield pos, header
        pos += header.batch_length


def next_offset_after(buf: Buffer) -> int | None:
    """The offset after the last complete batch of ``buf`` (back-to-back batches, trusted);
    None if it holds no complete batch. Reads one length per batch and one full header."""
    pos, end, last = 0, len(buf), -1
    while True:
        length = peek_length(buf, pos)
        if length < HEADER_SIZE or length > end - pos:
            break
        last = pos
        pos += length
    if last < 0:
        return None
    return read_header(buf, last).next_offset


def stamp_base_offset(buf: WritableBuffer, base_offset: int, pos: int = 0) -> None:
    """Write ``base_offset`` into the header in place; the CRC stays valid."""
    _BASE_OFFSET.pack_into(buf, pos + BASE_OFFSET_POS, base_offset)


def stamp_log_append_time(buf: WritableBuffer, timestamp: int, pos: int = 0) -> int:
    """Give the batch at ``pos`` log-append time ``timestamp`` (ms), in place, and return its
    new ``max_timestamp``.

    ``first_timestamp`` becomes ``timestamp`` and ``max_timestamp`` moves by the same amount,
    so the per-record deltas keep their spacing; the timestamp-type bit is set and the CRC
    recomputed (one CRC pass over the batch). The batch is trusted to be whole.
    """
    header = read_header(buf, pos)
    new_max = header.max_timestamp + (timestamp - header.first_timestamp)
    _FIRST_TIMESTAMP.pack_into(buf, pos + FIRST_TIMESTAMP_POS, timestamp)
    _MAX_TIMESTAMP.pack_into(buf, pos + MAX_TIMESTAMP_POS, new_max)
    _ATTRIBUTES.pack_into(buf, pos + ATTRIBUTES_POS, header.attributes | TIMESTAMP_TYPE_LOG_APPEND)
    stamp_crc(buf, pos, header.batch_length)
    return new_max


def stamp_producer(
    buf: WritableBuffer, producer_id: int, producer_epoch: int, base_sequence: int, pos: int = 0
) -> None:
    """Give the batch at ``pos`` a new idempotence identity (a producer that bumped its
    epoch re-sends a queued batch under new sequence numbers), in place; the CRC is
    recomputed. The batch is trusted to be whole."""
    _PRODUCER.pack_into(buf, pos + PRODUCER_ID_POS, producer_id, producer_epoch, base_sequence)
    stamp_crc(buf, pos)


def stamp_crc(buf: WritableBuffer, pos: int = 0, batch_length: int | None = None) -> None:
    """Compute the CRC of the batch at ``pos`` over [CRC_START, batch_length) and store it."""
    if batch_length is None:
        batch_length = peek_length(buf, pos)
    covered = memoryview(buf)[pos + CRC_START : pos + batch_length]
    _CRC.pack_into(buf, pos + CRC_POS, crc32c(covered))
