"""Kafka record batches (magic 2) to and from logstream's columnar batch, at the listener's edge.

Kafka's batch (big-endian; ``apache/kafka`` DefaultRecordBatch)::

    baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 (2) | crc u32
    (CRC32C of attributes..end) | attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 |
    maxTimestamp i64 | producerId i64 | producerEpoch i16 | baseSequence i32 | count i32 |
    records: per record a varint length, attributes i8, varlong timestamp delta, varint
    offset delta, varint key length + key, varint value length + value, varint header
    count, per header varint name length + name, varint value length + value

Attributes bits 0-2 compression (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd), bit 3
timestamp type, bit 4 transactional, bit 5 control. logstream's layout is in
``logstream/codec/header.py``.

Produce: ``batch_in.py`` checks the CRC, decompresses and reads the varints into columns
with numpy, which become the logstream batch's columns directly; a batch of a few records
stored uncompressed (the one-record Produce of a latency-minded producer) goes instead
from aiokafka's compiled reader to ``codec.encode_small_batch`` and is appended without
storage's second check (``BuiltBatch``). Producer id, epoch and
base sequence are carried over, so storage's idempotence check sees the Kafka producer's
own numbers. lz4 and zstd batches are stored with the same codec; gzip and snappy (which
logstream's codec does not have) are stored uncompressed.

Fetch: each stored batch is decoded into columns (numpy) and written back as one Kafka
batch with the same base offset, so offsets are the same numbers in both protocols, and
the stored codec (none, lz4, zstd). Record timestamps, keys, values, headers and the
producer fields are carried; ``partitionLeaderEpoch`` is :data:`LEADER_EPOCH` (0).

Pure functions, thread-safe. Errors are logstream's: CorruptRecordError for a bad CRC or
undecodable bytes, InvalidBatchError for intact bytes logstream does not take (old message
formats, transactional or control batches).
"""

from __future__ import annotations

import functools
import itertools
import struct
from collections.abc import Iterator

import numpy as np
from aiokafka.codec import lz4_encode, zstd_encode
from aiokafka.record._crecords import DefaultRecordBatchBuilder

from logstream.codec import (
    TIMESTAMP_TYPE_LOG_APPEND,
    BatchRows,
    DecodedBatch,
    compression,
    decode_batch,
    decode_headers,
    decode_rows,
    peek_length,
    read_header,
)
from logstream.codec.crc import crc32c
from logstream.codec.varint import varint
from logstream.errors import CorruptRecordError, InvalidBatchError
from logstream.kafka.batch_in import (
    read_kafka_batch,
    strided_rows,
    to_logstream_batches,
    uniform_runs,
)

KAFKA_MAGIC = 2

# Kafka batch header fields read before handing the bytes to the reader.
_KAFKA_PREFIX = struct.Struct(">qiib")  # baseOffset, batchLength, partitionLeaderEpoch, magic
KAFKA_LOG_OVERHEAD = 12  # baseOffset + batchLength: batchLength counts the bytes after them
KAFKA_HEADER_SIZE = 61
_KAFKA_HEADER = struct.Struct(
    ">"
    "q"  # baseOffset
    "i"  # batchLength: bytes after this field
    "i"  # partitionLeaderEpoch
    "b"  # magic: 2
    "I"  # crc: CRC32C of attributes..end
    "h"  # attributes
    "i"  # lastOffsetDelta
    "q"  # baseTimestamp
    "q"  # maxTimestamp
    "q"  # producerId
    "h"  # producerEpoch
    "i"  # baseSequence
    "i"  # record count
)
_KAFKA_CRC_POS = 17
_KAFKA_CRC_START = 21
_U32 = struct.Struct(">I")
_KAFKA_BASE = struct.Struct(">qii")  # baseOffset, batchLength, partitionLeaderEpoch
LEADER_EPOCH = 0
"""partitionLeaderEpoch of every fetched batch. A Kafka leader stamps its epoch on each
batch it appends (the producer sends -1); this broker is the only leader there has been,
epoch 0, as Metadata and ListOffsets say."""
_LOG_APPEND_TIME = 0x08
assert _KAFKA_HEADER.size == 61

_TRANSACTIONAL = 0x10
_CONTROL = 0x20

# logstream codec id -> Kafka codec id used on fetch.
_FETCH_CODEC = {compression.NONE: 0, compression.LZ4: 3, compression.ZSTD: 4}


def split_kafka_batches(records: bytes | memoryview) -> Iterator[memoryview]:
    """The batches of a produce request's ``records`` field, as views; raises on a torn one."""
    view = memoryview(records)
    pos, end = 0, len(view)
    while pos < end:
        if end - pos < KAFKA_HEADER_SIZE:
            raise CorruptRecordError(f"truncated Kafka batch: {end - pos} bytes at {pos}")
        _, length, _, magic = _KAFKA_PREFIX.unpack_from(view, pos)
        if magic != KAFKA_MAGIC:
            raise InvalidBatchError(
                f"Kafka message format v{magic} is not supported; use record batches (v2)"
            )
        total = KAFKA_LOG_OVERHEAD + length
        if length < KAFKA_HEADER_SIZE - KAFKA_LOG_OVERHEAD or total > end - pos:
            raise CorruptRecordError(f"Kafka batch length {length} does not fit the request")
        yield view[pos : pos + total]
        pos += total


def kafka_to_logstream(kafka_batch: bytes | memoryview) -> bytes:
    """One Kafka batch (magic 2) -> one logstream batch (base offset 0, stamped on append),
    however large; the listener splits by the topic's limit with :mod:`batch_in`."""
    return to_logstream_batches(read_kafka_batch(kafka_batch), 2**31 - 1)[0]


def logstream_to_kafka(stored: bytes | memoryview) -> bytes:
    """Whole logstream batches (as a fetch reads them) -> the same records as Kafka batches.

    A torn batch at the end of ``stored`` (cannot happen for reads of whole batches) stops
    the conversion there, the way Kafka clients ignore a partial trailing batch.
    """
    return b"".join(logstream_to_kafka_pieces(stored))


def logstream_to_kafka_pieces(stored: bytes | memoryview) -> list[bytes | memoryview]:
    """:func:`logstream_to_kafka` as the pieces that concatenate to it (byte views), so
    that the Fetch answer copies the records once, into the frame it sends."""
    view = memoryview(stored)
    out: list[bytes | memoryview] = []
    pos, end = 0, len(view)
    while end - pos > 0:
        length = peek_length(view, pos)
        if length <= 0 or length > end - pos:
            break
        out += _one_to_kafka(view, pos)
        pos += length
    return out


SMALL_BATCH_RECORDS = 32
"""Up to this many records, aiokafka's compiled builder (one call per record) beats the ~30
numpy calls of the columnar writer, which cost the same whatever the batch size."""


def _one_to_kafka(view: memoryview, pos: int) -> list[bytes | memoryview]:
    """One stored batch as a Kafka batch: its header and its records (a view of the
    records written here, not copied again)."""
    if read_header(view, pos).record_count <= SMALL_BATCH_RECORDS:
        return [_small_to_kafka(decode_rows(view, pos, verify=False))]
    decoded = decode_batch(view, pos, verify=False)
    h = decoded.header
    n = len(decoded)
    ts = decoded.timestamps
    key_lengths = decoded.key_lengths.astype(np.int64)
    value_lengths = decoded.value_lengths.astype(np.int64)
    header_pieces = _kafka_headers(decoded)
    parts = [
        _varint_columns(ts - h.first_timestamp),  # timestamp delta
        _offset_deltas(n) if n <= _CACHED_DELTAS_MAX else _varint_columns(np.arange(n)),
        _varint_columns(key_lengths),
    ]
    key_sizes = np.maximum(key_lengths, 0)
    value_sizes = np.maximum(value_lengths, 0)
    value_len_col = _varint_columns(value_lengths)
    header_sizes = np.fromiter(map(len, header_pieces), np.int64, n) if header_pieces else None
    # body = attributes(1) + ts + offset + key length + key + value length + value + headers
    body = 1 + parts[0][1] + parts[1][1] + parts[2][1] + key_sizes + value_len_col[1] + value_sizes
    body = body + (header_sizes if header_sizes is not None else 1)
    length_col = _varint_columns(body)
    record_sizes = length_col[1] + body
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(record_sizes[:-1], out=starts[1:])
    out = np.zeros(int(record_sizes.sum()), dtype=np.uint8)
    # each record: length, attributes (0), ts delta, offset delta, key length, key, value
    # length, value, headers (or a header count of 0)
    fields: list[_Field] = [length_col, 1, *parts, (decoded.keys, key_sizes), value_len_col]
    fields.append((decoded.values, value_sizes))
    if header_sizes is not None:
        fields.append((memoryview(b"".join(header_pieces)), header_sizes))
    else:
        fields.append(1)  # the header count varint 0 (out starts zeroed)
    if not _fill_uniform(out, starts, record_sizes, fields):
        _fill_scattered(out, starts, fields)
    kafka_codec = _FETCH_CODEC.get(h.compression, 0)
    records: bytes | memoryview = out.data
    if kafka_codec == 3:
        records = lz4_encode(out.tobytes())
    elif kafka_codec == 4:
        records = zstd_encode(out.tobytes())
    attributes = kafka_codec
    if h.attributes & TIMESTAMP_TYPE_LOG_APPEND:
        attributes |= _LOG_APPEND_TIME
    head = bytearray(KAFKA_HEADER_SIZE)
    _KAFKA_HEADER.pack_into(
        head,
        0,
        h.base_offset,
        KAFKA_HEADER_SIZE - KAFKA_LOG_OVERHEAD + len(records),
        LEADER_EPOCH,
        KAFKA_MAGIC,
        0,  # crc, below
        attributes,
        n - 1,
        h.first_timestamp,
        h.max_timestamp,
        h.producer_id,
        h.producer_epoch,
        h.base_sequence,
        n,
    )
    crc = crc32c(records, crc32c(memoryview(head)[_KAFKA_CRC_START:]))
    _U32.pack_into(head, _KAFKA_CRC_POS, crc)
    return [bytes(head), records]


_Field = tuple[np.ndarray | memoryview, np.ndarray] | int
"""A record field, in record order: a varint column from :func:`_varint_columns`
(a (groups, n) uint8 matrix and each one's size), runs of bytes (the concatenated bytes
as a memoryview and each record's size) or a number of zero bytes every record has."""


def _fill_uniform(
    out: np.ndarray, starts: np.ndarray, record_sizes: np.ndarray, fields: list[_Field]
) -> bool:
    """Write the records run by run, where consecutive records have every field of the
    same size: such a run is a (rows, width) block of ``out`` and each field a column
    range of it, filled with one slice assignment. False (nothing written) when there
    would be more than one run per 8 records; :func:`_fill_scattered` does those."""
    n = len(starts)
    changed: np.ndarray | None = None  # record i+1's layout differs from record i's
    for field in fields:
        if isinstance(field, int) or _constant(field[1]):
            continue
        step = field[1][1:] != field[1][:-1]
        changed = step if changed is None else changed | step
    edges = np.flatnonzero(changed) + 1 if changed is not None else np.empty(0, np.int64)
    if len(edges) > n // 8:
        return False
    taken = [0] * len(fields)  # bytes of each run field used by the runs before
    sources = [
        np.frombuffer(f[0], dtype=np.uint8) if isinstance(f, tuple) and isinstance(f[0], memoryview)
        else None
        for f in fields
    ]  # fmt: skip
    for a, b in itertools.pairwise([0, *edges.tolist(), n]):
        rows = b - a
        width = int(record_sizes[a])
        block = out[int(starts[a]) : int(starts[a]) + rows * width].reshape(rows, width)
        col = 0
        for i, field in enumerate(fields):
            if isinstance(field, int):
                col += field
                continue
            size = int(field[1][a])
            src = sources[i]
            if src is None:  # a varint column
                matrix = field[0]
                assert isinstance(matrix, np.ndarray)
                if matrix.strides[1] == 0:  # one varint throughout: fill each byte column
                    for j in range(size):
                        block[:, col + j] = matrix[j, 0]
                else:
                    block[:, col : col + size] = matrix[:size, a:b].T
            elif size:
                block[:, col : col + size] = src[taken[i] : taken[i] + rows * size].reshape(
                    rows, size
                )
                taken[i] += rows * size
            col += size
    return True


def _constant(sizes: np.ndarray) -> bool:
    """Whether ``sizes`` is one value repeated by a zero-stride view (a varint column's
    sizes when every record has the same varint)."""
    return sizes.ndim == 1 and sizes.strides[0] == 0


def _fill_scattered(out: np.ndarray, starts: np.ndarray, fields: list[_Field]) -> None:
    """Write the records field by field at per-record cursors (any layout)."""
    cursor = starts.copy()
    for field in fields:
        if isinstance(field, int):
            cursor += field
        elif isinstance(field[0], memoryview):
            _scatter_runs(out, cursor, field[1], field[0])
        else:
            _scatter_varints(out, cursor, (field[0], field[1]))


def _small_to_kafka(rows: BatchRows) -> bytes:
    """A few records through aiokafka's compiled builder, from per-record lists (no numpy:
    the latency path fetches one record at a time)."""
    h = rows.header
    builder = DefaultRecordBatchBuilder(
        KAFKA_MAGIC,
        _FETCH_CODEC.get(h.compression, 0),
        0,
        h.producer_id,
        h.producer_epoch,
        h.base_sequence,
        2**31 - 1,
    )
    for i, (key, value, ts, blob) in enumerate(
        zip(rows.keys, rows.values, rows.timestamps, rows.header_blobs, strict=True)
    ):
        builder.append(i, ts, key, value, list(decode_headers(blob)) if blob else [])
    built = builder.build()
    # outside Kafka's CRC; the builder wrote the producer's epoch -1
    _KAFKA_BASE.pack_into(built, 0, h.base_offset, len(built) - KAFKA_LOG_OVERHEAD, LEADER_EPOCH)
    if h.attributes & TIMESTAMP_TYPE_LOG_APPEND:
        return _with_attributes(built, _LOG_APPEND_TIME)
    return bytes(built)


def _with_attributes(built: bytearray, bits: int) -> bytes:
    """Set attribute bits of a built Kafka batch and recompute its CRC."""
    attributes = struct.unpack_from(">h", built, _KAFKA_CRC_START)[0] | bits
    struct.pack_into(">h", built, _KAFKA_CRC_START, attributes)
    _U32.pack_into(built, _KAFKA_CRC_POS, crc32c(memoryview(built)[_KAFKA_CRC_START:]))
    return bytes(built)


_CACHED_DELTAS_MAX = 1 << 16  # a cached column is ~11 bytes per record


@functools.lru_cache(maxsize=8)
def _offset_deltas(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The offset-delta varints 0..n-1, the same for every batch of ``n`` records (a
    replay's batches mostly share a few sizes); read-only, as the cache shares them."""
    matrix, sizes = _varint_columns(np.arange(n, dtype=np.int64))
    matrix.setflags(write=False)
    sizes.setflags(write=False)
    return matrix, sizes


@functools.lru_cache(maxsize=64)
def _constant_varints(value: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` records with one value throughout (every value 100 B, every key null): its
    one varint, repeated by a zero-stride view (read-only; callers only read it). Cached:
    a replay's batches repeat a few (value, size) pairs."""
    one, size = _varint_columns(np.array([value], dtype=np.int64))
    return np.broadcast_to(one, (one.shape[0], n)), np.broadcast_to(size, (n,))


def _varint_columns(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zigzag varints of ``values`` as a (groups, n) uint8 matrix and each one's size."""
    n = values.shape[0]
    if n > 1 and values[0] == values[-1] and (values == values[0]).all():
        return _constant_varints(int(values[0]), n)
    zz = ((values << 1) ^ (values >> 63)).astype(np.uint64)
    groups = max(1, (int(zz.max()).bit_length() + 6) // 7) if n else 1
    if groups == 1:  # every varint one byte (small deltas)
        return zz.astype(np.uint8).reshape(1, n), np.broadcast_to(np.int64(1), (n,))
    matrix = np.empty((groups, n), dtype=np.uint8)
    sizes = np.ones(n, dtype=np.int64)
    rest = zz
    for j in range(groups - 1):
        low = (rest & np.uint64(0x7F)).astype(np.uint8)
        rest = rest >> np.uint64(7)
        more = rest != 0
        sizes += more
        np.bitwise_or(low, more.view(np.uint8) << np.uint8(7), out=matrix[j])
    matrix[groups - 1] = rest.astype(np.uint8)
    return matrix, sizes


def _scatter_varints(
    out: np.ndarray, cursor: np.ndarray, col: tuple[np.ndarray, np.ndarray]
) -> None:
    """Write each record's varint at its cursor and move the cursors past it."""
    matrix, sizes = col
    for j in range(matrix.shape[0]):
        rows = sizes > j
        out[cursor[rows] + j] = matrix[j][rows]
    cursor += sizes


def _scatter_runs(out: np.ndarray, cursor: np.ndarray, sizes: np.ndarray, blob: memoryview) -> None:
    """Copy concatenated runs (record order, ``sizes`` bytes each) to the cursors.

    Records whose runs have the same size at the same spacing are one strided assignment
    (usually a handful per batch); otherwise one index per byte."""
    total = int(sizes.sum())
    if total:
        src = np.frombuffer(blob, dtype=np.uint8, count=total)
        runs = uniform_runs(cursor, sizes)
        if runs is None:
            shift = np.cumsum(sizes) - sizes
            step = np.arange(total)
            out[np.repeat(cursor - shift, sizes) + step] = src  # the runs are back to back
        else:
            taken = 0
            for a, b in runs:
                width = int(sizes[a])
                if not width:
                    continue
                rows = b - a
                gap = int(cursor[a + 1] - cursor[a]) if rows > 1 else width
                dest = strided_rows(out, int(cursor[a]), rows, width, gap)
                dest[:] = src[taken : taken + rows * width].reshape(rows, width)
                taken += rows * width
    cursor += sizes


def _kafka_headers(decoded: DecodedBatch) -> list[bytes]:
    """Each record's Kafka header section (count + headers), or [] when no record has any.

    Headers are per-record strings; only batches that carry them pay this loop.
    """
    lengths = decoded.header_lengths
    if not int(lengths.max(initial=0)):
        return []
    blob = decoded.headers_blob
    pieces = []
    for start, size in zip(decoded.header_starts.tolist(), lengths.tolist(), strict=True):
        hdrs = decode_headers(blob[start : start + size]) if size else ()
        piece = bytearray(_zigzag(len(hdrs)))
        for name, value in hdrs:
            raw = name.encode()
            piece += _zigzag(len(raw)) + raw
            piece += _zigzag(-1) if value is None else _zigzag(len(value)) + value
        pieces.append(bytes(piece))
    return pieces


def _zigzag(value: int) -> bytes:
    """A Kafka record's signed varint: zigzag-mapped, then the protobuf base-128 form."""
    return varint((value << 1) ^ (value >> 63))
