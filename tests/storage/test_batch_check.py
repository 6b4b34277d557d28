"""The two column checkers of batch_check (numpy for large batches, builtins for small ones)
must accept and refuse exactly the same record sections, with the same message."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logstream.codec.batch import HEADER_SIZE, encode_batch, read_header
from logstream.errors import InvalidBatchError
from logstream.storage import batch_check

lengths = st.integers(min_value=-3, max_value=40)


@st.composite
def sections(draw: st.DrawFn) -> tuple[bytes, int, object]:
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
    skew = draw(st.sampled_from([(0, 0, 0, 0), (1, 0, 0, 0), (0, -1, 0, 0), (0, 0, 1, 0),
                                 (0, 0, 0, 1)]))
    first_ts = draw(st.integers(min_value=0, max_value=2**40))
    header = read_header(encode_batch([b"x"]))._replace(
        record_count=n,
        first_timestamp=first_ts,
        max_timestamp=first_ts + max(deltas) + skew[3],
        keys_length=true_keys + skew[0],
        values_length=true_values + skew[1],
        headers_length=true_headers + skew[2],
    )
    return b"\0" * HEADER_SIZE + cols, n, header


def _outcome(check, buf: bytes, n: int, header: object) -> str | None:
    try:
        check(buf, HEADER_SIZE, n, header)
    except InvalidBatchError as exc:
        return str(exc)
    return None


@settings(max_examples=300, deadline=None)
@given(sections())
def test_small_and_numpy_checkers_agree(case: tuple[bytes, int, object]) -> None:
    buf, n, header = case
    small = _outcome(batch_check._check_columns_small, buf, n, header)
    saved = batch_check.SMALL_BATCH
    batch_check.SMALL_BATCH = 0  # force the numpy path
    try:
        large = _outcome(batch_check._check_columns, buf, n, header)
    finally:
        batch_check.SMALL_BATCH = saved
    assert small == large


def test_a_real_small_batch_passes_and_a_lie_is_named() -> None:
    batch = encode_batch([b"a", None, b"ccc"], keys=[b"k", None, None], timestamps=[5, 9, 7])
    h = read_header(batch)
    batch_check.check_record_section(batch, h)
    with pytest.raises(InvalidBatchError, match="largest is 9"):
        batch_check.check_record_section(batch, h._replace(max_timestamp=10))
