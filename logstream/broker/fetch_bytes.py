"""Fetch and Subscribe answers written as their wire bytes around the stored batches.

A ``FetchResponse`` holds whole stored batches (``records``), up to megabytes per message.
Built as protobuf objects, those bytes were copied into the partition message, again into
the response, and once more when gRPC serialised it; written here, they are copied once,
into the answer. gRPC sends the bytes as they are (``logstream.broker.rpc`` passes a
``bytes`` answer through its serialiser).

Byte format (protobuf wire format, ``protos/logstream/v1/log.proto``)::

    FetchResponse
      per partition:  0x0A  varint(n)  FetchPartitionResponse (n bytes)   field 1, LEN
      when throttled: 0x10  varint(ms)                                     field 2, VARINT
    FetchPartitionResponse
      every field but records, as protobuf serialises them (fields 1-6, 8, 9)
      0x3A  varint(len)  records                                           field 7, LEN

Protobuf parsers accept fields in any order, so ``records`` may follow fields 8 and 9, and
a field appended to a serialised message is read as part of it: that is how
:func:`with_throttle_ms` reports a throttle after the answer was written. An empty answer
(a heartbeat) is zero bytes. Varints are unsigned LEB128: 7 bits per byte, low bits first,
the high bit set on every byte but the last.

Pure functions; no state.
"""

from __future__ import annotations

from collections.abc import Sequence

from logstream.broker.fetch import FetchOutcome
from logstream.broker.rpc import error_fields
from logstream.codec.varint import varint
from logstream.errors import CorruptRecordError, OffsetOutOfRangeError
from logstream.protocol import log_pb2

PARTITIONS_TAG = b"\x0a"  # FetchResponse.partitions: field 1, wire type 2 (LEN)
THROTTLE_TAG = b"\x10"  # FetchResponse.throttle_time_ms: field 2, wire type 0 (VARINT)
RECORDS_TAG = b"\x3a"  # FetchPartitionResponse.records: field 7, wire type 2 (LEN)
MAX_THROTTLE_MS = 2**31 - 1  # throttle_time_ms is an int32


def partition_header(o: FetchOutcome) -> log_pb2.FetchPartitionResponse:
    """The partition's answer without its records."""
    code, message = error_fields(o.error)
    if isinstance(o.error, OffsetOutOfRangeError):
        message = f"{message} (earliest={o.error.earliest}, latest={o.error.latest})"
    pb = log_pb2.FetchPartitionResponse(
        topic=o.topic,
        partition=o.partition,
        error_code=code,
        error_message=message,
        high_watermark=o.high_watermark,
        log_start_offset=o.log_start_offset,
    )
    if isinstance(o.error, CorruptRecordError):  # the range, so a consumer can skip it
        if o.error.first_offset is not None:
            pb.corrupt_first_offset = o.error.first_offset
        if o.error.last_offset is not None:
            pb.corrupt_last_offset = o.error.last_offset
    return pb


def fetch_response_bytes(outcomes: Sequence[FetchOutcome]) -> bytes:
    """The serialised ``FetchResponse`` of ``outcomes``, each partition's records copied
    once (into the returned bytes)."""
    parts: list[bytes] = []
    for o in outcomes:
        header = partition_header(o).SerializeToString()
        records = o.records
        if records:
            head = header + RECORDS_TAG + varint(len(records))
            parts += (PARTITIONS_TAG, varint(len(head) + len(records)), head, records)
        else:
            parts += (PARTITIONS_TAG, varint(len(header)), header)
    return b"".join(parts)


def with_throttle_ms(answer: bytes, throttle_ms: int) -> bytes:
    """A serialised ``FetchResponse`` that says it was throttled ``throttle_ms`` (> 0; capped
    at the int32 field's maximum). A parser keeps the last value of a field it reads twice,
    so this also replaces a throttle ``answer`` carried already."""
    return answer + THROTTLE_TAG + varint(min(throttle_ms, MAX_THROTTLE_MS))
