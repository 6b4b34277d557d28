"""Behaviour of the columnar record-batch codec."""

from __future__ import annotations

import struct

import numpy as np
import pytest

import logstream.codec as B
from logstream.codec import compression
from logstream.codec.crc import crc32c, crc32c_reference
from logstream.errors import CorruptRecordError, InvalidBatchError


def test_round_trip_keeps_keys_values_timestamps_and_headers() -> None:
    hdrs = [B.encode_headers([("trace", b"abc"), ("x", b"")]), b"", b""]
    raw = B.encode_batch(
        [b"v0", None, b""], keys=[None, b"k1", b"k2"], timestamps=[100, 250, 90], headers=hdrs
    )
    d = B.decode_batch(raw)
    recs = list(d.records("t", 3))
    assert [r.key for r in recs] == [None, b"k1", b"k2"]
    assert [r.value for r in recs] == [b"v0", None, b""]
    assert [r.timestamp_ms for r in recs] == [100, 250, 90]
    assert recs[0].headers == (("trace", b"abc"), ("x", b""))
    assert recs[1].headers == ()
    assert d.header.first_timestamp == 100
    assert d.header.max_timestamp == 250
    assert (recs[0].topic, recs[0].partition) == ("t", 3)


def test_offsets_follow_the_stamped_base_offset_and_crc_still_holds() -> None:
    raw = bytearray(B.encode_batch([b"a", b"b", b"c"], timestamps=5))
    B.stamp_base_offset(raw, 1_000_000_007)
    header = B.validate_batch(raw)
    assert header.base_offset == 1_000_000_007
    assert B.decode_batch(raw).offsets.tolist() == [1_000_000_007, 1_000_000_008, 1_000_000_009]


def test_columnar_view_is_numpy_and_zero_copy() -> None:
    values = [bytes([i]) * i for i in range(50)]
    d = B.decode_batch(B.encode_batch(values, timestamps=list(range(50))))
    assert d.offsets.dtype == np.int64
    assert d.timestamps.tolist() == list(range(50))
    assert isinstance(d.values, memoryview)
    assert d.value_list() == values
    assert [d.value(i) for i in range(50)] == values


@pytest.mark.parametrize("codec", [compression.ZSTD, compression.LZ4])
def test_compressed_batches_round_trip(codec: int) -> None:
    values = [b"event-%06d" % i * 5 for i in range(2000)]
    raw = B.encode_batch(values, keys=[b"k"] * 2000, timestamps=7, compression_type=codec)
    assert len(raw) < sum(map(len, values)) // 4
    d = B.decode_batch(raw)
    assert d.header.compression == codec
    assert d.value_list() == values


def test_crc_matches_the_reference_implementation() -> None:
    data = bytes(range(256)) * 3
    assert crc32c(data) == crc32c_reference(data)
    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value


def test_flipped_byte_is_a_crc_error() -> None:
    raw = bytearray(B.encode_batch([b"hello"], timestamps=1))
    raw[-1] ^= 0x01
    with pytest.raises(CorruptRecordError, match="CRC"):
        B.validate_batch(raw)


def test_truncated_batch_is_reported_not_read_past() -> None:
    raw = B.encode_batch([b"hello world"], timestamps=1)
    with pytest.raises(CorruptRecordError, match="truncated"):
        B.decode_batch(raw[:-1])
    with pytest.raises(CorruptRecordError, match="truncated"):
        B.decode_batch(raw[:10])


def test_bad_magic_is_rejected() -> None:
    raw = bytearray(B.encode_batch([b"x"], timestamps=1))
    raw[B.MAGIC_POS] = 9
    with pytest.raises(CorruptRecordError, match="magic"):
        B.validate_batch(raw)


def _recrc(raw: bytearray) -> bytearray:
    struct.pack_into("<I", raw, B.CRC_POS, crc32c(memoryview(raw)[B.CRC_START :]))
    return raw


def test_counts_that_do_not_add_up_are_invalid_even_with_a_valid_crc() -> None:
    raw = bytearray(B.encode_batch([b"abc", b"de"], timestamps=1))
    struct.pack_into("<i", raw, B.RECORD_COUNT_POS, 3)
    with pytest.raises(InvalidBatchError):
        B.decode_batch(_recrc(raw))


def test_lengths_that_lie_about_the_sections_are_invalid() -> None:
    raw = bytearray(B.encode_batch([b"abc", b"de"], timestamps=1))
    # value_lengths column starts after key_lengths (2 x int32)
    struct.pack_into("<i", raw, B.HEADER_SIZE + 8, 4)
    with pytest.raises(InvalidBatchError, match="add up"):
        B.decode_batch(_recrc(raw))


def test_empty_batch_is_refused() -> None:
    with pytest.raises(InvalidBatchError):
        B.encode_batch([])


def test_mismatched_columns_are_refused() -> None:
    with pytest.raises(InvalidBatchError):
        B.encode_batch([b"a", b"b"], keys=[b"k"])


def test_timestamps_spanning_more_than_24_days_are_refused() -> None:
    with pytest.raises(InvalidBatchError, match="24 days"):
        B.encode_batch([b"a", b"b"], timestamps=[0, 30 * 86_400_000])


def test_iter_batches_walks_back_to_back_batches_and_ignores_a_short_tail() -> None:
    a = B.encode_batch([b"1", b"2"], timestamps=1, base_offset=0)
    b = B.encode_batch([b"3"], timestamps=2, base_offset=2)
    got = [v for d in B.iter_batches(a + b + b[:20]) for v in d.value_list()]
    assert got == [b"1", b"2", b"3"]


def test_headers_blob_round_trips_and_rejects_garbage() -> None:
    blob = B.encode_headers([("a", b"1"), ("ünï", b"\x00\xff")])
    assert B.decode_headers(blob) == (("a", b"1"), ("ünï", b"\x00\xff"))
    with pytest.raises(CorruptRecordError):
        B.decode_headers(blob + b"junk")
    with pytest.raises(CorruptRecordError):
        B.decode_headers(blob[:-1])
