"""The hand-packed Produce and Fetch responses are byte for byte what kio's writer makes."""

from __future__ import annotations

import datetime
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode
from kio.serial import entity_writer

from logstream.kafka import fast_encode, wire
from logstream.kafka.wire import build

i64 = st.integers(-1, 2**62)
name = st.text(min_size=1, max_size=12)


def kio_bytes(api_key: int, version: int, body: object) -> bytes:
    out = io.BytesIO()
    entity_writer(type(body))(out, body)
    return out.getvalue()


@pytest.mark.parametrize("version", range(3, 9))
@given(
    parts=st.lists(
        st.tuples(
            st.integers(0, 99),
            st.sampled_from([0, 2, 3, 45]),
            i64,
            i64,
            st.one_of(st.none(), st.text(max_size=20)),
        ),
        max_size=4,
    ),
    topic=name,
    log_append=st.booleans(),
)
def test_produce_response(version: int, parts: list, topic: str, log_append: bool) -> None:
    mod = wire.response_module(wire.PRODUCE, version)
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC) if log_append else None
    body = build(
        mod.ProduceResponse,
        responses=(
            build(
                mod.TopicProduceResponse,
                name=topic,
                partition_responses=tuple(
                    build(
                        mod.PartitionProduceResponse,
                        index=i,
                        error_code=ErrorCode(e),
                        base_offset=b,
                        log_append_time=when,
                        log_start_offset=s,
                        error_message=m,
                    )
                    for i, e, b, s, m in parts
                ),
            ),
        ),
        throttle_time=7,
    )
    assert fast_encode.produce_response(version, body) == kio_bytes(wire.PRODUCE, version, body)


@pytest.mark.parametrize("version", range(4, 12))
@given(
    parts=st.lists(
        st.tuples(
            st.integers(0, 99),
            st.sampled_from([0, 1, 3]),
            i64,
            i64,
            st.one_of(st.none(), st.binary(max_size=50)),
            st.one_of(st.none(), st.lists(st.tuples(i64, i64), max_size=2)),
        ),
        max_size=4,
    ),
    topic=name,
)
def test_fetch_response(version: int, parts: list, topic: str) -> None:
    mod = wire.response_module(wire.FETCH, version)
    body = build(
        mod.FetchResponse,
        error_code=ErrorCode.none,
        session_id=0,
        responses=(
            build(
                mod.FetchableTopicResponse,
                topic=topic,
                partitions=tuple(
                    build(
                        mod.PartitionData,
                        partition_index=i,
                        error_code=ErrorCode(e),
                        high_watermark=hw,
                        last_stable_offset=hw,
                        log_start_offset=ls,
                        aborted_transactions=None
                        if ab is None
                        else tuple(
                            build(mod.AbortedTransaction, producer_id=a, first_offset=b)
                            for a, b in ab
                        ),
                        preferred_read_replica=-1,
                        records=rec,
                    )
                    for i, e, hw, ls, rec, ab in parts
                ),
            ),
        ),
    )
    assert fast_encode.fetch_response(version, body) == kio_bytes(wire.FETCH, version, body)
