"""The columnar Kafka batch reader (produce path) against aiokafka's per-record reader."""

from __future__ import annotations

import struct

import pytest
from aiokafka.record._crecords import DefaultRecordBatch, DefaultRecordBatchBuilder
from hypothesis import given, settings
from hypothesis import strategies as st

from logstream.codec import BuiltBatch, check_batch, decode_batch, decode_headers, read_header
from logstream.codec.crc import crc32c
from logstream.errors import CorruptRecordError, InvalidBatchError
from logstream.kafka.batch_in import (
    SMALL_BATCH_RECORDS,
    TINY_BATCH_RECORDS,
    read_kafka_batch,
    read_tiny_batch,
    to_logstream_batches,
)
from logstream.kafka.records import logstream_to_kafka

CODECS = [0, 1, 2, 3, 4]  # none, gzip, snappy, lz4, zstd

header = st.tuples(
    st.text(max_size=6),  # names: empty, multi-byte UTF-8
    st.one_of(st.none(), st.binary(max_size=12)),
)
record = st.tuples(
    st.one_of(st.none(), st.binary(max_size=20)),  # key
    st.one_of(st.none(), st.binary(max_size=200)),  # value
    st.integers(0, 20_000_000),  # timestamp delta: one- to four-byte varints
    st.lists(header, max_size=3),
)


def build(records: list, codec: int = 0, producer: tuple[int, int, int] = (-1, -1, -1)) -> bytes:
    builder = DefaultRecordBatchBuilder(2, codec, 0, *producer, 1 << 30)
    for i, (key, value, delta, headers) in enumerate(records):
        builder.append(i, 1_700_000_000_000 + delta, key, value, list(headers))
    return bytes(builder.build())


def logstream_rows(batches: list[bytes]) -> list[tuple]:
    rows = []
    for raw in batches:
        d = decode_batch(raw)
        blob = d.headers_blob
        for key, value, ts, start, size in zip(
            d.key_list(),
            d.value_list(),
            d.timestamps.tolist(),
            d.header_starts.tolist(),
            d.header_lengths.tolist(),
            strict=True,
        ):
            hdrs = list(decode_headers(blob[start : start + size])) if size else []
            rows.append((key, value, ts, hdrs))
    return rows


def kafka_rows(raw: bytes) -> list[tuple]:
    """As logstream reads them back: a null header value reads as b"" (decode_headers)."""
    return [
        (r.key, r.value, r.timestamp, [(n, v or b"") for n, v in r.headers])
        for r in DefaultRecordBatch(raw)
    ]


COLUMNAR = 0  # small_batch_records: every batch through the columnar reader
BOTH = st.sampled_from([COLUMNAR, SMALL_BATCH_RECORDS])


@settings(max_examples=150)
@given(st.lists(record, min_size=1, max_size=60), st.sampled_from(CODECS), BOTH)
def test_columns_match_the_per_record_reader(records: list, codec: int, small: int) -> None:
    raw = build(records, codec, producer=(7, 1, 5))
    cols = read_kafka_batch(raw, small_batch_records=small)
    assert (cols.producer_id, cols.producer_epoch, cols.base_sequence) == (7, 1, 5)
    assert logstream_rows(to_logstream_batches(cols, 1 << 30)) == kafka_rows(raw)


@settings(max_examples=150)
@given(st.lists(record, min_size=1, max_size=TINY_BATCH_RECORDS), st.sampled_from([0, 1, 2]))
def test_a_tiny_batch_is_the_columnar_readers_batch_and_passes_the_append_check(
    records: list, codec: int
) -> None:
    """The tiny path's batch skips storage's check on append, so it must be exactly the
    batch the checked path builds, and a batch that check accepts with the same header."""
    raw = build(records, codec, producer=(7, 1, 5))
    tiny = read_tiny_batch(raw)
    assert isinstance(tiny, BuiltBatch)
    cols = read_kafka_batch(raw, small_batch_records=COLUMNAR)
    assert [tiny.data] == to_logstream_batches(cols, 1 << 30)
    assert check_batch(tiny.data) == tiny.header == read_header(tiny.data)


@pytest.mark.parametrize(("count", "codec"), [(TINY_BATCH_RECORDS + 1, 0), (1, 3), (1, 4)])
def test_larger_or_lz4_zstd_batches_take_the_columnar_path(count: int, codec: int) -> None:
    assert read_tiny_batch(build([(b"k", b"v", 0, [])] * count, codec)) is None


def test_the_tiny_path_refuses_what_the_columnar_path_refuses() -> None:
    damaged = bytearray(build([(b"k", b"v", 0, [])]))
    damaged[-1] ^= 1
    with pytest.raises(CorruptRecordError):
        read_tiny_batch(bytes(damaged))
    control = bytearray(build([(b"k", b"v", 0, [])]))
    control[22] |= 0x20
    with pytest.raises(InvalidBatchError):
        read_tiny_batch(_restamp(control))


@settings(max_examples=60)
@given(
    st.integers(1, 3000),
    st.integers(0, 300),
    st.booleans(),
    st.sampled_from([0, 3]),
)
def test_runs_of_equal_records_are_found(count: int, size: int, keyed: bool, codec: int) -> None:
    """Fixed-shape records whose length varint changes as offset and time deltas grow:
    the run search must stop and restart at each change."""
    records = [
        (b"k%04d" % (i % 10_000) if keyed else None, b"v" * size, i * 3, []) for i in range(count)
    ]
    raw = build(records, codec)
    cols = read_kafka_batch(raw, small_batch_records=COLUMNAR)
    assert logstream_rows(to_logstream_batches(cols, 1 << 30)) == kafka_rows(raw)


def test_records_of_every_size_in_turn() -> None:
    records = [(None, b"x" * (i % 37) * 5, i, []) for i in range(500)]
    raw = build(records)
    cols = read_kafka_batch(raw, small_batch_records=COLUMNAR)
    assert logstream_rows(to_logstream_batches(cols, 1 << 30)) == kafka_rows(raw)


@pytest.mark.parametrize("limit", [200, 1_000, 5_000])
def test_a_batch_over_the_limit_becomes_consecutive_batches(limit: int) -> None:
    records = [(b"k", b"v" * (i % 50), i, [("h", b"x")] if i % 3 else []) for i in range(300)]
    raw = build(records, 4, producer=(9, 0, 2**31 - 100))
    batches = to_logstream_batches(read_kafka_batch(raw, small_batch_records=COLUMNAR), limit)
    assert len(batches) > 1
    assert all(len(b) <= limit for b in batches)
    assert logstream_rows(batches) == kafka_rows(raw)
    sequences = [read_header(b).base_sequence for b in batches]
    counts = [read_header(b).record_count for b in batches]
    expected = 2**31 - 100
    for seq, n in zip(sequences, counts, strict=True):
        assert seq == expected
        expected = (expected + n) & (2**31 - 1)  # Kafka's sequences wrap to 0


def test_a_record_over_the_limit_gets_its_own_batch() -> None:
    raw = build([(None, b"a", 0, []), (None, b"b" * 500, 1, []), (None, b"c", 2, [])])
    batches = to_logstream_batches(read_kafka_batch(raw), 300)
    assert [read_header(b).record_count for b in batches] == [1, 1, 1]


def _restamp(raw: bytearray) -> bytes:
    """Recompute a Kafka batch's CRC after editing it."""
    struct.pack_into(">I", raw, 17, crc32c(memoryview(raw)[21:]))
    return bytes(raw)


@pytest.mark.parametrize("bit", [0x10, 0x20])
def test_transactional_and_control_batches_are_refused(bit: int) -> None:
    raw = bytearray(build([(b"k", b"v", 0, [])]))
    raw[22] |= bit  # attributes, low byte
    with pytest.raises(InvalidBatchError):
        read_kafka_batch(_restamp(raw))


@pytest.mark.parametrize("small", [COLUMNAR, SMALL_BATCH_RECORDS])
def test_a_header_name_that_is_not_utf8_is_refused(small: int) -> None:
    raw = bytearray(build([(None, b"v", 0, [("ab", b"x")])]))
    pos = bytes(raw).rindex(b"ab")
    raw[pos] = 0xC3  # a lead byte completed by the next name byte would be valid;
    raw[pos + 1] = 0x28  # this one is not
    with pytest.raises((InvalidBatchError, CorruptRecordError)):
        read_kafka_batch(_restamp(raw), small_batch_records=small)


def test_a_bad_crc_is_corrupt() -> None:
    raw = bytearray(build([(b"k", b"v", 0, [])]))
    raw[-1] ^= 1
    with pytest.raises(CorruptRecordError):
        read_kafka_batch(bytes(raw))


class Refused(Exception):
    pass


def reference_rows(raw: bytes) -> list[tuple]:
    """Kafka's record layout read one field at a time, as the protocol page gives it
    (uncompressed batches): the oracle for damaged bytes. aiokafka's reader is not one
    there: it reads a record's int8 attributes as a varint."""
    (base_ts,) = struct.unpack_from(">q", raw, 27)
    (count,) = struct.unpack_from(">i", raw, 57)
    data, pos, rows = raw[61:], 0, []

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            if pos >= len(data) or shift > 63:
                raise Refused
            b = data[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return (value >> 1) ^ -(value & 1)

    def take(n: int) -> bytes | None:
        nonlocal pos
        if n < -1 or pos + max(n, 0) > end:
            raise Refused
        out = None if n < 0 else data[pos : pos + n]
        pos += max(n, 0)
        return out

    for _ in range(count):
        length = varint()
        end = pos + length
        if length < 1 or end > len(data):
            raise Refused
        pos += 1  # attributes, int8
        ts = base_ts + varint()
        varint()  # offset delta
        key = take(varint())
        value = take(varint())
        headers = []
        n_headers = varint()
        if n_headers < 0:
            raise Refused
        for _ in range(n_headers):
            name = take(varint())
            hv = take(varint())
            if name is None:
                raise Refused
            try:
                headers.append((name.decode(), hv or b""))
            except UnicodeDecodeError:
                raise Refused from None
        if pos != end:
            raise Refused
        rows.append((key, value, ts, headers))
    if pos != len(data):
        raise Refused
    return rows


@settings(max_examples=300)
@given(st.lists(record, min_size=1, max_size=8), st.data())
def test_damaged_records_read_as_the_reference_reads_them(
    records: list, data: st.DataObject
) -> None:
    """Any byte of the records changed (the CRC made to match): the columnar reader takes
    exactly what the reference reader takes, with the same fields, and refuses the rest
    with a named error."""
    raw = bytearray(build(records))
    pos = data.draw(st.integers(61, len(raw) - 1))
    raw[pos] = data.draw(st.integers(0, 255))
    edited = _restamp(raw)
    try:
        expected = reference_rows(edited)
    except Refused:
        with pytest.raises((CorruptRecordError, InvalidBatchError)):
            to_logstream_batches(read_kafka_batch(edited, small_batch_records=COLUMNAR), 1 << 30)
        return
    cols = read_kafka_batch(edited, small_batch_records=COLUMNAR)
    assert logstream_rows(to_logstream_batches(cols, 1 << 30)) == expected


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_a_short_record_section_is_corrupt(cut: int) -> None:
    raw = bytearray(build([(b"k", b"value", 0, [("h", b"x")])] * 3))
    del raw[-cut:]
    struct.pack_into(">i", raw, 8, len(raw) - 12)
    with pytest.raises(CorruptRecordError):
        read_kafka_batch(_restamp(raw), small_batch_records=COLUMNAR)


@settings(max_examples=60)
@given(
    st.lists(record, min_size=33, max_size=120),  # past the small-batch builder
    st.sampled_from([1, 16]),
    st.sampled_from([0, 3, 4]),
)
def test_large_batches_round_trip_through_fetch(records: list, repeat: int, codec: int) -> None:
    """Both the strided runs (each record repeated) and the per-byte fallback (all
    different) of the fetch encoder."""
    records = [r for r in records for _ in range(repeat)]
    raw = build(records, codec)
    stored = to_logstream_batches(read_kafka_batch(raw, small_batch_records=COLUMNAR), 1 << 30)[0]
    back = logstream_to_kafka(stored)
    assert DefaultRecordBatch(back).validate_crc()
    assert kafka_rows(back) == kafka_rows(raw)


@pytest.mark.parametrize("path", ["tiny", "small", "columnar"])
def test_a_timestamp_past_int64_is_refused_by_name(path: str) -> None:
    """The base timestamp plus a record's delta must still be an int64: numpy would wrap
    the sum silently (aiokafka's reader, used for small batches, wraps it too, which the
    ~24-day spread check then refuses)."""
    raw = bytearray(build([(b"k", b"v", 0, []), (b"k", b"v", 1_000, [])]))
    struct.pack_into(">q", raw, 27, 2**63 - 10)  # firstTimestamp; the second record's is past
    raw = bytearray(_restamp(raw))
    with pytest.raises(InvalidBatchError, match=r"int64|24 days"):
        if path == "tiny":
            read_tiny_batch(bytes(raw))
        else:
            small = COLUMNAR if path == "columnar" else SMALL_BATCH_RECORDS
            to_logstream_batches(read_kafka_batch(bytes(raw), small_batch_records=small), 1 << 20)
