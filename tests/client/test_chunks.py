"""Decoding fetch answers: whole batches, records below the position skipped, columns."""

from __future__ import annotations

import numpy as np
import pytest

from logstream.client.chunks import (
    RecordColumns,
    RecordList,
    chunks_from_records,
    decode_until_damage,
)
from logstream.codec import RECORD_COUNT_POS, ZSTD, encode_batch, encode_headers, stamp_base_offset
from logstream.types import Record


def _batch(
    base: int, values: list[bytes | None], keys: list[bytes | None] | None = None, **kw: object
) -> bytes:
    buf = bytearray(
        encode_batch(
            values, keys=keys, timestamps=[1000 + base + i for i in range(len(values))], **kw
        )
    )  # type: ignore[arg-type]
    stamp_base_offset(buf, base)
    return bytes(buf)


def test_records_below_the_position_are_skipped() -> None:
    data = _batch(0, [b"a", b"b", b"c"]) + _batch(3, [b"d", b"e"])
    chunks = chunks_from_records("t", 1, 0, data, 2, verify=True)
    records = [r for c in chunks for r in c.take_records(100)]
    assert [r.offset for r in records] == [2, 3, 4]
    assert [r.value for r in records] == [b"c", b"d", b"e"]
    assert records[0].topic == "t" and records[0].partition == 1
    assert records[0].timestamp_ms == 1002


def test_whole_batches_below_the_position_are_dropped() -> None:
    data = _batch(0, [b"a", b"b"]) + _batch(2, [b"c"])
    chunks = chunks_from_records("t", 0, 0, data, 2, verify=True)
    assert len(chunks) == 1 and chunks[0].next_offset == 2


def test_a_short_trailing_fragment_is_damage_after_the_good_batches() -> None:
    """An answer holds whole batches: a fragment (a batch_length flipped past the end)
    would otherwise stall the reader, refetching the same offset for ever."""
    data = _batch(0, [b"a"]) + _batch(1, [b"b"])[:50]
    chunks, damage = decode_until_damage("t", 0, 0, data, 0, verify=True)
    assert [r.value for c in chunks for r in c.take_records(10)] == [b"a"]
    assert damage is not None
    assert (damage.topic, damage.partition, damage.first_offset) == ("t", 0, 1)


def test_take_records_respects_the_limit_and_moves_the_cursor() -> None:
    chunks = chunks_from_records(
        "t", 0, 0, _batch(10, [b"%d" % i for i in range(5)]), 10, verify=True
    )
    c = chunks[0]
    assert [r.offset for r in c.take_records(2)] == [10, 11]
    assert c.next_offset == 12 and c.remaining == 3
    assert [r.offset for r in c.take_records(10)] == [12, 13, 14]


def test_keys_nulls_and_headers_survive() -> None:
    blob = encode_headers([("trace", b"x")])
    data = _batch(0, [b"v0", None, b"v2"], keys=[b"k0", b"", None], headers=[blob, b"", b""])
    (c,) = chunks_from_records("t", 0, 0, data, 0, verify=True)
    r = c.take_records(10)
    assert [x.key for x in r] == [b"k0", b"", None]
    assert [x.value for x in r] == [b"v0", None, b"v2"]
    assert r[0].headers == (("trace", b"x"),) and r[1].headers == ()


def test_keyless_batches_give_none_keys() -> None:
    (c,) = chunks_from_records("t", 0, 0, _batch(0, [b"a", b"b"]), 0, verify=True)
    assert [x.key for x in c.take_records(5)] == [None, None]


def test_columns_concatenate_chunks_of_several_partitions() -> None:
    a = chunks_from_records("t", 0, 0, _batch(0, [b"a", b"bb", b"ccc"]), 1, verify=True)
    b = chunks_from_records("u", 3, 0, _batch(7, [b"dddd"]), 7, verify=True)
    cols = RecordColumns([a[0].take_columns(10), b[0].take_columns(10)])
    assert len(cols) == 3
    assert cols.offsets.tolist() == [1, 2, 7]
    assert cols.partitions.tolist() == [0, 0, 3]
    assert cols.topics.tolist() == ["t", "t", "u"]
    assert cols.timestamps.dtype == np.int64
    assert cols.values() == [b"bb", b"ccc", b"dddd"]
    buf, starts, lengths = cols.value_buffer()
    assert [buf[s : s + n] for s, n in zip(starts.tolist(), lengths.tolist(), strict=True)] == [
        b"bb",
        b"ccc",
        b"dddd",
    ]


def test_compressed_batches_decode() -> None:
    (c,) = chunks_from_records(
        "t", 0, 0, _batch(0, [b"x" * 100] * 10, compression_type=1), 0, verify=True
    )
    assert len(c.take_records(100)) == 10


def test_take_records_of_fixed_size_values_and_one_timestamp() -> None:
    # The fast paths (one findall over equal-length values, one shared timestamp) must give
    # the same records as the general path, including across partial takes.
    from logstream.client.chunks import chunks_from_records
    from logstream.codec import encode_batch

    vals = [bytes([i % 251]) * 7 for i in range(300)]
    one_ts = encode_batch(vals, timestamps=1234)
    (chunk,) = chunks_from_records("t", 1, 0, one_ts, 10, verify=True)
    got = chunk.take_records(100) + chunk.take_records(1000)
    assert [r.offset for r in got] == list(range(10, 300))
    assert [r.value for r in got] == vals[10:]
    assert {r.timestamp_ms for r in got} == {1234}
    mixed = encode_batch([b"aa", b"bbb", b"cc", b"dd"], timestamps=[5, 5, 6, 5])
    (chunk,) = chunks_from_records("t", 1, 0, mixed, 0, verify=True)
    recs = chunk.take_records(10)
    assert [(r.value, r.timestamp_ms) for r in recs] == [
        (b"aa", 5),
        (b"bbb", 5),
        (b"cc", 6),
        (b"dd", 5),
    ]
    nulls = encode_batch([b"xy", None, b"zw"], timestamps=9)
    (chunk,) = chunks_from_records("t", 1, 0, nulls, 0, verify=True)
    assert [r.value for r in chunk.take_records(10)] == [b"xy", None, b"zw"]


def test_small_batches_decode_to_rows_and_large_ones_to_columns_with_the_same_records() -> None:
    from logstream.codec import SMALL_BATCH_RECORDS

    blob = encode_headers([("h", b"1")])
    n = SMALL_BATCH_RECORDS + 5
    values: list[bytes | None] = [b"v%d" % i if i % 7 else None for i in range(n)]
    keys: list[bytes | None] = [b"k%d" % i if i % 3 else None for i in range(n)]
    hdrs = [blob if i % 4 == 0 else b"" for i in range(n)]
    data = _batch(200 - n, values, keys=keys, headers=hdrs)
    small = _batch(200, values[:3], keys=keys[:3], headers=hdrs[:3])  # follows it
    big_chunk, small_chunk = chunks_from_records("t", 0, 0, data + small, 200 - n, verify=True)
    assert big_chunk._rows is None and small_chunk._rows is not None  # the two decoders
    got = big_chunk.take_records(n)
    assert [(r.offset, r.key, r.value) for r in got] == [
        (200 - n + i, keys[i], values[i]) for i in range(n)
    ]
    assert [r.headers for r in got] == [(("h", b"1"),) if i % 4 == 0 else () for i in range(n)]
    assert [r.timestamp_ms for r in got] == [1200 - n + i for i in range(n)]
    # a rows chunk: records first, then columns for the rest (decoded on demand)
    first = small_chunk.take_records(1)
    assert [(r.offset, r.key, r.value, r.timestamp_ms) for r in first] == [(200, None, None, 1200)]
    cols = small_chunk.take_columns(10)
    assert cols.offsets.tolist() == [201, 202]
    assert cols.timestamps.tolist() == [1201, 1202]
    assert cols.values() == values[1:3] and cols.keys() == keys[1:3]
    assert small_chunk.remaining == 0


def test_a_damaged_small_batch_raises_instead_of_decoding() -> None:
    import pytest

    from logstream.errors import CorruptRecordError

    data = bytearray(_batch(0, [b"abc"]))
    data[-1] ^= 0xFF
    with pytest.raises(CorruptRecordError):
        chunks_from_records("t", 0, 0, bytes(data), 0, verify=True)


def test_a_damaged_batch_raises_even_where_its_header_says_it_is_below_the_position() -> None:
    import pytest

    from logstream.errors import CorruptRecordError

    first = _batch(10, [b"a", b"b"])
    data = bytearray(first + _batch(12, [b"c"]))
    stamp_base_offset(data, 0)  # the base offset is not under the CRC: now "below" 11
    data[len(first) - 1] ^= 0x01  # and a value byte is damaged: the CRC catches it
    with pytest.raises(CorruptRecordError):
        chunks_from_records("t", 0, 0, bytes(data), 11, verify=True)


def _record_list(base: int, values: list[bytes | None]) -> tuple[RecordList, list[Record]]:
    data = _batch(base, values)
    expected = [
        r
        for c in chunks_from_records("t", 0, 0, data, base, verify=True)
        for r in c.take_records(100)
    ]
    out = RecordList()
    for c in chunks_from_records("t", 0, 0, data, base, verify=True):
        out.take_from(c, 100)
    return out, expected


def test_a_record_list_equals_the_list_of_its_records() -> None:
    got, expected = _record_list(5, [b"a", None, b"c"])
    assert got == expected
    assert list(got) == expected
    assert len(got) == 3 and got
    assert repr(got) == repr(expected)
    assert got != expected[:2]
    assert RecordList() == [] and not RecordList()


def test_a_record_list_is_indexable_like_a_list() -> None:
    got, expected = _record_list(5, [b"a", b"b", b"c", b"d"])
    assert got[0] == expected[0] and got[-1] == expected[-1]
    assert got[1:3] == expected[1:3]
    assert got[0].offset == 5 and got[0].value == b"a" and got[0].timestamp_ms == 1005
    assert got + [expected[0]] == [*expected, expected[0]]  # noqa: RUF005 (list + RecordList)
    with pytest.raises(IndexError):
        got[4]


def test_record_lists_of_fixed_size_values_keep_every_byte() -> None:
    values = [b"\x00ab\x00", b"\x00\x00\x00\x00", b"cd\x00\x00"] * 20
    got, _ = _record_list(0, values)  # type: ignore[arg-type]
    assert [r.value for r in got] == values


def test_indexing_a_record_list_gives_the_records_iteration_gives() -> None:
    from logstream.codec import SMALL_BATCH_RECORDS

    blob = encode_headers([("h", b"1")])
    for n in (3, SMALL_BATCH_RECORDS + 5):  # rows and numpy columns
        values: list[bytes | None] = [b"v%d" % i for i in range(n)]
        keys: list[bytes | None] = [None if i % 3 else b"k" for i in range(n)]
        headers = [blob if i % 2 else b"" for i in range(n)]
        data = _batch(10, values, keys=keys, headers=headers)
        got = RecordList()
        for c in chunks_from_records("t", 2, 0, data, 10, verify=True):
            got.take_from(c, 1000)
        assert [got[i] for i in range(len(got))] == list(got)
        assert got[1].headers == (("h", b"1"),) and got[0].headers == ()
        assert got[-1].offset == 10 + n - 1 and got[0].key == b"k" and got[1].key is None


def _framed(*batches: tuple[int, list[bytes | None]]) -> bytes:
    return b"".join(_batch(base, values) for base, values in batches)


def test_a_base_offset_that_does_not_follow_is_damage_not_wrong_offsets() -> None:
    """The CRC does not cover base_offset: a flip used to put records under wrong offsets."""
    good = _framed((10, [b"a", b"b"]), (12, [b"c"]), (13, [b"d", b"e"]))
    for flipped_base, why in ((99, "ahead: offsets skipped"), (11, "behind: offsets repeated")):
        data = bytearray(good)
        stamp_base_offset(data, flipped_base, len(_batch(10, [b"a", b"b"])))
        chunks, damage = decode_until_damage("t", 3, 0, bytes(data), 10, verify=True)
        assert [r.offset for c in chunks for r in c.take_records(10)] == [10, 11], why
        assert damage is not None, why
        assert (damage.topic, damage.partition, damage.first_offset) == ("t", 3, 12)


def test_a_batch_length_that_does_not_frame_is_damage() -> None:
    first = _batch(0, [b"a"])
    data = bytearray(first + _batch(1, [b"b"]) + _batch(2, [b"c"]))
    import struct

    struct.pack_into("<i", data, len(first) + 8, 10_000)  # past the end of the answer
    chunks, damage = decode_until_damage("t", 0, 0, bytes(data), 0, verify=False)
    assert [r.offset for c in chunks for r in c.take_records(10)] == [0]
    assert damage is not None and damage.first_offset == 1


def test_a_crc_failure_names_the_range_up_to_the_next_batch() -> None:
    first = _batch(5, [b"a"])
    data = bytearray(first + _batch(6, [b"b", b"c"]) + _batch(8, [b"d"]))
    data[len(first) + 80] ^= 0x10
    chunks, damage = decode_until_damage("t", 0, 0, bytes(data), 5, verify=True)
    assert [r.offset for c in chunks for r in c.take_records(10)] == [5]
    assert damage is not None
    assert (damage.first_offset, damage.last_offset) == (6, 7)
    assert "6..7" in str(damage)


def test_fixed_size_values_read_like_a_list_across_blocks() -> None:
    from logstream.client.chunks import VALUE_BLOCK, FixedSizeValues

    n = 2 * VALUE_BLOCK + 7  # iteration crosses two block boundaries
    values = [bytes([i % 256, 0, 0]) for i in range(n)]  # trailing NULs are kept
    got = FixedSizeValues(np.frombuffer(b"".join(values), dtype="V3"))
    assert len(got) == n
    assert list(got) == values
    assert got[0] == values[0] and got[-1] == values[-1] and type(got[5]) is bytes
    lo, hi = VALUE_BLOCK - 2, VALUE_BLOCK + 3
    part = got[lo:hi]
    assert isinstance(part, FixedSizeValues) and list(part) == values[lo:hi]
    assert list(got[::100]) == values[::100]


def test_a_large_batch_of_fixed_size_values_polls_in_partial_runs() -> None:
    from logstream.client.chunks import VALUE_BLOCK

    n = 3 * VALUE_BLOCK
    values: list[bytes | None] = [b"%07d" % i for i in range(n)]
    (chunk,) = chunks_from_records("t", 0, 0, _batch(0, values), 0, verify=True)
    first, rest = RecordList(), RecordList()
    first.take_from(chunk, VALUE_BLOCK + 1)
    rest.take_from(chunk, n)
    assert [r.value for r in first] == values[: VALUE_BLOCK + 1]
    assert [r.value for r in rest] == values[VALUE_BLOCK + 1 :]
    assert rest[0].offset == VALUE_BLOCK + 1 and rest[-1].value == values[-1]


def test_a_crc_failure_in_the_last_batch_names_its_range_from_its_own_header() -> None:
    first = _batch(5, [b"a"])
    data = bytearray(first + _batch(6, [b"b", b"c", b"d"]))
    data[len(first) + 80] ^= 0x10  # a record byte: the header still adds up
    chunks, damage = decode_until_damage("t", 0, 0, bytes(data), 5, verify=True)
    assert [r.offset for c in chunks for r in c.take_records(10)] == [5]
    assert damage is not None
    assert (damage.first_offset, damage.last_offset) == (6, 8)
    assert "6..8" in str(damage)


@pytest.mark.parametrize("kind", ["record_count", "compressed"])
def test_a_last_batch_whose_count_cannot_be_trusted_leaves_the_end_unknown(kind: str) -> None:
    """A damaged record_count does not add up with the section sizes; a compressed
    section's size says nothing of the count: no end is named rather than a wrong one."""
    first = _batch(5, [b"a"])
    if kind == "record_count":
        data = bytearray(first + _batch(6, [b"b", b"c", b"d"]))
        data[len(first) + RECORD_COUNT_POS] ^= 0x04  # 3 -> 7 records
    else:
        data = bytearray(first + _batch(6, [b"b" * 50] * 20, compression_type=ZSTD))
        data[-3] ^= 0x10
    chunks, damage = decode_until_damage("t", 0, 0, bytes(data), 5, verify=True)
    assert [r.offset for c in chunks for r in c.take_records(10)] == [5]
    assert damage is not None
    assert (damage.first_offset, damage.last_offset) == (6, None)
