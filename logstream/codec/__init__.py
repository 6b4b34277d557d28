"""The record-batch codec: every rule about a batch's bytes. Pure bytes in, pure bytes out;
imports nothing from logstream but ``errors`` and ``types``, and never grpc.

Modules, by concept:

* ``header``: the one header layout (a single ``struct.Struct``; every field position is
  derived from it), :class:`BatchHeader`, reading a header, walking back-to-back batches,
  and stamping in place (base offset; log-append time and the producer's id, epoch and
  sequence, with the CRC recomputed);
* ``check``: :func:`validate_batch` (CRC and header arithmetic) and :func:`check_batch`
  (the append-time check of the record section, numpy and small-batch paths);
* ``framing``: the rule for the header bytes the CRC does not cover (``base_offset``,
  ``batch_length``): :func:`walk_frames` for readers of bare bytes, :func:`check_frames`
  for storage, which checks them against its index;
* ``encode`` / ``decode``: columns to a batch and back (numpy columns or small-batch lists);
* ``compression``: the codec registry and the one bounded :func:`compression.decompress`;
* ``crc``: CRC32C;
* ``schedule``: the reserved ``logstream-deliver-at`` / ``logstream-expires-at`` record
  headers (delayed delivery and TTL): writing them, finding them in a batch cheaply.

Callers import from ``logstream.codec``; the names below are the public API.
"""

from logstream.codec.check import (
    MAX_UNCOMPRESSED_SECTION,
    check_batch,
    check_header_arithmetic,
    check_record_section,
    validate_batch,
)
from logstream.codec.compression import LZ4, NONE, ZSTD
from logstream.codec.decode import (
    SMALL_BATCH_RECORDS,
    BatchRows,
    DecodedBatch,
    decode_batch,
    decode_headers,
    decode_rows,
    iter_batches,
)
from logstream.codec.encode import (
    BuiltBatch,
    encode_batch,
    encode_columns,
    encode_headers,
    encode_records,
    encode_rows,
    encode_small_batch,
)
from logstream.codec.framing import check_frames, walk_frames
from logstream.codec.header import (
    ATTRIBUTES_POS,
    BATCH_LENGTH_POS,
    COMPRESSION_MASK,
    CRC_POS,
    CRC_START,
    FIRST_TIMESTAMP_POS,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    MAGIC_POS,
    MAX_TIMESTAMP_POS,
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    RECORD_COLUMN_BYTES,
    RECORD_COUNT_POS,
    TIMESTAMP_TYPE_LOG_APPEND,
    BatchHeader,
    batch_positions,
    iter_headers,
    next_offset_after,
    peek_length,
    read_header,
    stamp_base_offset,
    stamp_crc,
    stamp_log_append_time,
    stamp_producer,
)
from logstream.codec.schedule import (
    DELIVER_AT,
    EXPIRES_AT,
    MAX_DELAY_MS,
    Schedule,
    batch_schedule,
    expiry_of,
    parse_time,
    schedule_headers,
)

__all__ = [
    "ATTRIBUTES_POS",
    "BATCH_LENGTH_POS",
    "COMPRESSION_MASK",
    "CRC_POS",
    "CRC_START",
    "DELIVER_AT",
    "EXPIRES_AT",
    "FIRST_TIMESTAMP_POS",
    "HEADER",
    "HEADER_SIZE",
    "LZ4",
    "MAGIC",
    "MAGIC_POS",
    "MAX_DELAY_MS",
    "MAX_TIMESTAMP_POS",
    "MAX_UNCOMPRESSED_SECTION",
    "NONE",
    "NO_PRODUCER_EPOCH",
    "NO_PRODUCER_ID",
    "NO_SEQUENCE",
    "RECORD_COLUMN_BYTES",
    "RECORD_COUNT_POS",
    "SMALL_BATCH_RECORDS",
    "TIMESTAMP_TYPE_LOG_APPEND",
    "ZSTD",
    "BatchHeader",
    "BatchRows",
    "BuiltBatch",
    "DecodedBatch",
    "Schedule",
    "batch_positions",
    "batch_schedule",
    "check_batch",
    "check_frames",
    "check_header_arithmetic",
    "check_record_section",
    "decode_batch",
    "decode_headers",
    "decode_rows",
    "encode_batch",
    "encode_columns",
    "encode_headers",
    "encode_records",
    "encode_rows",
    "encode_small_batch",
    "expiry_of",
    "iter_batches",
    "iter_headers",
    "next_offset_after",
    "parse_time",
    "peek_length",
    "read_header",
    "schedule_headers",
    "stamp_base_offset",
    "stamp_crc",
    "stamp_log_append_time",
    "stamp_producer",
    "validate_batch",
    "walk_frames",
]
