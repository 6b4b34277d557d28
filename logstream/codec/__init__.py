"""The record-batch codec: pure bytes in, pure bytes out. Imports nothing from grpc."""

from logstream.codec.batch import (
    HEADER_SIZE,
    BatchHeader,
    BatchRows,
    DecodedBatch,
    decode_batch,
    decode_headers,
    decode_rows,
    encode_batch,
    encode_headers,
    encode_records,
    iter_batches,
    iter_headers,
    peek_length,
    read_header,
    stamp_base_offset,
    validate_batch,
)
from logstream.codec.compression import LZ4, NONE, ZSTD

__all__ = [
    "HEADER_SIZE",
    "LZ4",
    "NONE",
    "ZSTD",
    "BatchHeader",
    "BatchRows",
    "DecodedBatch",
    "decode_batch",
    "decode_headers",
    "decode_rows",
    "encode_batch",
    "encode_headers",
    "encode_records",
    "iter_batches",
    "iter_headers",
    "peek_length",
    "read_header",
    "stamp_base_offset",
    "validate_batch",
]
