"""A Kafka record batch (magic 2) read into logstream's columns with numpy, for Produce.

The Kafka layout is in ``records.py``. Its records are a chain: each starts with its own
varint length, so where record i starts depends on every record before it. The starts
are found one of two ways:

- equal-sized records (a producer of fixed-shape messages): record 0's size S is read and
  numpy checks that every k*S holds the same length varint; by induction the records are
  exactly there, with no per-record step at all;
- otherwise a loop reads only each record's length varint (a few integer operations per
  record, no object per record).

Every field after that is read for all records at once: a varint column is decoded at an
array of positions (a few numpy operations per varint byte, one pass when every varint
is one byte); keys and values are cut out with one gather each (a strided view when they
sit at a fixed stride); headers, when any record has some, one header index at a time
across the records that have that many.

The result is a :class:`KafkaColumns`; :func:`to_logstream_batches` encodes it as one
logstream batch or, when the logstream encoding would exceed the topic's
``max_batch_bytes`` (logstream spends 16 bytes of columns per record where Kafka spends
~7 of varints), as several consecutive batches whose producer sequences continue one
another, as the Kafka producer's own next batch would.

Pure functions, thread-safe. A bad CRC, a varint that runs past its record, lengths that
do not add up to the batch: CorruptRecordError. Intact bytes logstream does not take
(transactional or control batches, no records, header names over 65,535 bytes or not
UTF-8, timestamps spanning more than ~24 days): InvalidBatchError.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from aiokafka.codec import gzip_decode, lz4_decode, snappy_decode, zstd_decode
from aiokafka.record._crecords import DefaultRecordBatch

from logstream.codec import (
    HEADER_SIZE,
    BuiltBatch,
    compression,
    encode_columns,
    encode_headers,
    encode_small_batch,
)
from logstream.codec.crc import crc32c
from logstream.errors import CorruptRecordError, InvalidBatchError

Int64s = npt.NDArray[np.int64]

_HEADER = struct.Struct(">qiibIhiqqqhii")  # the 61-byte Kafka batch header (records.py)
_CRC_START = 21
_TRANSACTIONAL = 0x10
_CONTROL = 0x20
_PAD = 10  # a varint is at most 10 bytes: reads at any position <= the end stay in bounds
_MAX_VARINT = 10
_INT32_MAX = 2**31 - 1
_U16_MAX = 0xFFFF
_COLUMN_BYTES = 16  # logstream's four int32 columns per record

_DECODE = {1: gzip_decode, 2: snappy_decode, 3: lz4_decode, 4: zstd_decode}
# Kafka codec id -> the logstream codec the records are stored with (gzip and snappy,
# which logstream's codec does not have, are stored uncompressed).
STORE_CODEC = {0: compression.NONE, 1: compression.NONE, 2: compression.NONE,
               3: compression.LZ4, 4: compression.ZSTD}  # fmt: skip


@dataclass(frozen=True, slots=True)
class KafkaColumns:
    """The records of one Kafka batch as logstream's columns (``codec/header.py``)."""

    key_lengths: Int64s  # -1 for a null key
    keys: bytes
    value_lengths: Int64s  # -1 for a null value
    values: bytes
    timestamps: Int64s  # absolute, ms
    header_lengths: Int64s  # bytes of each record's logstream header blob, 0 for none
    headers: bytes
    kafka_codec: int
    producer_id: int
    producer_epoch: int
    base_sequence: int

    def __len__(self) -> int:
        return len(self.value_lengths)


SMALL_BATCH_RECORDS = 512
"""Up to this many records, aiokafka's compiled reader (an object per record) costs less
than the ~60 numpy calls of the columnar reader, whose cost hardly depends on the count
(measured: 1 record 13 vs 97 us, 1,000 records 490-1,560 vs 410 us)."""


TINY_BATCH_RECORDS = 32
"""Up to this many records, a batch stored uncompressed goes straight from aiokafka's
reader to :func:`~logstream.codec.encode_small_batch` (lists and ``struct``, no numpy and
no second check on append): the one-record Produce of the latency path."""


def read_tiny_batch(kafka_batch: bytes | memoryview) -> BuiltBatch | None:
    """One whole Kafka batch as a logstream batch, when it has at most
    :data:`TINY_BATCH_RECORDS` records and is stored uncompressed (Kafka codec none, gzip
    or snappy); else None, and the caller reads it with :func:`read_kafka_batch`. Same
    checks and errors as that function. (A result over the topic's ``max_batch_bytes`` is
    the caller's to split, through :func:`read_kafka_batch`.)"""
    tiny = read_tiny(kafka_batch)
    return None if tiny is None else tiny[0]


def read_tiny(kafka_batch: bytes | memoryview) -> tuple[BuiltBatch, bool] | None:
    """:func:`read_tiny_batch`, and whether the Kafka bytes say nothing the logstream
    batch does not (codec none, no attribute bits, record offset deltas 0..n-1, the
    header's base and max timestamps those of the records, no null header value, which
    logstream reads back as empty): then, with its base offset set, they are what a Fetch
    of the stored batch answers (``sent_batches.py``)."""
    view = memoryview(kafka_batch)
    fields = _checked_header(view)
    count, codec = fields[12], fields[5] & 0x07
    if count > TINY_BATCH_RECORDS or STORE_CODEC.get(codec) != compression.NONE:
        return None
    records = _records(view)
    timestamps = [r.timestamp for r in records]
    built = encode_small_batch(
        [r.key for r in records],
        [r.value for r in records],
        timestamps,
        [encode_headers(r.headers) if r.headers else b"" for r in records],
        producer_id=fields[9],
        producer_epoch=fields[10],
        base_sequence=fields[11],
    )
    base_offset = fields[0]
    as_sent = (
        fields[5] == 0
        and fields[6] == count - 1
        and fields[7] == timestamps[0]
        and fields[8] == max(timestamps)
        and all(r.offset - base_offset == i for i, r in enumerate(records))
        and all(value is not None for r in records for _, value in r.headers)
    )
    return built, as_sent


def _checked_header(view: memoryview) -> tuple[int, ...]:
    """The 61-byte header's fields, after the checks every Kafka batch must pass."""
    if len(view) < _HEADER.size:
        raise CorruptRecordError(f"truncated Kafka batch: {len(view)} bytes")
    fields: tuple[int, ...] = _HEADER.unpack_from(view)
    magic, crc, attributes, count = fields[3], fields[4], fields[5], fields[12]
    if magic != 2:
        raise InvalidBatchError(f"Kafka message format v{magic} is not supported")
    if crc32c(view[_CRC_START:]) != crc:
        raise CorruptRecordError("Kafka batch CRC32C mismatch")
    if attributes & (_TRANSACTIONAL | _CONTROL):
        raise InvalidBatchError("transactional and control batches are not supported")
    if count <= 0:
        raise InvalidBatchError("a Kafka batch with no records")
    return fields


def _records(view: memoryview) -> list[Any]:
    """aiokafka's records of a checked batch (its compiled reader decompresses)."""
    try:
        records = list(DefaultRecordBatch(bytes(view)))
    except Exception as exc:  # the reader raises its own types for bad varints, bad codecs
        raise CorruptRecordError(f"cannot decode Kafka batch: {exc}") from exc
    if not records:
        raise InvalidBatchError("a Kafka batch with no records")
    return records


def read_kafka_batch(
    kafka_batch: bytes | memoryview, *, small_batch_records: int = SMALL_BATCH_RECORDS
) -> KafkaColumns:
    """Check and read one whole Kafka batch (as :func:`split_kafka_batches` cuts them)."""
    view = memoryview(kafka_batch)
    (_, _, _, _, _, attributes, _, base_ts, _, producer_id, producer_epoch,
     base_sequence, count) = _checked_header(view)  # fmt: skip
    codec = attributes & 0x07
    producer = (producer_id, producer_epoch, base_sequence)
    if count <= small_batch_records:
        return _read_small(view, codec, base_ts, producer)
    payload: bytes | memoryview = view[_HEADER.size :]
    if codec:
        decode = _DECODE.get(codec)
        if decode is None:
            raise CorruptRecordError(f"unknown Kafka compression codec {codec}")
        try:
            payload = decode(bytes(payload))
        except Exception as exc:  # each codec library raises its own types
            raise CorruptRecordError(f"cannot decompress Kafka batch: {exc}") from exc
    size = len(payload)
    buf = np.zeros(size + _PAD, dtype=np.uint8)
    buf[:size] = np.frombuffer(payload, dtype=np.uint8)
    fields = _read_records(buf, size, count)
    key_lengths, key_starts, value_lengths, value_starts, ts_deltas, header_lengths, hdrs = fields
    _check_int64(base_ts + int(ts_deltas.min()), base_ts + int(ts_deltas.max()))
    return KafkaColumns(
        key_lengths=key_lengths,
        keys=_gather(buf, key_starts, key_lengths),
        value_lengths=value_lengths,
        values=_gather(buf, value_starts, value_lengths),
        timestamps=ts_deltas + base_ts,
        header_lengths=header_lengths,
        headers=hdrs,
        kafka_codec=codec,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
    )


def _read_small(
    view: memoryview, codec: int, base_ts: int, producer: tuple[int, int, int]
) -> KafkaColumns:
    """A few records through aiokafka's reader (CRC and flags are already checked)."""
    records = _records(view)
    n = len(records)
    keys = [r.key for r in records]
    values = [r.value for r in records]
    headers = [encode_headers(r.headers) if r.headers else b"" for r in records]
    timestamps = [r.timestamp for r in records]
    # aiokafka adds each delta (an int64) to the base in int64 and wraps: a sum that
    # wrapped lies more than 2**63 away from the base, so the extremes show it
    if min(timestamps) - base_ts < -(2**63) or max(timestamps) - base_ts >= 2**63:
        raise InvalidBatchError("a timestamp outside the int64 range")
    return KafkaColumns(
        key_lengths=np.fromiter((-1 if k is None else len(k) for k in keys), np.int64, n),
        keys=b"".join([k for k in keys if k]),
        value_lengths=np.fromiter((-1 if v is None else len(v) for v in values), np.int64, n),
        values=b"".join([v for v in values if v]),
        timestamps=np.array(timestamps, dtype=np.int64),
        header_lengths=np.fromiter(map(len, headers), np.int64, n),
        headers=b"".join(headers),
        kafka_codec=codec,
        producer_id=producer[0],
        producer_epoch=producer[1],
        base_sequence=producer[2],
    )


def _check_int64(lowest: int, highest: int) -> None:
    """Kafka adds a varint delta to the base timestamp; the sum must still be an int64
    (numpy would wrap it silently, a Python list would not fit the column)."""
    if lowest < -(2**63) or highest >= 2**63:
        raise InvalidBatchError("a timestamp outside the int64 range")


def to_logstream_batches(cols: KafkaColumns, max_batch_bytes: int) -> list[bytes]:
    """One logstream batch, or several consecutive ones each within ``max_batch_bytes``
    (a single record larger than that still gets its own batch, which storage refuses)."""
    n = len(cols)
    key_sizes = np.maximum(cols.key_lengths, 0)
    value_sizes = np.maximum(cols.value_lengths, 0)
    record_bytes = _COLUMN_BYTES + key_sizes + value_sizes + cols.header_lengths
    ends = np.cumsum(record_bytes)
    budget = max(max_batch_bytes - HEADER_SIZE, 1)
    if int(ends[-1]) <= budget:
        return [_encode_range(cols, 0, n, key_sizes, value_sizes)]
    out = []
    start = 0
    while start < n:
        before = int(ends[start - 1]) if start else 0
        stop = int(np.searchsorted(ends, before + budget, side="right"))
        stop = max(stop, start + 1)
        out.append(_encode_range(cols, start, stop, key_sizes, value_sizes))
        start = stop
    return out


def _encode_range(
    cols: KafkaColumns, start: int, stop: int, key_sizes: Int64s, value_sizes: Int64s
) -> bytes:
    whole = start == 0 and stop == len(cols)
    ts = cols.timestamps[start:stop]
    first = int(ts[0])
    deltas = ts - first
    if int(deltas.min()) < -(2**31) or int(deltas.max()) > _INT32_MAX:
        raise InvalidBatchError("timestamps in one batch must lie within ~24 days of the first")
    keys: bytes | memoryview
    values: bytes | memoryview
    headers: bytes | memoryview
    if whole:
        keys, values, headers = cols.keys, cols.values, cols.headers
    else:
        keys = _cut(cols.keys, key_sizes, start, stop)
        values = _cut(cols.values, value_sizes, start, stop)
        headers = _cut(cols.headers, cols.header_lengths, start, stop)
    sequence = cols.base_sequence
    if sequence >= 0 and start:
        sequence = (sequence + start) & _INT32_MAX  # Kafka's sequences wrap at 2**31 - 1
    return encode_columns(
        cols.key_lengths[start:stop],
        keys,
        cols.value_lengths[start:stop],
        values,
        deltas,
        cols.header_lengths[start:stop],
        headers,
        first_timestamp=first,
        max_timestamp=int(ts.max()),
        compression_type=STORE_CODEC[cols.kafka_codec],
        producer_id=cols.producer_id,
        producer_epoch=cols.producer_epoch,
        base_sequence=sequence,
    )


def _cut(blob: bytes, sizes: Int64s, start: int, stop: int) -> bytes | memoryview:
    begin = int(sizes[:start].sum())
    return memoryview(blob)[begin : begin + int(sizes[start:stop].sum())]


# -- reading the records ----------------------------------------------------------------


def _read_records(
    buf: np.ndarray, size: int, count: int
) -> tuple[Int64s, Int64s, Int64s, Int64s, Int64s, Int64s, bytes]:
    starts = _record_starts(buf, size, count)
    lengths, len_sizes = _varints_at(buf, starts)
    record_ends = starts + len_sizes + lengths
    if int(lengths.min()) < 1 or int(record_ends[-1]) != size:
        raise CorruptRecordError("Kafka record lengths do not add up to the batch")
    pos = starts + len_sizes + 1  # past the record's attributes byte
    ts_deltas, used = _varints_at(buf, pos)
    pos += used
    _inside(pos, record_ends)
    _, used = _varints_at(buf, pos)  # offset delta: offsets are assigned on append
    pos += used
    _inside(pos, record_ends)
    key_lengths, used = _varints_at(buf, pos)
    key_starts = pos + used
    pos = key_starts + np.maximum(key_lengths, 0)
    _within(pos, record_ends, key_lengths)
    value_lengths, used = _varints_at(buf, pos)
    value_starts = pos + used
    pos = value_starts + np.maximum(value_lengths, 0)
    _within(pos, record_ends, value_lengths)
    header_counts, used = _varints_at(buf, pos)
    pos += used
    _inside(pos, record_ends)
    if int(header_counts.min()) < 0:
        raise CorruptRecordError("negative Kafka header count")
    if int(header_counts.max()):
        header_lengths, headers, pos = _read_headers(buf, pos, record_ends, header_counts)
    else:
        header_lengths, headers = np.zeros(count, dtype=np.int64), b""
    if not np.array_equal(pos, record_ends):
        raise CorruptRecordError("a Kafka record's fields do not fill its length")
    return key_lengths, key_starts, value_lengths, value_starts, ts_deltas, header_lengths, headers


def _within(pos: Int64s, record_ends: Int64s, lengths: Int64s) -> None:
    """After a length and its bytes: -1 (null) or more, and still inside the record (the
    bound on the length first, so the sum before it cannot have wrapped)."""
    if int(lengths.min()) < -1 or int(lengths.max()) > int(record_ends.max()):
        raise CorruptRecordError("a Kafka record's field runs past the record")
    _inside(pos, record_ends)


def _inside(pos: Int64s, record_ends: Int64s) -> None:
    if bool((pos > record_ends).any()):
        raise CorruptRecordError("a Kafka record's field runs past the record")


def _record_starts(buf: np.ndarray, size: int, count: int) -> Int64s:
    """Where each record starts, found run by run: from a record of size S, numpy checks
    how many of the next records (a window that doubles while it keeps matching) hold the
    same length varint at a stride of S; by induction they are exactly there. Where sizes
    keep changing, records are stepped over one at a time for a while instead."""
    data = buf[:size].tobytes()
    starts = np.empty(count, dtype=np.int64)
    i = pos = 0
    window = _FIRST_WINDOW
    single = 0  # records to step over one at a time before trying a run again
    while i < count:
        if pos >= size:
            raise CorruptRecordError(f"Kafka batch ends after {i} of {count} records")
        length, used = _varint(data, pos)
        if length < 1:
            raise CorruptRecordError(f"Kafka record {i} has length {length}")
        stride = used + length
        k = min(count - i, (size - pos) // stride, window)
        if single or k < _MIN_RUN:
            starts[i] = pos
            i += 1
            pos += stride
            single = max(single - 1, 0)
            continue
        at = pos + np.arange(k, dtype=np.int64) * stride
        same = buf[at] == data[pos]
        for t in range(1, used):
            same &= buf[at + t] == data[pos + t]
        run = k if bool(same.all()) else int(np.argmin(same))
        starts[i : i + run] = at[:run]
        i += run
        pos += run * stride
        if run == k:
            window = min(window * 2, _MAX_WINDOW)
        else:
            window = _FIRST_WINDOW
            if run < _MIN_RUN:
                single = _SINGLE_STEPS
    if pos != size:
        raise CorruptRecordError("Kafka record lengths do not add up to the batch")
    return starts


_FIRST_WINDOW = 16
_MAX_WINDOW = 1 << 16
_MIN_RUN = 4
_SINGLE_STEPS = 32


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """One zigzag varint at ``pos`` of ``data``: (value, bytes used)."""
    value = shift = 0
    for i, b in enumerate(data[pos : pos + _MAX_VARINT]):
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return (value >> 1) ^ -(value & 1), i + 1
    raise CorruptRecordError(f"bad varint at byte {pos} of a Kafka batch")


def _varints_at(buf: np.ndarray, pos: Int64s) -> tuple[Int64s, Int64s | int]:
    """The zigzag varints at ``pos`` (every position <= the payload end): (values, sizes);
    sizes is the int 1 when every varint is one byte."""
    first = buf[pos]
    more = first >= 0x80
    if not more.any():  # all one byte, the usual case for small fields
        u = first.astype(np.int64)
        return (u >> 1) ^ -(u & 1), 1
    second = buf[pos + 1]
    if not (more & (second >= 0x80)).any():  # at most two bytes: deltas below 8,192
        u = first.astype(np.int64)
        u = np.where(more, (u & 0x7F) | (second.astype(np.int64) << 7), u)
        return (u >> 1) ^ -(u & 1), more.astype(np.int64) + 1
    value = np.zeros(len(pos), dtype=np.uint64)
    sizes = np.zeros(len(pos), dtype=np.int64)
    active = np.ones(len(pos), dtype=np.bool_)
    for k in range(_MAX_VARINT):
        b = buf[pos + k].astype(np.uint64)
        value |= np.where(active, (b & np.uint64(0x7F)) << np.uint64(7 * k), np.uint64(0))
        sizes += active
        active &= (b & np.uint64(0x80)) != 0
        if not active.any():
            break
    else:
        raise CorruptRecordError("a varint longer than 10 bytes in a Kafka batch")
    signed = (value >> np.uint64(1)).astype(np.int64) ^ -(value & np.uint64(1)).astype(np.int64)
    return signed, sizes


def uniform_runs(starts: Int64s, sizes: Int64s) -> list[tuple[int, int]] | None:
    """Split records into runs ``[a, b)`` of equal size at an equal spacing, or None when
    there would be more than one run per 8 records (then a strided copy per run costs
    more than the alternatives)."""
    n = len(starts)
    if n == 1:
        return [(0, 1)]
    steps = np.diff(starts)
    breaks = np.diff(sizes) != 0
    breaks[1:] |= steps[1:] != steps[:-1]
    edges = np.flatnonzero(breaks) + 1
    if len(edges) > n // 8:
        return None
    return list(itertools.pairwise([0, *edges.tolist(), n]))


def strided_rows(buf: np.ndarray, start: int, rows: int, width: int, step: int) -> np.ndarray:
    """A (rows, width) view of ``buf`` whose rows begin ``step`` bytes apart from
    ``start`` (the caller guarantees the last row ends within ``buf``)."""
    return np.lib.stride_tricks.as_strided(
        buf[start:], shape=(rows, width), strides=(step, 1), writeable=True
    )


def _gather(buf: np.ndarray, starts: Int64s, lengths: Int64s) -> bytes:
    """The runs ``buf[start:start+length]`` (nulls take none) concatenated in order.

    Consecutive records with the same length at the same spacing are one strided copy;
    when sizes change too often for that, one slice per record."""
    sizes = np.maximum(lengths, 0)
    if not int(sizes.max()):
        return b""
    runs = uniform_runs(starts, sizes)
    if runs is None:
        view = buf.data
        ends = starts + sizes
        return b"".join(map(view.__getitem__, map(slice, starts.tolist(), ends.tolist())))
    pieces = []
    for a, b in runs:
        start, width = int(starts[a]), int(sizes[a])
        if width:
            step = int(starts[a + 1] - starts[a]) if b - a > 1 else width
            pieces.append(strided_rows(buf, start, b - a, width, step).tobytes())
    return b"".join(pieces)


def _read_headers(
    buf: np.ndarray, pos: Int64s, record_ends: Int64s, counts: Int64s
) -> tuple[Int64s, bytes, Int64s]:
    """Each record's logstream header blob (u16 count, then per header u16 name length,
    name, i32 value length or -1, value; little-endian), one header index at a time."""
    if int(counts.max()) > _U16_MAX:
        raise InvalidBatchError("more than 65535 headers in one record")
    pos = pos.copy()
    has = counts > 0
    blob_sizes = np.where(has, 2, 0).astype(np.int64)
    taken = []  # per header index: (rows, name starts, name lengths, value starts, lengths)
    for j in range(int(counts.max())):
        rows = np.nonzero(counts > j)[0]
        p = pos[rows]
        name_lengths, used = _varints_at(buf, p)
        name_starts = p + used
        p = name_starts + np.maximum(name_lengths, 0)
        _within(p, record_ends[rows], name_lengths)
        if int(name_lengths.min()) < 0:
            raise CorruptRecordError("a null Kafka header name")
        if int(name_lengths.max()) > _U16_MAX:
            raise InvalidBatchError("a header name longer than 65535 bytes")
        _check_utf8(buf, name_starts, name_lengths)
        value_lengths, used = _varints_at(buf, p)
        value_starts = p + used
        p = value_starts + np.maximum(value_lengths, 0)
        _within(p, record_ends[rows], value_lengths)
        pos[rows] = p
        blob_sizes[rows] += 6 + name_lengths + np.maximum(value_lengths, 0)
        taken.append((rows, name_starts, name_lengths, value_starts, value_lengths))
    out = np.zeros(int(blob_sizes.sum()), dtype=np.uint8)
    cursor = np.cumsum(blob_sizes) - blob_sizes
    _put_le(out, cursor[has], counts[has], 2)
    cursor[has] += 2
    for rows, name_starts, name_lengths, value_starts, value_lengths in taken:
        at = cursor[rows]
        _put_le(out, at, name_lengths, 2)
        at = _copy_runs(out, at + 2, buf, name_starts, name_lengths)
        _put_le(out, at, value_lengths, 4)
        cursor[rows] = _copy_runs(out, at + 4, buf, value_starts, value_lengths)
    return blob_sizes, out.tobytes(), pos


def _check_utf8(buf: np.ndarray, starts: Int64s, lengths: Int64s) -> None:
    """Every name valid UTF-8: the concatenation decodes and no name begins with a
    continuation byte (so no name's sequence is completed by the next one's bytes)."""
    nonempty = starts[lengths > 0]
    if bool(((buf[nonempty] & 0xC0) == 0x80).any()):
        raise InvalidBatchError("a Kafka header name is not UTF-8")
    try:
        _gather(buf, starts, lengths).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidBatchError("a Kafka header name is not UTF-8") from None


def _put_le(out: np.ndarray, at: Int64s, values: Int64s, width: int) -> None:
    """Little-endian ``width``-byte integers (two's complement) at positions ``at``."""
    raw = values.astype(f"<i{width}").view(np.uint8).reshape(-1, width)
    out[at[:, None] + np.arange(width)] = raw


def _copy_runs(
    out: np.ndarray, at: Int64s, src: np.ndarray, starts: Int64s, lengths: Int64s
) -> Int64s:
    """Copy ``src`` runs to positions ``at``; the positions after them."""
    sizes = np.maximum(lengths, 0)
    total = int(sizes.sum())
    if total:
        shift = np.cumsum(sizes) - sizes
        step = np.arange(total)
        out[np.repeat(at - shift, sizes) + step] = src[np.repeat(starts - shift, sizes) + step]
    return at + sizes
