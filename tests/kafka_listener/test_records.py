"""Kafka record batches <-> logstream batches: every field survives both ways."""

from __future__ import annotations

import numpy as np
import pytest
from aiokafka.record._crecords import DefaultRecordBatch, DefaultRecordBatchBuilder
from hypothesis import given
from hypothesis import strategies as st

from logstream.codec import LZ4, NONE, ZSTD, decode_batch, encode_batch, encode_headers
from logstream.codec.varint import varint
from logstream.errors import CorruptRecordError, InvalidBatchError
from logstream.kafka.records import (
    LEADER_EPOCH,
    SMALL_BATCH_RECORDS,
    _varint_columns,
    kafka_to_logstream,
    logstream_to_kafka,
    split_kafka_batches,
)

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}

record = st.tuples(
    st.one_of(st.none(), st.binary(max_size=40)),  # key
    st.one_of(st.none(), st.binary(max_size=300)),  # value
    st.integers(0, 10_000_000),  # timestamp delta
    st.lists(
        st.tuples(st.text(max_size=8), st.one_of(st.none(), st.binary(max_size=20))), max_size=3
    ),
)


def kafka_batch(
    records: list, codec: int = 0, producer: tuple[int, int, int] = (-1, -1, -1)
) -> bytes:
    builder = DefaultRecordBatchBuilder(2, codec, 0, *producer, 1 << 30)
    for i, (key, value, delta, headers) in enumerate(records):
        builder.append(i, 1_700_000_000_000 + delta, key, value, list(headers))
    return bytes(builder.build())


def fields(raw: bytes) -> list[tuple]:
    return [
        (r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in DefaultRecordBatch(raw)
    ]


@given(st.lists(record, min_size=1, max_size=40), st.sampled_from(sorted(CODECS)))
def test_kafka_batch_round_trips_through_logstream(records: list, codec: str) -> None:
    raw = kafka_batch(records, CODECS[codec], producer=(42, 3, 100))
    stored = bytearray(kafka_to_logstream(raw))
    stored[:8] = (1000).to_bytes(8, "little")  # as storage stamps the base offset
    back = logstream_to_kafka(bytes(stored))
    batch = DefaultRecordBatch(back)
    assert batch.validate_crc()
    assert (batch.base_offset, batch.producer_id, batch.producer_epoch, batch.base_sequence) == (
        1000,
        42,
        3,
        100,
    )
    # logstream's header values are bytes: a null header value reads back empty
    expected = [
        (1000 + i, 1_700_000_000_000 + d, k, v, [(n, hv or b"") for n, hv in h])
        for i, (k, v, d, h) in enumerate(records)
    ]
    assert fields(back) == expected


@pytest.mark.parametrize("codec", [NONE, ZSTD, LZ4])
def test_stored_codec_is_kept_on_fetch(codec: int) -> None:
    stored = encode_batch(
        [b"v%d" % i for i in range(100)],
        compression_type=codec,
        headers=[encode_headers([("h", b"x")])] * 100,
    )
    batch = DefaultRecordBatch(logstream_to_kafka(stored))
    assert batch.compression_type == {NONE: 0, ZSTD: 4, LZ4: 3}[codec]
    assert [r.value for r in batch] == [b"v%d" % i for i in range(100)]


def test_several_stored_batches_become_several_kafka_batches() -> None:
    a = bytearray(encode_batch([b"a", b"b"]))
    b = bytearray(encode_batch([b"c"]))
    b[:8] = (2).to_bytes(8, "little")
    raw = logstream_to_kafka(bytes(a + b))
    batches = list(split_kafka_batches(raw))
    assert [DefaultRecordBatch(bytes(x)).base_offset for x in batches] == [0, 2]
    assert decode_batch(kafka_to_logstream(batches[1])).value_list() == [b"c"]


def test_bad_crc_is_corrupt() -> None:
    raw = bytearray(kafka_batch([(b"k", b"v", 0, [])]))
    raw[-1] ^= 1
    with pytest.raises(CorruptRecordError):
        kafka_to_logstream(bytes(raw))


def test_old_message_format_is_refused() -> None:
    raw = bytearray(kafka_batch([(b"k", b"v", 0, [])]))
    raw[16] = 1  # magic
    with pytest.raises(InvalidBatchError):
        list(split_kafka_batches(bytes(raw)))


def test_torn_batch_in_a_request_is_corrupt() -> None:
    raw = kafka_batch([(b"k", b"v", 0, [])])
    with pytest.raises(CorruptRecordError):
        list(split_kafka_batches(raw[:-3]))


@st.composite
def shaped_records(draw: st.DrawFn) -> list:
    """More than 32 records (the numpy path), each field either one size for every record
    (runs of equal layout: written as blocks) or drawn per record (scattered)."""
    n = draw(st.integers(33, 400))

    def column(fixed: st.SearchStrategy, varied: st.SearchStrategy) -> list:
        if draw(st.booleans()):
            return [draw(fixed)] * n
        return draw(st.lists(varied, min_size=n, max_size=n))

    keys = column(
        st.one_of(st.none(), st.binary(max_size=12)), st.one_of(st.none(), st.binary(max_size=12))
    )
    values = column(
        st.binary(min_size=1, max_size=150), st.one_of(st.none(), st.binary(max_size=150))
    )
    headers = column(
        st.lists(st.tuples(st.text(max_size=4), st.binary(max_size=6)), max_size=2),
        st.lists(st.tuples(st.text(max_size=4), st.binary(max_size=6)), max_size=2),
    )
    # timestamp deltas: equal, growing, or anything (back in time, varints of 1-5 bytes)
    step = draw(st.sampled_from([0, 1, 7, 1000, None]))
    if step is None:
        stamps = draw(st.lists(st.integers(-(2**30), 2**30), min_size=n, max_size=n))
    else:
        stamps = [i * step for i in range(n)]
    rows = zip(keys, values, stamps, headers, strict=True)
    return [(k, v, ts, h) for k, v, ts, h in rows]


@given(shaped_records())
def test_large_batches_convert_as_aiokafka_builds_them(records: list) -> None:
    stored = bytearray(kafka_to_logstream(kafka_batch(records)))
    stored[:8] = (500).to_bytes(8, "little")
    back = bytearray(logstream_to_kafka(bytes(stored)))
    expected = bytearray(kafka_batch(records))
    expected[:8] = (500).to_bytes(8, "big")
    back[12:16] = expected[12:16]  # partitionLeaderEpoch: outside the CRC, ours is 0
    assert back == expected


@pytest.mark.parametrize("count", [1, SMALL_BATCH_RECORDS, SMALL_BATCH_RECORDS + 1, 5_000])
def test_fetched_batches_carry_the_leader_epoch_whatever_their_size(count: int) -> None:
    """Kafka's leader stamps its epoch on every batch it appends (the producer sends -1);
    small batches (aiokafka's builder) and large ones (the columnar writer) must agree,
    and the field lies outside the CRC."""
    raw = kafka_batch([(None, b"v%d" % i, i, []) for i in range(count)])
    epoch = slice(12, 16)  # after baseOffset i64 and batchLength i32
    assert int.from_bytes(raw[epoch], "big", signed=True) == -1  # as a producer sends it
    back = logstream_to_kafka(kafka_to_logstream(raw))
    assert int.from_bytes(back[epoch], "big", signed=True) == LEADER_EPOCH == 0
    batch = DefaultRecordBatch(back)
    assert batch.validate_crc()
    assert len(back) == 12 + int.from_bytes(back[8:12], "big")  # batchLength is whole
    assert [r.value for r in batch] == [b"v%d" % i for i in range(count)]


def _zigzag_varint(n: int) -> bytes:
    return varint((n << 1) ^ (n >> 63))


@given(
    st.one_of(
        st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=60),
        st.integers(-(2**63), 2**63 - 1).flatmap(lambda v: st.just([v] * 40)),
    )
)
def test_varint_columns_are_kafkas_zigzag_varints(values: list[int]) -> None:
    matrix, sizes = _varint_columns(np.array(values, dtype=np.int64))
    assert len(sizes) == len(values)
    for i, v in enumerate(values):
        expected = _zigzag_varint(v)
        assert int(sizes[i]) == len(expected)
        assert bytes(matrix[: len(expected), i]) == expected
