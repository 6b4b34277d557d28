"""The append-time batch check: its two column checkers (numpy for large batches, builtins for
small ones) accept and refuse exactly the same record sections, with the same message."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logstream.codec import HEADER_SIZE, check, encode_batch, read_header
from logstream.codec.header import BatchHeader
from logstream.errors import InvalidBatchError

lengths = st.integers(min_value=-3, max_value=40)


@st.composite
def sections(draw: st.DrawFn) -> tuple[bytes, BatchHeader]:
    """A record section of n records (some lengths possibly invalid) and a header whose
    section lengths and max_timestamp are either the true sums or off by a little."""
    n = draw(st.integers(min_value=1, max_value=40))
    keys = draw(st.lists(lengths, min_size=n, max_size=n))
    values = draw(st.lists(lengths, min_size=n, max_size=n))
    deltas = draw(st.lists(st.integers(min_value=0, max_value=1000), min_size=n, max_size=n))
    hdrs = draw(st.lists(st.integers(min_value=-2, max_value=30), min_size=n, max_size=n))
    cols = struct.pack(f"<{4 * n}i", *keys, *values, *deltas, *hdrs)
    true_keys = sum(max(k, 0) for k in keys)
    true_values = sum(max(v, 0) for v in values)
    true_headers = sum(hdrs)
    skew = draw(
        st.sampled_from([(0, 0, 0, 0), (1, 0, 0, 0), (0, -1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1)])
    )
    first_ts = draw(st.integers(min_value=0, max_value=2**40))
    header = read_header(encode_batch([b"x"]))._replace(
        record_count=n,
        first_timestamp=first_ts,
        max_timestamp=first_ts + max(deltas) + skew[3],
        keys_length=true_keys + skew[0],
        values_length=true_values + skew[1],
        headers_length=true_headers + skew[2],
    )
    return b"\0" * HEADER_SIZE + cols, header


def _outcome(
    checker: Callable[[bytes, int, BatchHeader], None], buf: bytes, header: BatchHeader
) -> str | None:
    try:
        checker(buf, HEADER_SIZE, header)
    except InvalidBatchError as exc:
        return str(exc)
    return None


@settings(max_examples=300, deadline=None)
@given(sections())
def test_small_and_numpy_checkers_agree(case: tuple[bytes, BatchHeader]) -> None:
    buf, header = case
    small = _outcome(check._check_columns_small, buf, header)
    large = _outcome(check._check_columns_numpy, buf, header)
    assert small == large


def test_a_real_small_batch_passes_and_a_lie_is_named() -> None:
    batch = encode_batch([b"a", None, b"ccc"], keys=[b"k", None, None], timestamps=[5, 9, 7])
    h = read_header(batch)
    check.check_record_section(batch, h)
    with pytest.raises(InvalidBatchError, match="largest is 9"):
        check.check_record_section(batch, h._replace(max_timestamp=10))


def test_check_batch_takes_exactly_one_whole_batch() -> None:
    batch = encode_batch([b"a", b"bb"], keys=[None, b"k"], timestamps=[3, 4])
    assert check.check_batch(memoryview(batch)) == read_header(batch)
    with pytest.raises(InvalidBatchError, match="exactly one batch"):
        check.check_batch(batch + batch)
