"""Per-partition costs that must stay small with many partitions: the active segment's disk
reservation grows ahead of the cursor (not segment_bytes up front), a new segment does not
fsync its directory on the append path, its maps do not read ahead, and a flush syncs the
data map only (docs/performance.md, Scale)."""

from __future__ import annotations

import ctypes
import errno
import os

import pytest
from storage_helpers import eio, make_batch, mounted_tmpfs

from logstream.codec import iter_batches
from logstream.errors import KafkaStorageError
from logstream.storage import LogManager, PartitionLog, TopicConfig, files, libc, prefault
from logstream.storage import active_file as segment_mod

BIG = TopicConfig(segment_bytes=64 << 20, flush_policy="never", retention_ms=-1)


def open_log(path, *, config=BIG, prefault_pages=True, clean=False):
    return PartitionLog(
        path,
        topic="t",
        partition=0,
        config=config,
        prefault_pages=prefault_pages,
        clean_shutdown=clean,
    )


def _resident(mm, start: int, end: int) -> int:
    mincore = libc.function("mincore", [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p])
    assert mincore is not None
    n = (end - start) // prefault.PAGE
    vec = (ctypes.c_ubyte * n)()
    assert mincore(libc.map_address(mm) + start, end - start, vec) == 0
    return sum(v & 1 for v in vec)


def test_reserve_goal_bounds():
    cap = 64 << 20
    assert segment_mod.reserve_goal(0, cap) == segment_mod.RESERVE_MIN
    assert segment_mod.reserve_goal(3 << 20, cap) == 6 << 20  # as much again as it holds
    assert segment_mod.reserve_goal(40 << 20, cap) == 56 << 20  # at most RESERVE_MAX ahead
    assert segment_mod.reserve_goal(50 << 20, cap) == cap  # never past the capacity
    assert segment_mod.reserve_goal(100, 256 << 10) == 256 << 10  # small segment: all of it


def test_reservation_stays_ahead_of_the_cursor_and_far_below_capacity(tmp_path):
    log = open_log(tmp_path / "p")
    log.append(make_batch(10, value_size=100))
    seg = log.segments()[-1]
    st = os.stat(seg.log_path)
    assert st.st_size == BIG.segment_bytes  # mapped in full ...
    assert st.st_blocks * 512 <= 2 * segment_mod.RESERVE_MIN  # ... but ~1 MiB on disk
    batch = make_batch(1000, value_size=1000)  # ~1 MB
    for _ in range(20):
        log.append(batch)
        lead = seg.active_file.reserved - seg.size
        assert lead >= min(max(seg.size, segment_mod.RESERVE_MIN), segment_mod.RESERVE_MAX) // 2
        assert seg.active_file.reserved <= seg.capacity
        assert os.stat(seg.log_path).st_blocks * 512 >= seg.active_file.reserved  # really allocated
    assert seg.active_file.reserved < seg.capacity
    assert prefault.shared().idle()
    # the prefault thread never runs past the reservation
    assert seg.active_file.populated <= seg.active_file.reserved
    log.close()
    # Sealed: trimmed to the data; reopened and appended to: the reservation starts again
    # from the data's end.
    log = open_log(tmp_path / "p", clean=True)
    log.append(batch)
    seg = log.segments()[-1]
    assert seg.size < seg.active_file.reserved <= segment_mod.reserve_goal(seg.size, seg.capacity)
    offsets = [int(o) for b in iter_batches(log.read(0, 1 << 30)) for o in b.offsets]
    assert offsets == list(range(10 + 21 * 1000))
    log.close()


def test_reservation_that_cannot_grow_is_a_named_error_with_nothing_written(tmp_path, file_ops):
    log = open_log(tmp_path / "p", prefault_pages=False)
    log.append(make_batch(10))
    seg = log.segments()[-1]
    file_ops.fail["fallocate"] = OSError(errno.ENOSPC, "No space left on device")
    batch = make_batch(900, value_size=1000)  # ~0.9 MB
    size0 = seg.size
    # Inside the 1 MiB reservation: written although the reservation could not grow.
    assert log.append(batch).base_offset == 10
    with pytest.raises(KafkaStorageError):  # past it: refused, nothing written
        log.append(batch)
    assert log.log_end_offset == 910 and seg.size == size0 + len(batch)
    assert seg.active_file.reserved == segment_mod.RESERVE_MIN
    del file_ops.fail["fallocate"]
    assert log.append(batch).base_offset == 910
    offsets = [int(o) for b in iter_batches(log.read(0, 1 << 30)) for o in b.offsets]
    assert offsets == list(range(1810))
    log.close()


@pytest.fixture
def small_disk(tmp_path):
    with mounted_tmpfs(tmp_path / "mnt", "4m") as mnt:
        yield mnt


def test_disk_full_with_a_segment_larger_than_the_disk(small_disk):
    """8 MiB segments on a 4 MiB disk: appends work until the disk is full (the reservation
    grows in chunks), then a named error, never a SIGBUS; what was acknowledged reads back.
    The indexes (derived data) may not fit on the full disk: they are then kept in memory
    and rebuilt at the next open, which must not fail for want of them."""
    m = LogManager.open(small_disk / "data")
    m.create_topic("t", 1, {"segment_bytes": 8 << 20, "flush_policy": "never"})
    log = m.get_log("t", 0)
    acked = 0
    with pytest.raises(KafkaStorageError):
        for i in range(10_000):
            acked = log.append(make_batch(20, value_size=200, tag=i)).last_offset + 1
    assert acked > 5000  # over a megabyte went in before the disk filled up
    offsets = [int(o) for b in iter_batches(log.read(0, 1 << 30)) for o in b.offsets]
    assert offsets == list(range(acked))
    with pytest.raises(KafkaStorageError):
        log.append(make_batch(20, value_size=200))
    try:
        m.close()
    except KafkaStorageError:
        pass  # the seal's trimmed index needs a few free KB too; the next open recovers
    with LogManager.open(small_disk / "data") as m2:
        log2 = m2.get_log("t", 0)
        assert log2.log_end_offset == acked
        offsets = [int(o) for b in iter_batches(log2.read(0, 1 << 30)) for o in b.offsets]
        assert offsets == list(range(acked))


def test_new_segment_fsyncs_its_directory_at_the_first_flush_not_at_creation(tmp_path, monkeypatch):
    calls: list[str] = []
    real = files.fsync_dir
    monkeypatch.setattr(files, "fsync_dir", lambda p: (calls.append(str(p)), real(p)))
    log = open_log(tmp_path / "p")
    log.append(make_batch(10))
    assert calls == []  # the append path did not fsync a directory
    log.flush()
    assert calls == [str(tmp_path / "p")]
    log.append(make_batch(10))
    log.flush()
    assert len(calls) == 1  # once per segment
    log.close()


def test_seal_of_an_unflushed_segment_makes_its_entry_durable(tmp_path):
    log = open_log(tmp_path / "p")
    log.append(make_batch(10))
    active = log.segments()[-1].active_file
    assert not active.dir_synced
    log.close()
    assert active.dir_synced


def test_flush_syncs_the_data_map_only(tmp_path, file_ops):
    log = open_log(tmp_path / "p")
    log.append(make_batch(10))
    seg = log.segments()[-1]
    log.flush()
    assert file_ops.calls["msync"] == [seg.active_file.map]


def test_first_append_does_not_read_ahead_the_segment(tmp_path):
    """A write fault in a file map reads around the page (up to read_ahead_kb, 8 MiB on the
    benchmark VM): 2 ms and megabytes of page cache for each new partition. MADV_RANDOM."""
    log = open_log(
        tmp_path / "p",
        config=TopicConfig(segment_bytes=8 << 20, flush_policy="never"),
        prefault_pages=False,
    )
    log.append(make_batch(10))
    seg = log.segments()[-1]
    assert _resident(seg.active_file.map, 0, seg.active_file.reserved) <= 4
    assert not seg.index_path.exists() and not seg.timeindex_path.exists()  # in memory (0011)
    log.close()


def test_a_growing_segment_gets_its_readahead_back(tmp_path, monkeypatch):
    """MADV_RANDOM only while the segment is small: page-at-a-time write faults cost a big
    partition ~35 % of its back-to-back append rate."""
    advised = []
    real = files.normal_readahead
    monkeypatch.setattr(files, "normal_readahead", lambda mm: (advised.append(mm), real(mm)))
    log = open_log(tmp_path / "p", prefault_pages=False)
    log.append(make_batch(10))
    seg = log.segments()[-1]
    assert not seg.active_file.readahead and advised == []
    batch = make_batch(300, value_size=1000)  # ~0.3 MB
    while seg.size < segment_mod.READAHEAD_FROM:
        log.append(batch)
    log.append(batch)
    assert seg.active_file.readahead and advised == [seg.active_file.map]
    log.close()


def test_close_makes_all_partitions_durable_with_one_syncfs(tmp_path, file_ops):
    """Closing 5,000 partitions took ~7 fsyncs each (> 10 s: a supervisor's SIGKILL, then a
    full recovery at the next start). Now the seals skip their syncs and one syncfs covers
    them, before the clean-shutdown marker."""
    m = LogManager.open(tmp_path / "d")
    m.create_topic("t", 20, {"segment_bytes": 1 << 20})
    for p in range(20):
        m.get_log("t", p).append(make_batch(5))
    syncfs, fsyncs = file_ops.calls["syncfs"], file_ops.calls["fsync"]
    before = len(syncfs), len(fsyncs)  # the open's own syncfs, the topic's metadata
    m.close()
    assert len(syncfs) == before[0] + 1
    assert len(fsyncs) - before[1] <= 2  # the marker's own atomic write, for any count
    assert (tmp_path / "d" / files.CLEAN_SHUTDOWN_FILE).exists()
    with LogManager.open(tmp_path / "d") as m2:
        assert all(r.clean_shutdown for r in m2.recovery_reports.values())
        assert [m2.get_log("t", p).log_end_offset for p in range(20)] == [5] * 20


def test_a_failed_syncfs_at_close_leaves_no_clean_marker(tmp_path, file_ops):
    m = LogManager.open(tmp_path / "d")
    m.create_topic("t", 3, {"segment_bytes": 1 << 20})
    for p in range(3):
        m.get_log("t", p).append(make_batch(5))
    file_ops.fail["syncfs"] = eio()
    m.close()
    assert not (tmp_path / "d" / files.CLEAN_SHUTDOWN_FILE).exists()
    del file_ops.fail["syncfs"]
    with LogManager.open(tmp_path / "d") as m2:  # recovered, data intact
        assert not any(r.clean_shutdown for r in m2.recovery_reports.values())
        assert [m2.get_log("t", p).log_end_offset for p in range(3)] == [5] * 3


def test_other_threads_still_sync_while_a_close_defers(tmp_path):
    seen = []
    with files.deferred_sync(tmp_path):
        import threading

        t = threading.Thread(target=lambda: seen.append(files.sync_deferred()))
        t.start()
        t.join()
        assert files.sync_deferred() or not files.file_ops().has_syncfs()
    assert seen == [False] and not files.sync_deferred()
