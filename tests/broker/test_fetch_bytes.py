"""Fetch answers written as bytes (``broker/fetch_bytes.py``) parse as the protobuf message
built field by field would, for every kind of partition outcome."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from logstream.broker.fetch import FetchOutcome
from logstream.broker.fetch_bytes import (
    MAX_THROTTLE_MS,
    fetch_response_bytes,
    with_throttle_ms,
)
from logstream.codec.varint import varint
from logstream.errors import (
    CorruptRecordError,
    OffsetOutOfRangeError,
    UnknownTopicOrPartitionError,
)
from logstream.protocol import log_pb2
from logstream.protocol.status import client_message


def _expected(outcomes: list[FetchOutcome]) -> log_pb2.FetchResponse:
    """The answer as protobuf objects, set field by field (what the broker sent before)."""
    response = log_pb2.FetchResponse()
    for o in outcomes:
        pb = response.partitions.add(
            topic=o.topic,
            partition=o.partition,
            high_watermark=o.high_watermark,
            log_start_offset=o.log_start_offset,
            records=o.records,
        )
        if o.error is not None:
            pb.error_code = o.error.code
            pb.error_message = client_message(o.error)
        if isinstance(o.error, OffsetOutOfRangeError):
            pb.error_message += f" (earliest={o.error.earliest}, latest={o.error.latest})"
        if isinstance(o.error, CorruptRecordError):
            if o.error.first_offset is not None:
                pb.corrupt_first_offset = o.error.first_offset
            if o.error.last_offset is not None:
                pb.corrupt_last_offset = o.error.last_offset
    return response


offsets = st.integers(min_value=-1, max_value=2**63 - 1)
optional_offsets = st.none() | st.integers(min_value=0, max_value=2**63 - 1)
errors = st.one_of(
    st.none(),
    st.builds(UnknownTopicOrPartitionError, st.text(max_size=40)),
    st.builds(OffsetOutOfRangeError, st.text(max_size=40), earliest=offsets, latest=offsets),
    st.builds(
        CorruptRecordError,
        st.text(max_size=40),
        first_offset=optional_offsets,
        last_offset=optional_offsets,
    ),
)
outcomes = st.builds(
    FetchOutcome,
    topic=st.text(min_size=1, max_size=300),  # names past 127 bytes: a two-byte length
    partition=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    error=errors,
    high_watermark=offsets,
    log_start_offset=offsets,
    # lengths across the varint steps (1, 2 and 3 bytes)
    records=st.sampled_from([0, 1, 127, 128, 16_383, 16_384, 70_000]).map(
        lambda n: bytes(range(256)) * (n // 256) + bytes(n % 256)
    ),
)


@given(st.lists(outcomes, max_size=4))
def test_the_written_answer_parses_as_the_message_built_field_by_field(
    parts: list[FetchOutcome],
) -> None:
    data = fetch_response_bytes(parts)
    assert log_pb2.FetchResponse.FromString(data) == _expected(parts)


@given(st.lists(outcomes, max_size=2), st.integers(min_value=1, max_value=2**40))
def test_a_throttle_appended_to_the_answer_is_read_with_it(
    parts: list[FetchOutcome], throttle_ms: int
) -> None:
    data = with_throttle_ms(fetch_response_bytes(parts), throttle_ms)
    expected = _expected(parts)
    expected.throttle_time_ms = min(throttle_ms, MAX_THROTTLE_MS)
    parsed = log_pb2.FetchResponse.FromString(data)
    assert parsed == expected
    # appended twice: the later value is the one read
    assert log_pb2.FetchResponse.FromString(with_throttle_ms(data, 7)).throttle_time_ms == 7


def test_a_heartbeat_is_an_empty_answer() -> None:
    assert fetch_response_bytes([]) == b""
    assert log_pb2.FetchResponse.FromString(b"") == log_pb2.FetchResponse()


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_varint_matches_protobuf(value: int) -> None:
    as_int64 = value - 2**64 if value >= 2**63 else value
    reference = log_pb2.FetchPartitionResponse(corrupt_first_offset=as_int64)
    # field 8 (an optional int64: written even when 0), wire type 0: tag 0x40, the varint
    assert b"\x40" + varint(value) == reference.SerializeToString()
