"""Index arithmetic against a reference model (bisect over Python lists), on the two forms
that run: the active segment's growable in-memory index and a sealed, trimmed file."""

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
    index = OffsetIndex.growable(path, capacity=len(rels) + 3)
    for r, p in zip(rels, positions, strict=True):
        index.append(r, p)
    for target in probe:
        expected = bisect.bisect_right(rels, target) - 1
        assert index.lookup(target) == expected
    # the trimmed file a seal writes answers the same
    OffsetIndex.write_trimmed(path, index.columns())
    index.close()
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
    index = TimeIndex.growable(path, capacity=len(stamps))
    for t, r in zip(stamps, rels, strict=True):
        index.append(t, r)
    for target in probe:
        k = bisect.bisect_left(stamps, target)
        assert index.lookup(target) == (rels[k] if k < len(stamps) else None)
    index.close()


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(80, 5000), min_size=1, max_size=100),
    start=st.integers(0, 99),
    max_bytes=st.integers(1, 60_000),
)
def test_end_of_batches_returns_whole_batches(tmp_path_factory, sizes, start, max_bytes):
    positions = [0]
    for s in sizes[:-1]:
        positions.append(positions[-1] + s)
    data_size = positions[-1] + sizes[-1]
    k = start % len(sizes)
    path = tmp_path_factory.mktemp("oi") / "0.index"
    index = OffsetIndex.growable(path, capacity=len(sizes))
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
    columns = [
        np.arange(1_000_000, dtype=np.uint32) * 2,
        np.arange(1_000_000, dtype=np.uint32) * 100,
    ]
    index = OffsetIndex.growable(tmp_path / "0.index", 1_000_000, columns)
    assert index.entries == 1_000_000
    import time

    t0 = time.perf_counter()
    for i in range(1000):
        index.lookup(i * 1999)
    per_call = (time.perf_counter() - t0) / 1000
    assert per_call < 50e-6, per_call  # no whole-column cast or copy
    index.close()


def test_sanity_check_rejects_damage(tmp_path):
    path = tmp_path / "0.index"
    OffsetIndex.write_trimmed(
        path, [np.array([0, 5, 3], np.uint32), np.array([0, 100, 200], np.uint32)]
    )
    ro = OffsetIndex.open_readonly(path)
    with pytest.raises(IndexCorruptError):
        ro.sanity_check(300)
    ro.close()
    path.write_bytes(b"123")
    with pytest.raises(IndexCorruptError):
        OffsetIndex.open_readonly(path)


def test_growable_index_grows_from_a_small_start_until_its_capacity(tmp_path):
    index = OffsetIndex.growable(tmp_path / "0.index", capacity=200)
    assert len(index._cols[0]) == 64  # an idle partition costs ~1 KiB, not 200 rows
    for i in range(200):
        assert not index.is_full
        index.append(i, 10 * i)
    assert index.is_full and index.entries == 200
    with pytest.raises(IndexError):
        index.append(200, 2000)
    assert index.lookup(150) == 150 and index.entry(199) == (199, 1990)
    assert not (tmp_path / "0.index").exists()  # in memory only: no file, no map


def test_growable_index_resumes_from_given_columns(tmp_path):
    """A reactivated segment's index starts from its sealed entries."""
    cols = [np.array([0, 3, 9], np.uint32), np.array([0, 50, 120], np.uint32)]
    index = OffsetIndex.growable(tmp_path / "0.index", 16, cols)
    index.append(12, 200)
    assert [c.tolist() for c in index.columns()] == [[0, 3, 9, 12], [0, 50, 120, 200]]
    OffsetIndex.write_trimmed(tmp_path / "0.index", index.columns())
    assert (tmp_path / "0.index").stat().st_size == 4 * OffsetIndex.ENTRY_SIZE
