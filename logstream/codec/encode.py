"""Building a batch from columns of keys, values, timestamps and header blobs.

The layout written is the one in ``header.py``. Lengths become int32 numpy columns and the
bytes are joined once per section, so no Python loop runs per record unless a column holds
``None`` (a null key or value). Pure functions, thread-safe.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

from logstream.codec import compression
from logstream.codec.crc import crc32c
from logstream.codec.decode import DecodedBatch
from logstream.codec.header import (
    BLOB_COUNT,
    BLOB_NAME_LENGTH,
    BLOB_VALUE_LENGTH,
    COLUMN_DTYPE,
    COMPRESSION_MASK,
    CRC_FIELD,
    CRC_POS,
    CRC_START,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    TIMESTAMP_TYPE_LOG_APPEND,
    BatchHeader,
    columns_struct,
)
from logstream.errors import InvalidBatchError
from logstream.types import Headers

_INT32_MAX: Final = 2**31 - 1

Column = npt.NDArray[np.int32]
IntColumn = npt.NDArray[np.integer[Any]]  # any integer dtype; written as int32


def _lengths_and_blob(items: Sequence[bytes | None]) -> tuple[Column, bytes]:
    """Length column (-1 for None) and concatenated bytes, without a Python-level record loop
    in the common case of no None values."""
    n = len(items)
    if None in items:
        lengths = np.fromiter(
            (-1 if x is None else len(x) for x in items), dtype=COLUMN_DTYPE, count=n
        )
        blob = b"".join([x for x in items if x is not None])
    else:
        present: Sequence[bytes] = items  # type: ignore[assignment]  # no None, checked above
        lengths = np.fromiter(map(len, present), dtype=COLUMN_DTYPE, count=n)
        blob = b"".join(present)
    return lengths, blob


def encode_headers(headers: Headers | Sequence[tuple[str, bytes | None]]) -> bytes:
    """One record's header blob (layout in ``header.py``); b"" for no headers."""
    if not headers:
        return b""
    parts = [BLOB_COUNT.pack(len(headers))]
    for name, value in headers:
        try:
            raw = name.encode("utf-8")
        except AttributeError:
            raise TypeError(
                f"header names must be str, got {type(name).__name__}: {name!r}"
            ) from None
        if len(raw) > 0xFFFF:
            raise InvalidBatchError(f"header name longer than 65535 bytes: {name[:40]!r}...")
        parts.append(BLOB_NAME_LENGTH.pack(len(raw)))
        parts.append(raw)
        if value is None:
            parts.append(BLOB_VALUE_LENGTH.pack(-1))
        elif isinstance(value, str):  # bytes(str) would fail with no word of which header
            raise TypeError(not_bytes(f"header {name!r}", value))
        else:
            try:
                parts.append(BLOB_VALUE_LENGTH.pack(len(value)))
                parts.append(bytes(value))
            except TypeError:
                raise TypeError(not_bytes(f"header {name!r}", value)) from None
    return b"".join(parts)


def not_bytes(field: str, value: object) -> str:
    """The message for a key, value or header value that is not bytes (or None)."""
    hint = f" (encode it: {value[:20]!r}.encode())" if isinstance(value, str) else ""
    return f"{field} must be bytes or None, got {type(value).__name__}{hint}"


def _timestamp_columns(
    timestamps: Sequence[int] | npt.NDArray[np.int64] | int | None, n: int, now_ms: int | None
) -> tuple[int, int, Column]:
    """first_timestamp, max_timestamp and the int32 delta column."""
    if timestamps is None or isinstance(timestamps, int):
        if timestamps is None:
            ts0 = now_ms if now_ms is not None else time.time_ns() // 1_000_000
        else:
            ts0 = timestamps
        return int(ts0), int(ts0), np.zeros(n, dtype=COLUMN_DTYPE)
    ts = np.asarray(timestamps, dtype=np.int64)
    if ts.shape != (n,):
        raise InvalidBatchError(f"{ts.shape[0] if ts.ndim else 1} timestamps for {n} values")
    first_ts = int(ts[0])
    d = ts - first_ts
    if int(d.min()) < -(2**31) or int(d.max()) > _INT32_MAX:
        raise InvalidBatchError("timestamps in one batch must lie within ~24 days of the first")
    return first_ts, int(ts.max()), d.astype(COLUMN_DTYPE)


def encode_batch(
    values: Sequence[bytes | None],
    *,
    keys: Sequence[bytes | None] | None = None,
    timestamps: Sequence[int] | npt.NDArray[np.int64] | int | None = None,
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
        key_lengths: Column = np.full(n, -1, dtype=COLUMN_DTYPE)
        key_blob = b""
    else:
        if len(keys) != n:
            raise InvalidBatchError(f"{len(keys)} keys for {n} values")
        key_lengths, key_blob = _lengths_and_blob(keys)
    value_lengths, value_blob = _lengths_and_blob(values)
    if headers is None:
        header_lengths: Column = np.zeros(n, dtype=COLUMN_DTYPE)
        header_blob = b""
    else:
        if len(headers) != n:
            raise InvalidBatchError(f"{len(headers)} header blobs for {n} values")
        header_lengths, header_blob = _lengths_and_blob(headers)
    first_ts, max_ts, deltas = _timestamp_columns(timestamps, n, now_ms)
    return encode_columns(
        key_lengths,
        key_blob,
        value_lengths,
        value_blob,
        deltas,
        header_lengths,
        header_blob,
        first_timestamp=first_ts,
        max_timestamp=max_ts,
        base_offset=base_offset,
        compression_type=compression_type,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        log_append_time=log_append_time,
    )


def encode_columns(
    key_lengths: IntColumn,
    key_blob: bytes | memoryview,
    value_lengths: IntColumn,
    value_blob: bytes | memoryview,
    timestamp_deltas: IntColumn,
    header_lengths: IntColumn,
    header_blob: bytes | memoryview,
    *,
    first_timestamp: int,
    max_timestamp: int,
    base_offset: int = 0,
    compression_type: int = compression.NONE,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = NO_PRODUCER_EPOCH,
    base_sequence: int = NO_SEQUENCE,
    log_append_time: bool = False,
) -> bytes:
    """One batch from its columns as they are laid out (``header.py``): the four int32
    columns (N entries each, -1 lengths for nulls) and the three concatenated byte runs.

    The caller guarantees the columns agree with the runs (storage's append check verifies
    it again); :func:`encode_batch` builds them from Python values, the Kafka listener from
    a Kafka batch's bytes.
    """
    n = len(value_lengths)
    if n == 0:
        raise InvalidBatchError("a batch needs at least one record")
    parts: list[bytes | memoryview] = [
        key_lengths.astype(COLUMN_DTYPE, copy=False).tobytes(),
        value_lengths.astype(COLUMN_DTYPE, copy=False).tobytes(),
        timestamp_deltas.astype(COLUMN_DTYPE, copy=False).tobytes(),
        header_lengths.astype(COLUMN_DTYPE, copy=False).tobytes(),
        key_blob,
        value_blob,
        header_blob,
    ]
    if len(key_blob) > _INT32_MAX or len(value_blob) > _INT32_MAX:
        raise InvalidBatchError("batch sections larger than 2 GiB")
    if compression_type != compression.NONE:
        parts = [compression.compress(compression_type, b"".join(parts))]
    stored_length = sum(map(len, parts))
    attributes = compression_type & COMPRESSION_MASK
    if log_append_time:
        attributes |= TIMESTAMP_TYPE_LOG_APPEND
    batch_length = HEADER_SIZE + stored_length
    if batch_length > _INT32_MAX:
        raise InvalidBatchError("batch larger than 2 GiB")
    head = bytearray(HEADER_SIZE)
    HEADER.pack_into(
        head,
        0,
        base_offset,
        batch_length,
        MAGIC,
        0,  # crc, filled in below
        attributes,
        n,
        first_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        len(key_blob),
        len(value_blob),
        len(header_blob),
        stored_length,
    )
    # The CRC runs over the header's tail and then each part, so the batch is joined once.
    crc = crc32c(memoryview(head)[CRC_START:])
    for part in parts:
        crc = crc32c(part, crc)
    CRC_FIELD.pack_into(head, CRC_POS, crc)
    return b"".join((head, *parts))


class BuiltBatch(NamedTuple):
    """A batch this process encoded (:func:`encode_small_batch`) with the header it wrote.

    The broker appends its bytes ``trusted`` (``PartitionLog.append``: no second CRC and
    record-section check): the encoder derives every header field from the columns it
    writes, so the checks could not fail. Bytes from anywhere else are appended checked."""

    data: bytes
    header: BatchHeader


def encode_small_batch(
    keys: Sequence[bytes | None],
    values: Sequence[bytes | None],
    timestamps: Sequence[int],
    header_blobs: Sequence[bytes],
    *,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = NO_PRODUCER_EPOCH,
    base_sequence: int = NO_SEQUENCE,
) -> BuiltBatch:
    """An uncompressed batch of a few records from per-record lists, with ``struct`` and
    builtins only: numpy's fixed cost per call (~1 us, a dozen calls in
    :func:`encode_columns`) is most of a one-record batch. Same bytes as
    :func:`encode_batch` for the same records."""
    n = len(values)
    if n == 0:
        raise InvalidBatchError("a batch needs at least one record")
    if not len(keys) == len(timestamps) == len(header_blobs) == n:
        raise InvalidBatchError(f"columns of different lengths for {n} records")
    first = timestamps[0]
    deltas = [t - first for t in timestamps]
    if min(deltas) < -(2**31) or max(deltas) > _INT32_MAX:
        raise InvalidBatchError("timestamps in one batch must lie within ~24 days of the first")
    if not -(2**63) <= first + min(deltas) <= first + max(deltas) < 2**63:
        raise InvalidBatchError("a timestamp outside the int64 range")
    key_blob = b"".join([k for k in keys if k])
    value_blob = b"".join([v for v in values if v])
    header_blob = b"".join(header_blobs)
    columns = columns_struct(n).pack(
        *[-1 if k is None else len(k) for k in keys],
        *[-1 if v is None else len(v) for v in values],
        *deltas,
        *map(len, header_blobs),
    )
    records_length = len(columns) + len(key_blob) + len(value_blob) + len(header_blob)
    if HEADER_SIZE + records_length > _INT32_MAX:
        raise InvalidBatchError("batch larger than 2 GiB")
    fields = [
        0,  # base_offset: stamped on append
        HEADER_SIZE + records_length,
        MAGIC,
        0,  # crc, below
        compression.NONE,
        n,
        first,
        first + max(deltas),
        producer_id,
        producer_epoch,
        base_sequence,
        len(key_blob),
        len(value_blob),
        len(header_blob),
        records_length,
    ]
    head = HEADER.pack(*fields)
    crc = crc32c(memoryview(head)[CRC_START:])
    for part in (columns, key_blob, value_blob, header_blob):
        crc = crc32c(part, crc)
    fields[_CRC_INDEX] = crc
    data = b"".join((HEADER.pack(*fields), columns, key_blob, value_blob, header_blob))
    return BuiltBatch(data, BatchHeader(*fields))


_CRC_INDEX: Final = BatchHeader._fields.index("crc")


def encode_rows(batch: DecodedBatch, start: int, stop: int) -> bytes:
    """Rows ``[start, stop)`` of a decoded batch as a batch of their own, uncompressed, at
    their own offsets (``base_offset`` = the row's offset). The same bytes as
    :func:`encode_batch` given those rows' values, keys, timestamps and header blobs, but
    cut column-wise: the rows' keys, values and headers are contiguous in ``batch``, so
    this is a few slices whatever the row count, no Python object per record."""
    n = len(batch)
    if not 0 <= start < stop <= n:
        raise InvalidBatchError(f"rows {start}..{stop} of a batch of {n}")
    last = stop - 1

    def run(blob: memoryview, starts: npt.NDArray[np.int64], lengths: Column) -> memoryview:
        return blob[int(starts[start]) : int(starts[last]) + max(int(lengths[last]), 0)]

    stamps = batch.timestamps[start:stop]
    first_ts = int(stamps[0])
    deltas = stamps - first_ts
    if int(deltas.min()) < -(2**31) or int(deltas.max()) > _INT32_MAX:
        raise InvalidBatchError("timestamps in one batch must lie within ~24 days of the first")
    return encode_columns(
        batch.key_lengths[start:stop],
        run(batch.keys, batch.key_starts, batch.key_lengths),
        batch.value_lengths[start:stop],
        run(batch.values, batch.value_starts, batch.value_lengths),
        deltas,
        batch.header_lengths[start:stop],
        run(batch.headers_blob, batch.header_starts, batch.header_lengths),
        first_timestamp=first_ts,
        max_timestamp=int(stamps.max()),
        base_offset=int(batch.offsets[start]),
    )


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
