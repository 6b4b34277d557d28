"""Index arithmetic against a reference model (bisect over Python lists)."""

from __future__ import annotations

import bisect

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logstream.storage.index import IndexCorruptError, OffsetIndex, TimeIndex


def _strictly_increasing(draw_list: list[int]) -> list[int]:
    out, acc = [], 0
    for d in draw_list:
        acc += d
        out.append(acc)
    return out


steps = st.lists(st.integers(1, 1000), min_size=1, max_size=200)


@settings(max_examples=60, deadline=None)
@given(rel_steps=steps, probe=st.lists(st.integers(0, 250_000), max_size=30))
def test_offset_lookup_matches_bisect(tmp_path_factory, rel_steps, probe):
    rels = [0, *_strictly_increasing(rel_steps)]
    positions = [r * 7 for r in rels]
    path = tmp_path_factory.mktemp("oi") / "0.index"
    index = OffsetIndex.create_writable(path, capacity=len(rels) + 3)
    for r, p in zip(rels, positions, strict=True):
        index.append(r, p)
    for target in probe:
        expected = bisect.bisect_right(rels, target) - 1
        assert index.lookup(target) == expected
    # a trimmed reopen answers the same
    index.trim_and_close()
    ro = OffsetIndex.open_readonly(path)
    assert ro.entries == len(rels)
    for target in probe:
        assert ro.lookup(target) == bisect.bisect_right(rels, target) - 1
    ro.close()


@settings(max_examples=60, deadline=None)
@given(ts_steps=steps, probe=st.lists(st.integers(-10, 250_000), max_size=30))
def test_time_lookup_matches_bisect(tmp_path_factory, ts_steps, probe):
    stamps = _strictly_increasing(ts_steps)
    rels = list(range(0, 3 * len(stamps), 3))
    path = tmp_path_factory.mktemp("ti") / "0.timeindex"
    index = TimeIndex.create_writable(path, capacity=len(stamps))
    for t, r in zip(stamps, rels, strict=True):
        index.append(t, r)
    for target in probe:
        k = bisect.bisect_left(stamps, target)
        assert index.lookup(target) == (rels[k] if k < len(stamps) else None)
    index.close()


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(80, 5000), min_size=1, max_size=100),
       start=st.integers(0, 99), max_bytes=st.integers(1, 60_000))
def test_end_of_batches_returns_whole_batches(tmp_path_factory, sizes, start, max_bytes):
    positions = [0]
    for s in sizes[:-1]:
        positions.append(positions[-1] + s)
    data_size = positions[-1] + sizes[-1]
    k = start % len(sizes)
    path = tmp_path_factory.mktemp("oi") / "0.index"
    index = OffsetIndex.create_writable(path, capacity=len(sizes))
    for i, p in enumerate(positions):
        index.append(i, p)
    end = index.end_of_batches(k, max_bytes, data_size)
    boundaries = [*positions, data_size]
    # model: the largest boundary <= start + max_bytes, but at least the next boundary
    fitting = [b for b in boundaries if positions[k] < b <= positions[k] + max_bytes]
    expected = fitting[-1] if fitting else boundaries[k + 1]
    assert end == expected
    index.close()


def test_lookup_uses_dtype_keys_fast(tmp_path):
    index = OffsetIndex.create_writable(tmp_path / "0.index", capacity=1_000_000)
    index._cols[0][:] = np.arange(1_000_000, dtype=np.uint32) * 2
    index._cols[1][:] = np.arange(1_000_000, dtype=np.uint32) * 100
    index.entries = 1_000_000
    import time

    t0 = time.perf_counter()
    for i in range(1000):
        index.lookup(i * 1999)
    per_call = (time.perf_counter() - t0) / 1000
    assert per_call < 50e-6, per_call  # no whole-column cast or copy
    index.close()


def test_sanity_check_rejects_damage(tmp_path):
    path = tmp_path / "0.index"
    OffsetIndex.write_trimmed(path, [np.array([0, 5, 3], np.uint32),
                                     np.array([0, 100, 200], np.uint32)])
    ro = OffsetIndex.open_readonly(path)
    with pytest.raises(IndexCorruptError):
        ro.sanity_check(300)
    ro.close()
    path.write_bytes(b"123")
    with pytest.raises(IndexCorruptError):
        OffsetIndex.open_readonly(path)


def test_close_with_live_views_is_safe(tmp_path):
    index = OffsetIndex.create_writable(tmp_path / "0.index", capacity=16)
    index.append(0, 0)
    index.append(1, 90)
    index.trim_and_close()  # drops its own views before closing the map
    assert (tmp_path / "0.index").stat().st_size == 16
