"""The record batch: many records encoded as one buffer, decoded without a per-record loop.

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

Crash story: a batch is written as one copy. A torn write leaves either a short batch
(``batch_length`` reaches past the end of what was written, or zeros) or a CRC mismatch, both
detected by :func:`validate_batch`, which storage recovery uses to cut the log at the first
bad batch. The CRC starts after itself (byte 17), so ``base_offset`` and ``batch_length`` are
outside it: a damaged ``batch_length`` still fails the check, because the CRC is computed over
the range it names.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from logstream.codec import compression
from logstream.codec.crc import crc32c
from logstream.errors import CorruptRecordError, InvalidBatchError
from logstream.types import Headers, Record

MAGIC = 1

HEADER = struct.Struct(
    "<"
    "q"  # base_offset
    "i"  # batch_length
    "B"  # magic
    "I"  # crc
    "H"  # attributes
    "i"  # record_count
    "q"  # first_timestamp
    "q"  # max_timestamp
    "q"  # producer_id
    "h"  # producer_epoch
    "i"  # base_sequence
    "i"  # keys_length
    "i"  # values_length
    "i"  # headers_length
    "i"  # records_length
    "3x"  # reserved padding to 72 bytes
)
HEADER_SIZE = HEADER.size

# Field positions derived from the layout above (never typed by hand elsewhere).
BASE_OFFSET_POS = 0
BATCH_LENGTH_POS = 8
MAGIC_POS = 12
CRC_POS = 13
CRC_START = CRC_POS + 4  # the CRC covers [CRC_START, batch_length)
ATTRIBUTES_POS = CRC_START
RECORD_COUNT_POS = 19
MAX_TIMESTAMP_POS = 31

_BASE_OFFSET = struct.Struct("<q")
_LENGTH = struct.Struct("<i")
_PREFIX = struct.Struct("<qiBI")  # base_offset, batch_length, magic, crc
_CRC = struct.Struct("<I")
_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")

COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_LOG_APPEND = 0x08

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1

_INT32_MAX = 2**31 - 1
_COLUMN_DTYPE = np.dtype("<i4")

RECORD_COLUMN_BYTES = 4 * _COLUMN_DTYPE.itemsize
"""Bytes each record adds to the record section besides its key, value and headers: its four
int32 columns (key length, value length, timestamp delta, header length)."""

assert HEADER_SIZE == 72
assert _PREFIX.size == CRC_START


class BatchHeader(NamedTuple):
    """The decoded fixed header of one batch."""

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


# ---------------------------------------------------------------------------------------------
# Encoding


def _lengths_and_blob(items: Sequence[bytes | None]) -> tuple[np.ndarray, bytes]:
    """Length column (-1 for None) and concatenated bytes, without a Python-level record loop
    in the common case of no None values."""
    n = len(items)
    if None in items:
        lengths = np.fromiter(
            (-1 if x is None else len(x) for x in items), dtype=_COLUMN_DTYPE, count=n
        )
        blob = b"".join([x for x in items if x is not None])
    else:
        lengths = np.fromiter(map(len, items), dtype=_COLUMN_DTYPE, count=n)  # type: ignore[arg-type]
        blob = b"".join(items)  # type: ignore[arg-type]
    return lengths, blob


def encode_headers(headers: Headers | Sequence[tuple[str, bytes | None]]) -> bytes:
    """One record's header blob (see the module docstring); b"" for no headers."""
    if not headers:
        return b""
    parts = [_U16.pack(len(headers))]
    for name, value in headers:
        raw = name.encode("utf-8")
        if len(raw) > 0xFFFF:
            raise InvalidBatchError(f"header name longer than 65535 bytes: {name[:40]!r}...")
        parts.append(_U16.pack(len(raw)))
        parts.append(raw)
        if value is None:
            parts.append(_I32.pack(-1))
        else:
            parts.append(_I32.pack(len(value)))
            parts.append(bytes(value))
    return b"".join(parts)


def decode_headers(blob: bytes | memoryview) -> Headers:
    """Inverse of :func:`encode_headers`; raises CorruptRecordError on a malformed blob."""
    if len(blob) == 0:
        return ()
    mv = memoryview(blob)
    try:
        (count,) = _U16.unpack_from(mv, 0)
        pos = 2
        out: list[tuple[str, bytes]] = []
        for _ in range(count):
            (name_len,) = _U16.unpack_from(mv, pos)
            pos += 2
            if pos + name_len > len(mv):
                raise CorruptRecordError("header name runs past its blob")
            name = bytes(mv[pos : pos + name_len]).decode("utf-8")
            pos += name_len
            (value_len,) = _I32.unpack_from(mv, pos)
            pos += 4
            if value_len < -1 or pos + max(value_len, 0) > len(mv):
                raise CorruptRecordError("header value runs past its blob")
            value = b"" if value_len <= 0 else bytes(mv[pos : pos + value_len])
            pos += max(value_len, 0)
            out.append((name, value))
    except (struct.error, UnicodeDecodeError) as exc:
        raise CorruptRecordError(f"malformed record headers: {exc}") from exc
    if pos != len(mv):
        raise CorruptRecordError("record header blob has trailing bytes")
    return tuple(out)


def encode_batch(
    values: Sequence[bytes | None],
    *,
    keys: Sequence[bytes | None] | None = None,
    timestamps: Sequence[int] | np.ndarray | int | None = None,
    headers: Sequence[bytes] | None = None,
    base_offset: int = 0,
    compression_type: int = compression.NONE,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = NO_PRODUCER_EPOCH,
    base_sequence: int = NO_SEQUENCE,
    log_append_time: bool = False,
    now_ms: int | None = None,
) -> bytes:
    """Encode records given as columns into one batch.

    ``values`` and ``keys`` are sequences of bytes or None. ``timestamps`` is a sequence of
    ms timestamps, one int for all, or None for "now". ``headers`` is a sequence of
    already-encoded header blobs (:func:`encode_headers`), one per record, or None.
    """
    n = len(values)
    if n == 0:
        raise InvalidBatchError("a batch needs at least one record")
    if keys is None:
        key_lengths = np.full(n, -1, dtype=_COLUMN_DTYPE)
        key_blob = b""
    else:
        if len(keys) != n:
            raise InvalidBatchError(f"{len(keys)} keys for {n} values")
        key_lengths, key_blob = _lengths_and_blob(keys)
    value_lengths, value_blob = _lengths_and_blob(values)
    if headers is None:
        header_lengths = np.zeros(n, dtype=_COLUMN_DTYPE)
        header_blob = b""
    else:
        if len(headers) != n:
            raise InvalidBatchError(f"{len(headers)} header blobs for {n} values")
        header_lengths, header_blob = _lengths_and_blob(headers)

    if timestamps is None or isinstance(timestamps, int):
        if timestamps is None:
            import time

            ts0 = now_ms if now_ms is not None else time.time_ns() // 1_000_000
        else:
            ts0 = timestamps
        first_ts = max_ts = int(ts0)
        deltas = np.zeros(n, dtype=_COLUMN_DTYPE)
    else:
        ts = np.asarray(timestamps, dtype=np.int64)
        if ts.shape != (n,):
            raise InvalidBatchError(f"{ts.shape[0] if ts.ndim else 1} timestamps for {n} values")
        first_ts = int(ts[0])
        max_ts = int(ts.max())
        d = ts - first_ts
        if int(d.min()) < -(2**31) or int(d.max()) > _INT32_MAX:
            raise InvalidBatchError("timestamps in one batch must lie within ~24 days of the first")
        deltas = d.astype(_COLUMN_DTYPE)

    section = b"".join(
        (
            key_lengths.tobytes(),
            value_lengths.tobytes(),
            deltas.tobytes(),
            header_lengths.tobytes(),
            key_blob,
            value_blob,
            header_blob,
        )
    )
    if len(key_blob) > _INT32_MAX or len(value_blob) > _INT32_MAX:
        raise InvalidBatchError("batch sections larger than 2 GiB")
    stored = compression.compress(compression_type, section)
    attributes = compression_type & COMPRESSION_MASK
    if log_append_time:
        attributes |= TIMESTAMP_TYPE_LOG_APPEND
    batch_length = HEADER_SIZE + len(stored)
    if batch_length > _INT32_MAX:
        raise InvalidBatchError("batch larger than 2 GiB")
    buf = bytearray(batch_length)
    HEADER.pack_into(
        buf,
        0,
        base_offset,
        batch_length,
        MAGIC,
        0,
        attributes,
        n,
        first_ts,
        max_ts,
        producer_id,
        producer_epoch,
        base_sequence,
        len(key_blob),
        len(value_blob),
        len(header_blob),
        len(stored),
    )
    buf[HEADER_SIZE:] = stored
    _CRC.pack_into(buf, CRC_POS, crc32c(memoryview(buf)[CRC_START:]))
    return bytes(buf)


def encode_records(
    records: Sequence[tuple[bytes | None, bytes | None]]
    | Sequence[tuple[bytes | None, bytes | None, int]],
    **kwargs: object,
) -> bytes:
    """Convenience: encode (key, value) or (key, value, timestamp) tuples."""
    if not records:
        raise InvalidBatchError("a batch needs at least one record")
    cols = list(zip(*records, strict=True))
    keys = cols[0]
    values = cols[1]
    if len(cols) > 2:
        kwargs.setdefault("timestamps", cols[2])
    return encode_batch(values, keys=keys, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Header access and validation (what the broker and storage use; no record decoding)


def read_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Unpack the fixed header at ``pos``. Raises CorruptRecordError if it does not fit."""
    if pos < 0 or len(buf) - pos < HEADER_SIZE:
        raise CorruptRecordError(
            f"truncated batch: {max(len(buf) - pos, 0)} bytes, header needs {HEADER_SIZE}"
        )
    return BatchHeader._make(HEADER.unpack_from(buf, pos))


def peek_length(buf: bytes | bytearray | memoryview, pos: int = 0) -> int:
    """The ``batch_length`` field at ``pos`` (no validation); 0 if fewer than 12 bytes remain."""
    if len(buf) - pos < BATCH_LENGTH_POS + 4:
        return 0
    return int(_LENGTH.unpack_from(buf, pos + BATCH_LENGTH_POS)[0])


def validate_batch(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
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
    mv = memoryview(buf)
    actual = crc32c(mv[pos + CRC_START : pos + length])
    if actual != header.crc:
        raise CorruptRecordError(
            f"CRC mismatch: stored {header.crc:#010x}, computed {actual:#010x}"
        )
    _check_header_arithmetic(header)
    return header


def _check_header_arithmetic(h: BatchHeader) -> None:
    if h.record_count <= 0:
        raise InvalidBatchError(f"record_count {h.record_count} must be positive")
    if h.records_length != h.batch_length - HEADER_SIZE:
        raise InvalidBatchError("records_length does not match batch_length")
    if min(h.keys_length, h.values_length, h.headers_length) < 0:
        raise InvalidBatchError("negative section length")
    if h.compression not in compression.KNOWN:
        raise InvalidBatchError(f"unknown compression codec {h.compression}")
    if h.compression == compression.NONE:
        expected = (
            RECORD_COLUMN_BYTES * h.record_count
            + h.keys_length
            + h.values_length
            + h.headers_length
        )
        if h.records_length != expected:
            raise InvalidBatchError(
                f"record section is {h.records_length} bytes, header promises {expected}"
            )
    if h.max_timestamp < h.first_timestamp and h.record_count > 0:
        raise InvalidBatchError("max_timestamp is before first_timestamp")


def iter_headers(buf: bytes | bytearray | memoryview) -> Iterator[tuple[int, BatchHeader]]:
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


def stamp_base_offset(buf: bytearray | memoryview, base_offset: int, pos: int = 0) -> None:
    """Write ``base_offset`` into the header in place; the CRC stays valid."""
    _BASE_OFFSET.pack_into(buf, pos + BASE_OFFSET_POS, base_offset)


# ---------------------------------------------------------------------------------------------
# Decoding


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """A batch decoded into columns. Keys and values stay in one buffer each; the offset
    arrays say where each record's bytes start (``*_starts``) and how long they are
    (``*_lengths``, -1 for null). Building this costs a handful of numpy calls, no loop."""

    header: BatchHeader
    offsets: np.ndarray  # int64[N]
    timestamps: np.ndarray  # int64[N]
    key_lengths: np.ndarray  # int32[N], -1 = null
    key_starts: np.ndarray  # int64[N], into ``keys``
    value_lengths: np.ndarray  # int32[N], -1 = null
    value_starts: np.ndarray  # int64[N], into ``values``
    header_lengths: np.ndarray  # int32[N]
    header_starts: np.ndarray  # int64[N]
    keys: memoryview
    values: memoryview
    headers_blob: memoryview

    def __len__(self) -> int:
        return int(self.offsets.shape[0])

    def key(self, i: int) -> bytes | None:
        n = int(self.key_lengths[i])
        if n < 0:
            return None
        s = int(self.key_starts[i])
        return bytes(self.keys[s : s + n])

    def value(self, i: int) -> bytes | None:
        n = int(self.value_lengths[i])
        if n < 0:
            return None
        s = int(self.value_starts[i])
        return bytes(self.values[s : s + n])

    def record_headers(self, i: int) -> Headers:
        n = int(self.header_lengths[i])
        if n == 0:
            return ()
        s = int(self.header_starts[i])
        return decode_headers(self.headers_blob[s : s + n])

    def value_list(self) -> list[bytes | None]:
        """All values as bytes objects (one slice each; this is the only per-record cost)."""
        return _split(self.values, self.value_starts, self.value_lengths)

    def key_list(self) -> list[bytes | None]:
        return _split(self.keys, self.key_starts, self.key_lengths)

    def records(self, topic: str = "", partition: int = 0) -> Iterator[Record]:
        """Iterate as :class:`Record` objects."""
        keys = self.key_list()
        values = self.value_list()
        offsets = self.offsets.tolist()
        stamps = self.timestamps.tolist()
        if self.header.headers_length == 0:
            for i in range(len(offsets)):
                yield Record(topic, partition, offsets[i], stamps[i], keys[i], values[i], ())
        else:
            for i in range(len(offsets)):
                yield Record(
                    topic,
                    partition,
                    offsets[i],
                    stamps[i],
                    keys[i],
                    values[i],
                    self.record_headers(i),
                )


def _split(blob: memoryview, starts: np.ndarray, lengths: np.ndarray) -> list[bytes | None]:
    raw = bytes(blob)
    ends = (starts + np.maximum(lengths, 0)).tolist()
    begins = starts.tolist()
    out: list[bytes | None] = [raw[b:e] for b, e in zip(begins, ends, strict=True)]
    if lengths.size and int(lengths.min()) < 0:
        for i in np.flatnonzero(lengths < 0).tolist():
            out[i] = None
    return out


def _starts(lengths: np.ndarray) -> tuple[np.ndarray, int]:
    clipped = np.maximum(lengths, 0).astype(np.int64)
    ends = np.cumsum(clipped)
    starts = ends - clipped
    total = int(ends[-1]) if ends.size else 0
    return starts, total


def _record_section(
    buf: bytes | bytearray | memoryview, pos: int, verify: bool
) -> tuple[BatchHeader, memoryview]:
    """The checked header of the batch at ``pos`` and its record section (decompressed)."""
    header = validate_batch(buf, pos) if verify else read_header(buf, pos)
    if not verify:
        if header.batch_length > len(buf) - pos or header.batch_length < HEADER_SIZE:
            raise CorruptRecordError("truncated batch")
        _check_header_arithmetic(header)
    mv = memoryview(buf)[pos + HEADER_SIZE : pos + header.batch_length]
    if header.compression == compression.NONE:
        return header, mv
    n = header.record_count
    expected = (
        RECORD_COLUMN_BYTES * n + header.keys_length + header.values_length + header.headers_length
    )
    section = memoryview(compression.decompress(header.compression, mv, expected))
    if len(section) != expected:
        raise InvalidBatchError("decompressed record section has the wrong size")
    return header, section


def decode_batch(
    buf: bytes | bytearray | memoryview, pos: int = 0, *, verify: bool = True
) -> DecodedBatch:
    """Decode one batch at ``pos`` into columns. With ``verify`` the CRC is checked first.

    Never reads past the batch; every inconsistency raises CorruptRecordError /
    InvalidBatchError instead of producing wrong records.
    """
    header, section = _record_section(buf, pos, verify)
    n = header.record_count
    columns_bytes = RECORD_COLUMN_BYTES * n
    cols = np.frombuffer(section, dtype=_COLUMN_DTYPE, count=4 * n).reshape(4, n)
    key_lengths, value_lengths, deltas, header_lengths = cols[0], cols[1], cols[2], cols[3]
    if n and (int(key_lengths.min()) < -1 or int(value_lengths.min()) < -1):
        raise InvalidBatchError("record length below -1")
    if n and int(header_lengths.min()) < 0:
        raise InvalidBatchError("negative header length")
    key_starts, key_total = _starts(key_lengths)
    value_starts, value_total = _starts(value_lengths)
    header_starts, header_total = _starts(header_lengths)
    if (key_total, value_total, header_total) != (
        header.keys_length,
        header.values_length,
        header.headers_length,
    ):
        raise InvalidBatchError("record lengths do not add up to the section lengths")
    k0 = columns_bytes
    v0 = k0 + key_total
    h0 = v0 + value_total
    offsets = np.arange(header.base_offset, header.base_offset + n, dtype=np.int64)
    timestamps = deltas.astype(np.int64) + header.first_timestamp
    return DecodedBatch(
        header=header,
        offsets=offsets,
        timestamps=timestamps,
        key_lengths=key_lengths,
        key_starts=key_starts,
        value_lengths=value_lengths,
        value_starts=value_starts,
        header_lengths=header_lengths,
        header_starts=header_starts,
        keys=section[k0:v0],
        values=section[v0:h0],
        headers_blob=section[h0 : h0 + header_total],
    )


SMALL_BATCH_RECORDS = 32
"""Up to this many records, :func:`decode_rows` (plain Python over one ``struct`` unpack) is
cheaper than :func:`decode_batch`'s ~25 numpy calls, which cost ~20 us whatever the size."""


@dataclass(frozen=True, slots=True)
class BatchRows:
    """A batch decoded into per-record Python lists (see :func:`decode_rows`)."""

    header: BatchHeader
    timestamps: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]
    header_blobs: list[bytes]  # encoded record headers (b"" = none): decode_headers()

    def __len__(self) -> int:
        return len(self.values)


@functools.lru_cache(maxsize=SMALL_BATCH_RECORDS)
def _row_columns(n: int) -> struct.Struct:
    return struct.Struct(f"<{4 * n}i")


def _sliced(raw: bytes, start: int, lengths: Sequence[int]) -> tuple[list[bytes | None], int]:
    out: list[bytes | None] = []
    for length in lengths:
        if length < 0:
            out.append(None)
        else:
            out.append(raw[start : start + length])
            start += length
    return out, start


def decode_rows(
    buf: bytes | bytearray | memoryview, pos: int = 0, *, verify: bool = True
) -> BatchRows:
    """Decode one batch at ``pos`` into Python lists, with the same checks as
    :func:`decode_batch` (which it matches record for record). Meant for small batches
    (:data:`SMALL_BATCH_RECORDS`): its cost grows with the record count, without numpy's
    fixed per-call cost; a consumer following a topic record by record mostly sees those."""
    header, section = _record_section(buf, pos, verify)
    n = header.record_count
    raw = bytes(section)
    columns = _row_columns(n).unpack_from(raw)
    key_lengths, value_lengths = columns[:n], columns[n : 2 * n]
    deltas, header_lengths = columns[2 * n : 3 * n], columns[3 * n :]
    if min(key_lengths) < -1 or min(value_lengths) < -1:
        raise InvalidBatchError("record length below -1")
    if min(header_lengths) < 0:
        raise InvalidBatchError("negative header length")
    key_total = sum(k for k in key_lengths if k > 0)
    value_total = sum(v for v in value_lengths if v > 0)
    if (key_total, value_total, sum(header_lengths)) != (
        header.keys_length,
        header.values_length,
        header.headers_length,
    ):
        raise InvalidBatchError("record lengths do not add up to the section lengths")
    keys, at = _sliced(raw, RECORD_COLUMN_BYTES * n, key_lengths)
    values, at = _sliced(raw, at, value_lengths)
    blobs: list[bytes] = []
    for length in header_lengths:
        blobs.append(raw[at : at + length])
        at += length
    first = header.first_timestamp
    return BatchRows(header, [first + d for d in deltas], keys, values, blobs)


def iter_batches(
    buf: bytes | bytearray | memoryview, *, verify: bool = True
) -> Iterator[DecodedBatch]:
    """Decode every complete batch in a buffer of back-to-back batches (e.g. a fetch result).
    A short trailing fragment is ignored; a damaged complete batch raises."""
    pos = 0
    end = len(buf)
    while end - pos >= HEADER_SIZE:
        length = peek_length(buf, pos)
        if length < HEADER_SIZE:
            raise CorruptRecordError(f"batch_length {length} at position {pos}")
        if length > end - pos:
            break
        yield decode_batch(buf, pos, verify=verify)
        pos += length
