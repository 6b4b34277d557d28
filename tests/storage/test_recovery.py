"""Recovery after a crash: torn tails are cut exactly, damage that good batches follow is
refused by name and kept, indexes are rebuilt."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from storage_helpers import make_batch

from logstream.codec import iter_batches
from logstream.errors import CorruptRecordError
from logstream.storage import PartitionLog, TopicConfig
from logstream.storage.files import segment_stem

CONFIG = TopicConfig(segment_bytes=1 << 16, flush_policy="never")


def abandon(log: PartitionLog) -> None:
    """Simulate a process crash: drop every handle, trim nothing, write no snapshot."""
    log.abandon()


def open_log(path: Path, *, clean: bool = False, config: TopicConfig = CONFIG) -> PartitionLog:
    return PartitionLog(path, topic="t", partition=0, config=config, clean_shutdown=clean)


def build(path: Path, n: int = 30, seed: int = 0) -> tuple[list[int], list[bytes]]:
    """Append n random batches, crash. Returns their file positions and the stored bytes."""
    rng = random.Random(seed)
    log = open_log(path)
    positions, batches = [], []
    pos = 0
    for i in range(n):
        b = make_batch(rng.randint(1, 5), value_size=rng.randint(5, 60), tag=i)
        log.append(b)
        positions.append(pos)
        pos += len(b)
    batches = [bytes(x) for x in _split(log.read(0, 10**9))]
    abandon(log)
    return positions, batches


def _split(data: bytes) -> list[bytes]:
    out, pos = [], 0
    for b in iter_batches(data):
        out.append(data[pos : pos + b.header.batch_length])
        pos += b.header.batch_length
    return out


def survivors(log: PartitionLog) -> list[bytes]:
    return _split(log.read(0, 10**9)) if log.log_end_offset else []


def _offsets_of(batches: list[bytes]) -> list[int]:
    """The base offset of each batch and, last, the offset after them all."""
    out = [0]
    for b in batches:
        out.append(out[-1] + len(next(iter(iter_batches(b)))))
    return out


@pytest.mark.parametrize("seed", range(10))
def test_garbage_is_a_torn_tail_only_after_the_last_batch_that_parses(tmp_path, seed):
    """Garbage in the last batches (nothing whole after it) is a torn tail, cut exactly at
    the first bad batch. Garbage that whole batches follow is damage: nothing is cut
    before the last good batch, reads of the damaged offsets on are refused by name, and
    appends go on after the log's old end (before: cut too, the good batches after it
    lost and their offsets given out again)."""
    template = tmp_path / "template"
    positions, batches = build(template, seed=seed)
    data_end = positions[-1] + len(batches[-1])
    offsets = _offsets_of(batches)
    rng = random.Random(1000 + seed)
    work = tmp_path / "work"
    shutil.copytree(template, work)
    seg = work / (segment_stem(0) + ".log")
    drop_index = seed % 2 == 0
    if drop_index:
        # forces a CRC check of every batch (an active segment's index lives in memory, so
        # a crashed one never wrote it: 0011; a reactivated one has its older trimmed file)
        (work / (segment_stem(0) + ".index")).unlink(missing_ok=True)
        p = rng.randrange(0, data_end + 100)
    else:  # the index is intact: garbage past the last trusted entry
        p = rng.randrange(positions[-1], data_end + 100)
    length = rng.randint(1, 16)
    with open(seg, "r+b") as f:
        f.seek(p)
        old = f.read(length)
        f.seek(p)
        f.write(bytes((o ^ rng.randint(1, 255)) for o in old.ljust(length, b"\0")))
    touched = [i for i, q in enumerate(positions) if q < p + length and q + len(batches[i]) > p]
    log = open_log(work)
    report = log.recovery_report
    if not touched:
        assert survivors(log) == batches
        assert report.bytes_truncated == p + length - data_end
        kept = batches
    elif touched[-1] < len(batches) - 1:  # whole batches follow: damage
        hit = touched[0]
        assert survivors(log) == batches[:hit]
        with pytest.raises(CorruptRecordError) as info:
            log.read(offsets[hit], 10**9)
        assert (info.value.first_offset, info.value.last_offset) == (offsets[hit], offsets[-1] - 1)
        assert report.bytes_truncated == 0
        assert log.log_end_offset == offsets[-1]
        kept = batches
    else:  # the tail: cut at the first bad batch
        hit = touched[0]
        assert survivors(log) == batches[:hit]
        assert report.bytes_truncated == max(data_end, p + length) - positions[hit]
        kept = batches[:hit]
    # the log keeps working after the last batch kept
    r = log.append(make_batch(2))
    assert r.base_offset == _offsets_of(kept)[-1]
    log.close()


def test_zeroed_tail_is_a_normal_end_or_a_cut(tmp_path):
    positions, batches = build(tmp_path / "p", n=10)
    seg = tmp_path / "p" / (segment_stem(0) + ".log")
    mid = positions[7] + 30
    with open(seg, "r+b") as f:
        f.seek(mid)
        f.write(b"\0" * (positions[9] + len(batches[9]) - mid))
    log = open_log(tmp_path / "p")
    assert survivors(log) == batches[:7]
    # reported: the non-zero bytes cut off (up to the last non-zero one)
    assert log.recovery_report.bytes_truncated == len(batches[7][:30].rstrip(b"\0"))
    assert os.path.getsize(seg) == positions[7]  # trimmed
    log.close()


def test_crash_with_untouched_tail_keeps_everything(tmp_path, caplog):
    _, batches = build(tmp_path / "p", n=12)
    log = open_log(tmp_path / "p")
    assert survivors(log) == batches
    r = log.recovery_report
    assert not r.clean_shutdown and r.bytes_truncated == 0 and r.batches_scanned == 12
    log.close()


@pytest.mark.parametrize("damage", ["delete", "garbage", "truncate"])
def test_damaged_index_of_sealed_segment_is_rebuilt(tmp_path, damage):
    config = TopicConfig(segment_bytes=1024, flush_policy="never")
    log = open_log(tmp_path / "p", config=config)
    for i in range(60):
        log.append(make_batch(2, ts=1000 + i, tag=i))
    expected = {o: log.read(o, 1) for o in range(120)}
    stamps = {t: log.offset_for_timestamp(t) for t in range(990, 1070, 3)}
    assert log.close()
    victim = tmp_path / "p" / (segment_stem(0) + ".index")
    tvictim = tmp_path / "p" / (segment_stem(0) + ".timeindex")
    if damage == "delete":
        os.unlink(victim)
        os.unlink(tvictim)
    elif damage == "garbage":
        victim.write_bytes(np.random.default_rng(1).integers(0, 255, 64, np.uint8).tobytes())
    else:
        victim.write_bytes(victim.read_bytes()[:-8])
    log = open_log(tmp_path / "p", clean=True, config=config)
    assert {o: log.read(o, 1) for o in range(120)} == expected
    assert {t: log.offset_for_timestamp(t) for t in stamps} == stamps
    assert log.segments()[0].indexes_rebuilt
    log.close()


def test_damaged_index_of_active_segment_after_crash(tmp_path):
    _, batches = build(tmp_path / "p", n=15)
    (tmp_path / "p" / (segment_stem(0) + ".index")).write_bytes(b"\xff" * 40)
    (tmp_path / "p" / (segment_stem(0) + ".timeindex")).unlink(missing_ok=True)
    log = open_log(tmp_path / "p")
    assert survivors(log) == batches
    assert log.offset_for_timestamp(0) == 0
    log.close()
