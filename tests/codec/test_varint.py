"""codec.varint against protobuf's own encoding of an int64 field, and Kafka's zigzag."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from logstream.codec.varint import varint
from logstream.protocol import log_pb2

INT64 = st.integers(-(2**63), 2**63 - 1)


@given(INT64)
def test_varint_is_protobufs_int64_encoding(n: int) -> None:
    # ProduceRequest.correlation_id is field 4, an int64: tag byte 0x20, then the varint
    wire = log_pb2.ProduceRequest(correlation_id=n).SerializeToString()
    assert wire == (b"\x20" + varint(n) if n else b"")


@given(INT64)
def test_a_zigzag_mapped_varint_reads_back(n: int) -> None:
    raw = varint((n << 1) ^ (n >> 63))
    u = shift = 0
    for byte in raw:
        u |= (byte & 0x7F) << shift
        shift += 7
    assert raw[-1] < 0x80 and all(b >= 0x80 for b in raw[:-1])
    assert (u >> 1) ^ -(u & 1) == n
