"""The one bounded decompressor: a section that inflates beyond what its header claims is
refused while inflating, never allocated, on the broker's check and the consumer's decode."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import lz4.frame
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from logstream.codec import (
    COMPRESSION_MASK,
    HEADER,
    HEADER_SIZE,
    check_batch,
    compression,
    decode_batch,
    decode_rows,
    encode_batch,
    read_header,
    stamp_crc,
)
from logstream.errors import CorruptRecordError, InvalidBatchError

MiB = 1 << 20


def _frame_without_size(codec: int, data: bytes) -> bytes:
    """A frame that does not declare its content size, so only the bound stops it."""
    if codec == compression.ZSTD:
        return zstandard.ZstdCompressor(write_content_size=False).compress(data)
    return bytes(lz4.frame.compress(data, store_size=False))


def _peak_bytes(fn: Callable[[], object]) -> int:
    """Peak traced allocation while ``fn`` runs (it is expected to raise)."""
    tracemalloc.start()
    try:
        with pytest.raises(CorruptRecordError):
            fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _bomb_batch(codec: int, inflated: int) -> bytes:
    """A CRC-valid one-record batch whose header claims a 17-byte section but whose stored
    frame inflates to ``inflated`` bytes."""
    good = encode_batch([b"x"], timestamps=5, compression_type=codec)
    frame = _frame_without_size(codec, b"\0" * inflated)
    h = read_header(good)._replace(
        batch_length=HEADER_SIZE + len(frame),
        records_length=len(frame),
        attributes=(read_header(good).attributes & ~COMPRESSION_MASK) | codec,
    )
    buf = bytearray(HEADER_SIZE + len(frame))
    HEADER.pack_into(buf, 0, *h)
    buf[HEADER_SIZE:] = frame
    stamp_crc(buf)
    return bytes(buf)


@settings(max_examples=12, deadline=None)
@given(
    st.sampled_from([compression.ZSTD, compression.LZ4]),
    st.integers(min_value=0, max_value=4096),
    st.integers(min_value=8 * MiB, max_value=48 * MiB),
)
def test_a_section_inflating_past_its_claim_is_refused_without_allocating_it(
    codec: int, claim: int, inflated: int
) -> None:
    frame = _frame_without_size(codec, b"\0" * inflated)
    peak = _peak_bytes(lambda: compression.decompress(codec, frame, claim))
    assert peak < 2 * MiB + 2 * len(frame), f"peak {peak} bytes for a {claim}-byte claim"


@pytest.mark.parametrize("codec", [compression.ZSTD, compression.LZ4])
@pytest.mark.parametrize("reader", [check_batch, decode_batch, decode_rows])
def test_a_bomb_batch_is_refused_by_the_broker_check_and_the_consumer_decode(
    codec: int, reader: Callable[[bytes], object]
) -> None:
    bomb = _bomb_batch(codec, 32 * MiB)
    peak = _peak_bytes(lambda: reader(bomb))
    assert peak < 4 * MiB, f"{reader.__name__} peaked at {peak} bytes"


@pytest.mark.parametrize("codec", [compression.ZSTD, compression.LZ4])
def test_a_frame_declaring_another_size_is_refused_before_inflating(codec: int) -> None:
    frame = compression.compress(codec, b"a" * 1000)
    with pytest.raises(InvalidBatchError, match="declares 1000 bytes"):
        compression.decompress(codec, frame, 999)


@pytest.mark.parametrize("codec", [compression.ZSTD, compression.LZ4])
def test_a_frame_inflating_to_less_than_its_claim_is_refused(codec: int) -> None:
    frame = _frame_without_size(codec, b"a" * 1000)
    with pytest.raises(InvalidBatchError, match="1000 bytes, the header says 1001"):
        compression.decompress(codec, frame, 1001)


@pytest.mark.parametrize("codec", [compression.ZSTD, compression.LZ4])
def test_an_exact_claim_round_trips(codec: int) -> None:
    data = bytes(range(256)) * 40
    for frame in (compression.compress(codec, data), _frame_without_size(codec, data)):
        assert compression.decompress(codec, frame, len(data)) == data
