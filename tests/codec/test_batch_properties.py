"""Property tests: any records round-trip; any damage is detected, never mis-decoded."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import logstream.codec as B
from logstream.codec import compression
from logstream.codec.crc import crc32c
from logstream.errors import CorruptRecordError, InvalidBatchError

maybe_bytes = st.one_of(st.none(), st.binary(max_size=64))
header_lists = st.lists(st.tuples(st.text(max_size=8), st.binary(max_size=8)), max_size=3)
records = st.lists(
    st.tuples(maybe_bytes, maybe_bytes, st.integers(0, 2**40), header_lists),
    min_size=1,
    max_size=40,
)


def _encode(recs: list, codec: int = compression.NONE, base_offset: int = 0) -> bytes:
    keys, values, stamps, hdrs = zip(*recs, strict=True)
    t0 = stamps[0]
    stamps = [t0 + (s % 1_000_000) for s in stamps]  # within one batch's range
    return B.encode_batch(
        list(values),
        keys=list(keys),
        timestamps=stamps,
        headers=[B.encode_headers(h) for h in hdrs],
        compression_type=codec,
        base_offset=base_offset,
    )


@given(records, st.sampled_from(sorted(compression.KNOWN)), st.integers(0, 2**62))
def test_arbitrary_records_round_trip(recs: list, codec: int, base: int) -> None:
    raw = _encode(recs, codec, base)
    out = list(B.decode_batch(raw).records("t", 0))
    assert [(r.key, r.value) for r in out] == [(k, v) for k, v, _, _ in recs]
    assert [r.headers for r in out] == [tuple(h) for _, _, _, h in recs]
    assert [r.offset for r in out] == list(range(base, base + len(recs)))
    t0 = recs[0][2]
    assert [r.timestamp_ms for r in out] == [t0 + (s % 1_000_000) for _, _, s, _ in recs]


@given(records, st.data())
def test_any_flipped_byte_after_the_base_offset_is_detected(
    recs: list, data: st.DataObject
) -> None:
    raw = bytearray(_encode(recs))
    pos = data.draw(st.integers(B.BATCH_LENGTH_POS, len(raw) - 1))
    bit = data.draw(st.integers(0, 7))
    raw[pos] ^= 1 << bit
    try:
        B.decode_batch(raw)
    except CorruptRecordError:
        return
    raise AssertionError(f"flip at {pos} bit {bit} decoded without error")


@given(records, st.data())
def test_any_truncation_is_detected(recs: list, data: st.DataObject) -> None:
    raw = _encode(recs)
    cut = data.draw(st.integers(0, len(raw) - 1))
    try:
        B.decode_batch(raw[:cut])
    except CorruptRecordError:
        return
    raise AssertionError(f"truncation to {cut} bytes decoded without error")


@given(st.binary(max_size=300))
def test_random_garbage_never_decodes_silently(blob: bytes) -> None:
    try:
        d = B.decode_batch(blob)
    except CorruptRecordError:
        return
    # Only a real batch may decode: its CRC matched, so re-encoding must reproduce it.
    assert B.validate_batch(blob) == d.header


# -- decode_rows: the small-batch decoder must agree with decode_batch on everything --------


def _rows_of(d: B.DecodedBatch) -> tuple:
    return (
        d.header,
        d.timestamps.tolist(),
        d.key_list(),
        d.value_list(),
        [d.record_headers(i) for i in range(len(d))],
    )


def _rows(r: B.BatchRows) -> tuple:
    return (r.header, r.timestamps, r.keys, r.values, [B.decode_headers(h) for h in r.header_blobs])


@given(records, st.sampled_from(sorted(compression.KNOWN)), st.integers(0, 2**62), st.booleans())
def test_decode_rows_matches_decode_batch(recs: list, codec: int, base: int, verify: bool) -> None:
    raw = b"pad" + _encode(recs, codec, base)
    assert _rows(B.decode_rows(raw, 3, verify=verify)) == _rows_of(
        B.decode_batch(raw, 3, verify=verify)
    )


@given(records, st.data())
def test_decode_rows_detects_any_flipped_byte_and_any_truncation(
    recs: list, data: st.DataObject
) -> None:
    raw = bytearray(_encode(recs))
    pos = data.draw(st.integers(B.BATCH_LENGTH_POS, len(raw) - 1))
    flipped = bytearray(raw)
    flipped[pos] ^= 1 << data.draw(st.integers(0, 7))
    cut = data.draw(st.integers(0, len(raw) - 1))
    for damaged in (bytes(flipped), bytes(raw[:cut])):
        try:
            B.decode_rows(damaged)
        except CorruptRecordError:
            continue
        raise AssertionError("damaged batch decoded without error")


@given(records, st.data())
def test_decode_rows_rejects_inconsistent_columns_like_decode_batch(
    recs: list, data: st.DataObject
) -> None:
    """A column rewritten behind a valid CRC (a buggy encoder, not line noise): both
    decoders refuse it the same way, or both decode it to the same records."""
    raw = bytearray(_encode(recs))
    n = len(recs)
    column = data.draw(st.integers(0, 4 * n - 1))
    value = data.draw(st.one_of(st.sampled_from([-3, -2, -1, 0, 1]), st.integers(-5, 70)))
    at = B.HEADER_SIZE + 4 * column
    raw[at : at + 4] = value.to_bytes(4, "little", signed=True)
    raw[B.CRC_POS : B.CRC_POS + 4] = crc32c(bytes(raw[B.CRC_START :])).to_bytes(4, "little")
    outcomes = []
    for decode in (B.decode_batch, B.decode_rows):
        try:
            got = decode(bytes(raw))
        except CorruptRecordError as exc:
            outcomes.append(type(exc))
        else:
            outcomes.append(_rows_of(got) if decode is B.decode_batch else _rows(got))
    assert outcomes[0] == outcomes[1]


@given(records, st.sampled_from(sorted(compression.KNOWN)), st.integers(0, 2**40), st.data())
def test_rows_cut_column_wise_equal_the_rows_encoded_one_by_one(
    recs: list, codec: int, base: int, data: st.DataObject
) -> None:
    batch = B.decode_batch(_encode(recs, codec, base))
    start = data.draw(st.integers(0, len(recs) - 1))
    stop = data.draw(st.integers(start + 1, len(recs)))
    blobs = batch.headers_blob
    expected = B.encode_batch(
        [batch.value(i) for i in range(start, stop)],
        keys=[batch.key(i) for i in range(start, stop)],
        timestamps=batch.timestamps[start:stop],
        headers=[
            bytes(blobs[int(batch.header_starts[i]) :][: int(batch.header_lengths[i])])
            for i in range(start, stop)
        ],
        base_offset=base + start,
    )
    cut = B.encode_rows(batch, start, stop)
    assert cut == expected
    out = list(B.decode_batch(cut).records("t", 0))
    assert [(r.offset, r.key, r.value) for r in out] == [
        (base + i, k, v) for i, (k, v, _, _) in enumerate(recs) if start <= i < stop
    ]


@pytest.mark.parametrize(("start", "stop"), [(0, 0), (1, 3), (-1, 1), (2, 2)])
def test_rows_outside_the_batch_are_refused(start: int, stop: int) -> None:
    batch = B.decode_batch(B.encode_batch([b"a", b"b"]))
    with pytest.raises(InvalidBatchError):
        B.encode_rows(batch, start, stop)


@given(records, st.integers(-1, 2**40), st.integers(-1, 30_000), st.integers(-1, 2**31 - 1))
def test_the_small_encoder_writes_encode_batchs_bytes_and_their_header(
    recs: list, producer_id: int, epoch: int, sequence: int
) -> None:
    """Storage appends a BuiltBatch unchecked, so its header must be what check_batch reads."""
    keys, values, stamps, hdrs = zip(*recs, strict=True)
    stamps = [stamps[0] + (s % 1_000_000) for s in stamps]
    blobs = [B.encode_headers(h) for h in hdrs]
    producer = {"producer_id": producer_id, "producer_epoch": epoch, "base_sequence": sequence}
    built = B.encode_small_batch(list(keys), list(values), stamps, blobs, **producer)
    expected = B.encode_batch(
        list(values), keys=list(keys), timestamps=stamps, headers=blobs, **producer
    )
    assert built.data == expected
    assert B.check_batch(built.data) == built.header


def test_the_small_encoder_refuses_what_encode_batch_refuses() -> None:
    with pytest.raises(InvalidBatchError):
        B.encode_small_batch([], [], [], [])
    with pytest.raises(InvalidBatchError):
        B.encode_small_batch([None, None], [b"a", b"b"], [0, 2**31], [b"", b""])
    with pytest.raises(InvalidBatchError):  # a Kafka base timestamp plus a delta can overflow
        B.encode_small_batch([None], [b"a"], [2**63], [b""])
