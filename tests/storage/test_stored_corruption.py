"""Damage in the header bytes the CRC does not cover, and damage a rebuilt index finds, is
never served: reads stop before it and name it (CORRUPT_MESSAGE with the offset range)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from storage_helpers import make_batch

from logstream.codec import iter_batches
from logstream.errors import CorruptRecordError
from logstream.storage import LogManager, TopicConfig
from logstream.storage.snapshot import DirectorySnapshot

SMALL = TopicConfig(segment_bytes=4096)


def _fill(path: Path, batches: int, *, config: TopicConfig | None = None) -> list[int]:
    """A topic ``t`` with ``batches`` 3-record batches; returns the base offsets."""
    with LogManager.open(path, prefault_pages=False) as mgr:
        mgr.create_topic("t", 1, config=config)
        log = mgr.get_log("t", 0)
        return [
            log.append(make_batch(3, tag=i, value_size=100)).base_offset for i in range(batches)
        ]


def _segment_files(path: Path) -> list[Path]:
    return sorted((path / "t-0").glob("*.log"))


def _offsets(data: bytes) -> list[int]:
    return [int(o) for b in iter_batches(data) for o in b.offsets]


def _patch(path: Path, pos: int, fmt: str, value: int) -> None:
    with open(path, "r+b") as f:
        f.seek(pos)
        f.write(struct.pack(fmt, value))


@pytest.mark.parametrize("field", ["base_offset", "batch_length"])
def test_a_flip_outside_the_crc_is_never_served(tmp_path: Path, field: str) -> None:
    _fill(tmp_path, 30, config=SMALL)
    first = _segment_files(tmp_path)[0]
    batch_len = struct.unpack_from("<i", first.read_bytes(), 8)[0]
    victim = 2 * batch_len  # the third batch of the first (sealed) segment: offsets 6..8
    if field == "base_offset":
        _patch(first, victim, "<q", 1234)
    else:
        _patch(first, victim + 8, "<i", batch_len + 8)
    for opener in (_writable, _read_only):
        with opener(tmp_path) as log:
            assert _offsets(log.read(0, 1 << 20)) == list(range(6))  # the good prefix
            with pytest.raises(CorruptRecordError) as info:
                log.read(6, 1 << 20)
            exc = info.value
            assert (exc.topic, exc.partition, exc.first_offset, exc.last_offset) == ("t", 0, 6, 8)
            with pytest.raises(CorruptRecordError) as info:  # a read of one batch: the
                log.read(6, 1)  # index still bounds the range
            assert (info.value.first_offset, info.value.last_offset) == (6, 8)
            assert exc.name == "CORRUPT_MESSAGE"
            assert _offsets(log.read(9, 1 << 20))[0] == 9  # and on after it


def test_damage_in_the_first_batch_of_a_parked_segment(tmp_path: Path) -> None:
    """Before: an empty rebuilt index, IndexError on every read, older segments included."""
    _fill(tmp_path, 30, config=SMALL)
    segs = _segment_files(tmp_path)
    assert len(segs) > 2
    last = segs[-1]
    base = int(last.stem)
    _patch(last, 40, "<q", 0x5A5A5A5A)  # inside the CRC's range: a CRC mismatch
    for opener in (_writable, _read_only):
        with opener(tmp_path) as log:
            assert _offsets(log.read(0, 1 << 20))[:3] == [0, 1, 2]  # older segments
            assert _offsets(log.read(base - 3, 1 << 20)) == [base - 3, base - 2, base - 1]
            # The read-only open too (it used to end the log before the damage with a
            # warning): the marker says where the segment ends, so the range is named.
            with pytest.raises(CorruptRecordError) as info:
                log.read(base, 1 << 20)
            assert (info.value.first_offset, info.value.last_offset) == (
                base,
                log.log_end_offset - 1,
            )
    with LogManager.open(tmp_path, prefault_pages=False) as mgr:  # appends go on after it
        log = mgr.get_log("t", 0)
        end = log.log_end_offset
        assert log.append(make_batch(2)).base_offset == end
        assert _offsets(log.read(end, 1 << 20)) == [end, end + 1]
        with pytest.raises(CorruptRecordError):
            log.read(base, 1 << 20)
    with LogManager.open(tmp_path, prefault_pages=False) as mgr:  # and after a reopen
        log = mgr.get_log("t", 0)
        assert _offsets(log.read(end, 1 << 20)) == [end, end + 1]
        with pytest.raises(CorruptRecordError) as info:
            log.read(base + 1, 1 << 20)
        assert info.value.first_offset == base


class _writable:
    def __init__(self, path: Path) -> None:
        self.mgr = LogManager.open(path, prefault_pages=False)

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self.mgr.get_log("t", 0)

    def __exit__(self, *exc: object) -> None:
        self.mgr.close()


class _read_only:
    def __init__(self, path: Path) -> None:
        self.snap = DirectorySnapshot.open(path)

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self.snap.get_log("t", 0)

    def __exit__(self, *exc: object) -> None:
        self.snap.close()


def test_verify_lists_every_damaged_range(tmp_path: Path) -> None:
    from logstream.storage.verify import main, verify_data_dir

    _fill(tmp_path, 30, config=SMALL)
    first = _segment_files(tmp_path)[0]
    data = first.read_bytes()
    length = struct.unpack_from("<i", data, 8)[0]
    _patch(first, 2 * length, "<q", 1234)  # offsets 6..8: framing
    _patch(first, 4 * length + 100, "<q", 0x0101010101010101)  # offsets 12..14: CRC
    found = verify_data_dir(tmp_path)
    assert [(d.topic, d.partition, d.first, d.last) for d in found] == [
        ("t", 0, 6, 8),
        ("t", 0, 12, 14),
    ]
    assert main([str(tmp_path)]) == 1


def test_a_damaged_index_entry_never_stalls_a_reader(tmp_path: Path) -> None:
    """An index entry whose relative offset grew by 2 (still increasing, so it passes the
    sanity check) sent reads of the two offsets below it to the batch before: the answer
    ended before the offset asked for, and a consumer asked again for ever."""
    _fill(tmp_path, 30, config=SMALL)
    index = sorted((tmp_path / "t-0").glob("*.index"))[0]
    raw = bytearray(index.read_bytes())
    entries = len(raw) // 8
    k = 3
    rel = struct.unpack_from("<I", raw, 4 * k)[0]
    struct.pack_into("<I", raw, 4 * k, rel + 2)
    index.write_bytes(bytes(raw))
    assert entries > k + 1
    with _writable(tmp_path) as log:
        for offset in range(0, 3 * entries):
            try:
                data = log.read(offset, 1 << 20)
            except CorruptRecordError as exc:
                assert exc.first_offset is not None and exc.first_offset <= offset
                continue
            assert max(_offsets(data)) >= offset  # the answer reaches the offset asked for


def _last_segment_positions(path: Path) -> tuple[Path, list[int]]:
    last = _segment_files(path)[-1]
    data = last.read_bytes()
    out, pos = [], 0
    while pos + 12 <= len(data) and any(data[pos : pos + 12]):
        out.append(pos)
        pos += struct.unpack_from("<i", data, pos + 8)[0]
    return last, out


@pytest.mark.parametrize("marker", ["clean", "crashed"])
def test_a_read_only_open_names_damage_in_the_last_segment(tmp_path: Path, marker: str) -> None:
    """A flipped record byte in the middle of the last segment: the read-only open used to
    end the log before it with a warning (its later batches unseen, no error). Now, as
    the writable open of a parked segment, the batches before it are served and a read of
    its offset raises CORRUPT_MESSAGE naming the range, up to where the data ends; with or
    without the clean-shutdown marker (then the bad batch's own length leads on)."""
    bases = _fill(tmp_path, 25, config=SMALL)
    last, positions = _last_segment_positions(tmp_path)
    base = int(last.stem)
    assert len(positions) >= 4
    _patch(last, positions[2] + 100, "<q", 0x0101010101010101)
    if marker == "crashed":
        (tmp_path / ".clean-shutdown").unlink()
    damaged_from = base + 6
    with _read_only(tmp_path) as log:
        assert log.log_end_offset == bases[-1] + 3  # not cut at the damage
        assert _offsets(log.read(base, 1 << 20)) == list(range(base, damaged_from))
        with pytest.raises(CorruptRecordError) as info:
            log.read(damaged_from, 1 << 20)
        exc = info.value
        assert (exc.topic, exc.partition, exc.first_offset) == ("t", 0, damaged_from)
        assert exc.last_offset == bases[-1] + 2
    if marker == "clean":  # the same answers as the writable open
        with _writable(tmp_path) as log:
            assert _offsets(log.read(base, 1 << 20)) == list(range(base, damaged_from))
            with pytest.raises(CorruptRecordError) as info:
                log.read(damaged_from, 1 << 20)
            assert info.value.first_offset == damaged_from


def test_a_torn_tail_is_still_the_end_of_a_read_only_open(tmp_path: Path) -> None:
    bases = _fill(tmp_path, 25, config=SMALL)
    last, positions = _last_segment_positions(tmp_path)
    (tmp_path / ".clean-shutdown").unlink()
    raw = bytearray(last.read_bytes())
    raw[positions[-1] + 90 :] = bytes(len(raw) - positions[-1] - 90)  # the last batch, torn
    last.write_bytes(bytes(raw))
    with _read_only(tmp_path) as log:
        assert log.log_end_offset == bases[-1]
        assert _offsets(log.read(int(last.stem), 1 << 20))[-1] == bases[-1] - 1
        assert 0 < log.recovery_report.bytes_truncated <= 90  # found, not read


def test_damage_on_disk_is_found_at_the_first_read_after_the_open(tmp_path: Path) -> None:
    """The framing check runs once per batch that came from disk (then it is remembered)
    and never for batches this process appended: a flip made after the open, in a range
    not read yet, is still found by the first read of that range."""
    _fill(tmp_path, 30, config=SMALL)
    first = _segment_files(tmp_path)[0]
    batch_len = struct.unpack_from("<i", first.read_bytes(), 8)[0]
    with _writable(tmp_path) as log:
        assert _offsets(log.read(0, 3 * batch_len)) == list(range(9))  # entries 0..2 checked
        _patch(first, 5 * batch_len, "<q", 777)  # batch 5 (offsets 15..17), not read yet
        assert _offsets(log.read(9, 1 << 20)) == list(range(9, 15))
        with pytest.raises(CorruptRecordError) as info:
            log.read(15, 1 << 20)
        assert (info.value.first_offset, info.value.last_offset) == (15, 17)
        end = log.log_end_offset
        log.append(make_batch(3, tag=99, value_size=100))
        active = log.segments()[-1]
        assert active.appended_from is not None and active.appended_from < active.size
        assert _offsets(log.read(end, 1 << 20)) == [end, end + 1, end + 2]


def test_entry_ranges_merge_like_a_set() -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    from logstream.storage.segment_reader import EntryRanges

    spans = st.tuples(st.integers(0, 60), st.integers(0, 20)).map(lambda t: (t[0], t[0] + t[1]))

    @given(st.lists(spans, max_size=12), st.lists(spans, max_size=12))
    def check(added: list[tuple[int, int]], asked: list[tuple[int, int]]) -> None:
        ranges, model = EntryRanges(), set()
        for lo, hi in added:
            ranges.add(lo, hi)
            model.update(range(lo, hi))
        for lo, hi in asked + added:
            if hi > lo:
                assert ranges.covers(lo, hi) == (set(range(lo, hi)) <= model), (lo, hi, ranges)

    check()


def _garble(path: Path, start: int, stop: int) -> None:
    raw = bytearray(path.read_bytes())
    for pos in range(start, stop):
        raw[pos] ^= 0x5A
    path.write_bytes(bytes(raw))


def test_adjacent_damaged_batches_that_good_ones_follow_are_damage_not_a_torn_tail(
    tmp_path: Path,
) -> None:
    """Two damaged batches in a row near the end of a crashed last segment, whole batches
    after them: a torn tail is only what follows the last batch that parses, so this is
    damage. The writable open used to cut it all at recovery (the good batches after it
    lost, their offsets given out again) and the read-only open ended the log before it;
    now both refuse the damaged offsets by name and keep the end, and appends go on
    after it, also after a reopen."""
    bases = _fill(tmp_path, 25, config=SMALL)
    end = bases[-1] + 3
    last, positions = _last_segment_positions(tmp_path)
    base = int(last.stem)
    assert len(positions) >= 5
    k = len(positions) - 4  # damage batches k and k + 1; two good ones follow
    for i in (k, k + 1):
        _garble(last, positions[i] + 90, positions[i] + 94)  # record bytes: the CRC fails
    (tmp_path / ".clean-shutdown").unlink()
    damaged_from, damaged_to = base + 3 * k, end - 1
    for opener in (_read_only, _writable, _writable):  # the second writable: after a reopen
        with opener(tmp_path) as log:
            assert log.log_end_offset == end, opener.__name__
            assert _offsets(log.read(base, 1 << 20)) == list(range(base, damaged_from))
            with pytest.raises(CorruptRecordError) as info:
                log.read(damaged_from, 1 << 20)
            assert (info.value.first_offset, info.value.last_offset) == (damaged_from, damaged_to)
            if opener is _writable and log.log_end_offset == end:
                log.append(make_batch(3, tag=99, value_size=100))
                end += 3
                assert _offsets(log.read(end - 3, 1 << 20)) == [end - 3, end - 2, end - 1]
    assert last.read_bytes()[positions[k + 2] : positions[k + 2] + 8] != bytes(8)  # kept


def test_a_torn_last_batch_of_a_crashed_segment_is_still_cut(tmp_path: Path) -> None:
    bases = _fill(tmp_path, 25, config=SMALL)
    last, positions = _last_segment_positions(tmp_path)
    length = struct.unpack_from("<i", last.read_bytes(), positions[-1] + 8)[0]
    _garble(last, positions[-1] + 80, positions[-1] + length)  # the last append, torn
    (tmp_path / ".clean-shutdown").unlink()
    with _read_only(tmp_path) as log:
        assert log.log_end_offset == bases[-1]  # the end of what was written whole
    with _writable(tmp_path) as log:
        assert log.log_end_offset == bases[-1]
        assert log.recovery_report.bytes_truncated == length  # the whole torn batch
        assert last.stat().st_size == positions[-1]  # cut there
        assert _offsets(log.read(bases[-2], 1 << 20)) == [bases[-2] + i for i in range(3)]
        assert log.append(make_batch(3, tag=99, value_size=100)).base_offset == bases[-1]
