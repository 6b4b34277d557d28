"""Hand-packed encoders for the two hottest responses, Produce (v3-8) and Fetch (v4-11).

kio's writer is pure Python and walks every field generically (~100-200 us a response);
these pack the same bytes with ``struct`` in a few us, from kio's response objects or from
the plain answer classes below, which the listener's Produce and Fetch handlers build
(same field names; a kio object goes through ``wire.build``'s per-field walk, ~2 us each).
Both versions ranges are non-flexible (no compact encodings, no tagged fields), so the
layouts are short (big-endian; arrays are an i32 count, strings an i16 length, nullable
bytes an i32 length or -1)::

    ProduceResponse  [topic: name, [partition: index i32, error i16, base_offset i64,
                     log_append_time i64, log_start_offset i64 (v5+),
                     record_errors [batch_index i32, message nullable string] (v8+),
                     error_message nullable string (v8+)]], throttle_time i32
    FetchResponse    throttle_time i32, error i16 (v7+), session_id i32 (v7+),
                     [topic: name, [partition i32, error i16, high_watermark i64,
                     last_stable_offset i64, log_start_offset i64 (v5+),
                     aborted [producer_id i64, first_offset i64] nullable,
                     preferred_read_replica i32 (v11+), records nullable bytes]]

``tests/kafka_listener/test_wire.py`` checks them byte for byte against kio's writer.
"""

from __future__ import annotations

import datetime
import struct
from dataclasses import dataclass
from typing import Any

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_PRODUCE_PART = struct.Struct(">ihqq")  # index, error, base_offset, log_append_time
_FETCH_PART = struct.Struct(">ihqq")  # partition, error, high_watermark, last_stable_offset
_ABORTED = struct.Struct(">qq")


@dataclass(slots=True)
class ProducePartitionAnswer:
    index: int
    error_code: int
    base_offset: int = -1
    log_start_offset: int = -1
    error_message: str | None = None
    log_append_time: int = -1
    record_errors: tuple[Any, ...] = ()


@dataclass(slots=True)
class ProduceTopicAnswer:
    name: str
    partition_responses: tuple[ProducePartitionAnswer, ...]


@dataclass(slots=True)
class ProduceAnswer:
    responses: tuple[ProduceTopicAnswer, ...]
    throttle_time: datetime.timedelta | int = 0


@dataclass(slots=True)
class FetchPartitionAnswer:
    partition_index: int
    error_code: int
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int
    records: bytes | list[bytes | memoryview] | None  # a list: pieces to concatenate
    aborted_transactions: tuple[Any, ...] | None = None
    preferred_read_replica: int = -1


@dataclass(slots=True)
class FetchTopicAnswer:
    topic: str
    partitions: tuple[FetchPartitionAnswer, ...]


@dataclass(slots=True)
class FetchAnswer:
    responses: tuple[FetchTopicAnswer, ...]
    error_code: int = 0
    session_id: int = 0
    throttle_time: datetime.timedelta | int = 0


def _string(out: list[bytes | memoryview], value: str) -> None:
    raw = value.encode()
    out.append(_I16.pack(len(raw)))
    out.append(raw)


def _nullable_string(out: list[bytes | memoryview], value: str | None) -> None:
    if value is None:
        out.append(_I16.pack(-1))
    else:
        _string(out, value)


def _ms(value: Any) -> int:
    if value is None:
        return -1
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, datetime.timedelta):
        return int(value.total_seconds() * 1000)
    return int(value)


def produce_response(version: int, body: Any) -> bytes:
    out: list[bytes | memoryview] = [_I32.pack(len(body.responses))]
    for topic in body.responses:
        _string(out, topic.name)
        out.append(_I32.pack(len(topic.partition_responses)))
        for p in topic.partition_responses:
            out.append(
                _PRODUCE_PART.pack(
                    p.index, int(p.error_code), p.base_offset, _ms(p.log_append_time)
                )
            )
            if version >= 5:
                out.append(_I64.pack(p.log_start_offset))
            if version >= 8:
                out.append(_I32.pack(len(p.record_errors)))
                for e in p.record_errors:
                    out.append(_I32.pack(e.batch_index))
                    _nullable_string(out, e.batch_index_error_message)
                _nullable_string(out, p.error_message)
    out.append(_I32.pack(_ms(body.throttle_time)))
    return b"".join(out)


def records_size(records: bytes | list[bytes | memoryview] | None) -> int:
    """Bytes of a fetched partition's records (bytes, or pieces of byte views)."""
    if records is None:
        return 0
    if isinstance(records, list):
        return sum(map(len, records))
    return len(records)


def fetch_response(version: int, body: Any) -> bytes:
    return b"".join(fetch_response_pieces(version, body))


def fetch_response_pieces(version: int, body: Any) -> list[bytes | memoryview]:
    """:func:`fetch_response` as pieces (the records' own views among them): the caller
    joins them once, into the whole frame."""
    out: list[bytes | memoryview] = [_I32.pack(_ms(body.throttle_time))]
    if version >= 7:
        out.append(_I16.pack(int(body.error_code)))
        out.append(_I32.pack(body.session_id))
    out.append(_I32.pack(len(body.responses)))
    for topic in body.responses:
        _string(out, topic.topic)
        out.append(_I32.pack(len(topic.partitions)))
        for p in topic.partitions:
            out.append(
                _FETCH_PART.pack(
                    p.partition_index, int(p.error_code), p.high_watermark, p.last_stable_offset
                )
            )
            if version >= 5:
                out.append(_I64.pack(p.log_start_offset))
            if p.aborted_transactions is None:
                out.append(_I32.pack(-1))
            else:
                out.append(_I32.pack(len(p.aborted_transactions)))
                for a in p.aborted_transactions:
                    out.append(_ABORTED.pack(a.producer_id, a.first_offset))
            if version >= 11:
                out.append(_I32.pack(p.preferred_read_replica))
            if p.records is None:
                out.append(_I32.pack(-1))
            elif isinstance(p.records, list):
                out.append(_I32.pack(records_size(p.records)))
                out += p.records
            else:
                out.append(_I32.pack(len(p.records)))
                out.append(bytes(p.records))
    return out
