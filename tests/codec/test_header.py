"""Header arithmetic and in-place stamping: field positions come from the one header struct,
stamping keeps a batch valid, and any byte the CRC covers is still guarded afterwards."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import logstream.codec as codec
from logstream.codec import (
    HEADER,
    HEADER_SIZE,
    TIMESTAMP_TYPE_LOG_APPEND,
    BatchHeader,
    check_record_section,
    compression,
    decode_batch,
    encode_batch,
    next_offset_after,
    read_header,
    stamp_base_offset,
    stamp_log_append_time,
    validate_batch,
)
from logstream.errors import CorruptRecordError

_FORMATS = {
    "q": (-(2**63), 2**63 - 1),
    "i": (-(2**31), 2**31 - 1),
    "h": (-(2**15), 2**15 - 1),
    "B": (0, 255),
    "I": (0, 2**32 - 1),
    "H": (0, 2**16 - 1),
}
_CODES = [c for c in HEADER.format.lstrip("<") if c.isalpha() and c != "x"]


@settings(max_examples=100, deadline=None)
@given(st.tuples(*(st.integers(*_FORMATS[c]) for c in _CODES)))
def test_every_named_position_reads_its_own_field(fields: tuple[int, ...]) -> None:
    buf = HEADER.pack(*fields)
    header = BatchHeader._make(fields)
    named = {
        "BASE_OFFSET_POS": ("<q", header.base_offset),
        "BATCH_LENGTH_POS": ("<i", header.batch_length),
        "MAGIC_POS": ("<B", header.magic),
        "CRC_POS": ("<I", header.crc),
        "ATTRIBUTES_POS": ("<H", header.attributes),
        "RECORD_COUNT_POS": ("<i", header.record_count),
        "FIRST_TIMESTAMP_POS": ("<q", header.first_timestamp),
        "MAX_TIMESTAMP_POS": ("<q", header.max_timestamp),
    }
    for name, (fmt, value) in named.items():
        pos = getattr(codec.header, name)
        assert struct.unpack_from(fmt, buf, pos)[0] == value, name
    assert codec.CRC_START == codec.CRC_POS + 4 == codec.ATTRIBUTES_POS
    assert read_header(buf) == header
    assert codec.peek_length(buf) == header.batch_length


records = st.lists(
    st.tuples(st.binary(max_size=20) | st.none(), st.integers(0, 10_000)), min_size=1, max_size=40
)


def _batch(recs: list[tuple[bytes | None, int]], codec_id: int) -> bytes:
    values = [v for v, _ in recs]
    stamps = [1_700_000_000_000 + t for _, t in recs]
    return encode_batch(values, timestamps=stamps, compression_type=codec_id)


@settings(max_examples=80, deadline=None)
@given(records, st.sampled_from(sorted(compression.KNOWN)), st.integers(0, 2**50), st.data())
def test_a_log_append_stamped_batch_still_validates_and_guards_every_covered_byte(
    recs: list[tuple[bytes | None, int]], codec_id: int, now: int, data: st.DataObject
) -> None:
    raw = _batch(recs, codec_id)
    before = decode_batch(raw)
    buf = bytearray(raw)
    new_max = stamp_log_append_time(buf, now)

    header = validate_batch(buf)
    check_record_section(buf, header)
    assert header.attributes & TIMESTAMP_TYPE_LOG_APPEND
    assert header.compression == codec_id
    assert header.first_timestamp == now
    assert (
        header.max_timestamp
        == new_max
        == now + before.header.max_timestamp - (before.header.first_timestamp)
    )
    after = decode_batch(buf)
    assert (after.timestamps - before.timestamps == now - before.header.first_timestamp).all()
    assert after.value_list() == before.value_list()

    pos = data.draw(st.integers(codec.CRC_START, len(buf) - 1))
    buf[pos] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(CorruptRecordError):
        validate_batch(buf)


@settings(max_examples=50, deadline=None)
@given(records, st.integers(0, 2**62), st.integers(0, 2**50))
def test_stamping_at_a_position_touches_only_that_batch(
    recs: list[tuple[bytes | None, int]], base: int, now: int
) -> None:
    first = _batch(recs, compression.NONE)
    second = _batch(recs[::-1], compression.NONE)
    buf = bytearray(first + second)
    stamp_base_offset(buf, base, len(first))
    stamp_log_append_time(buf, now, len(first))
    assert bytes(buf[: len(first)]) == first
    header = validate_batch(buf, len(first))
    assert (header.base_offset, header.first_timestamp) == (base, now)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(1, 30), min_size=1, max_size=8),
    st.integers(0, 2**40),
    st.integers(0, HEADER_SIZE + 40),
)
def test_next_offset_after_is_the_end_of_the_last_complete_batch(
    counts: list[int], base: int, cut: int
) -> None:
    parts, offset = [], base
    for n in counts:
        buf = bytearray(encode_batch([b"v"] * n, timestamps=1))
        stamp_base_offset(buf, offset)
        parts.append(bytes(buf))
        offset += n
    whole = b"".join(parts)
    assert next_offset_after(whole) == offset
    # A torn last batch does not count; the batches before it still do.
    torn = whole[: len(whole) - min(cut + 1, len(parts[-1]))]
    expected = offset - counts[-1] if len(counts) > 1 else None
    assert next_offset_after(torn) == expected
    assert next_offset_after(b"") is None


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=1, max_size=8), st.integers(1, HEADER_SIZE + 40))
def test_batch_positions_walk_complete_batches_and_refuse_an_impossible_length(
    counts: list[int], cut: int
) -> None:
    parts = [encode_batch([b"v"] * n, timestamps=1) for n in counts]
    starts = [sum(len(p) for p in parts[:i]) for i in range(len(parts))]
    whole = b"".join(parts)
    assert list(codec.batch_positions(whole)) == starts
    torn = whole[: len(whole) - min(cut, len(parts[-1]))]
    assert list(codec.batch_positions(torn)) == starts[:-1]
    broken = bytearray(whole)
    struct.pack_into("<i", broken, starts[-1] + codec.BATCH_LENGTH_POS, HEADER_SIZE - 1)
    with pytest.raises(CorruptRecordError, match=f"at position {starts[-1]}"):
        list(codec.batch_positions(broken))


def test_stamp_producer_gives_a_new_identity_with_a_valid_crc() -> None:
    from logstream.codec import encode_batch, read_header, stamp_producer, validate_batch

    buf = bytearray(encode_batch([b"a", b"b"], producer_id=7, producer_epoch=0, base_sequence=5))
    stamp_producer(buf, 7, 1, 0)
    header = validate_batch(buf)
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (7, 1, 0)
    assert read_header(buf).record_count == 2
