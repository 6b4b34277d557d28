"""Many partitions: what an active partition holds (file descriptors, files), how fast and
how cheaply a data directory with thousands of partitions closes and opens, and lookups by
time across many segments (docs/performance.md, Scale; decision 0011)."""

from __future__ import annotations

import errno
import os

import pytest
from storage_helpers import make_batch

from logstream.errors import KafkaStorageError
from logstream.storage import LogManager, PartitionLog, TopicConfig, files
from logstream.storage.files import segment_stem
from logstream.storage.index import OffsetIndex, TimeIndex

SMALL = TopicConfig(segment_bytes=1 << 20, flush_policy="never", retention_ms=-1)


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def open_log(path, *, config=SMALL, clean=False):
    return PartitionLog(
        path, topic="t", partition=0, config=config, clean_shutdown=clean, prefault_pages=False
    )


def test_an_active_partition_holds_two_file_descriptors(tmp_path):
    """6 before (data fd, its map's dup, and fd + map dup for each preallocated index):
    ~3,300 active partitions per 20,000 open files. The indexes now live in memory."""
    logs = [open_log(tmp_path / f"p{i}") for i in range(40)]
    before = _fds()
    for log in logs:
        log.append(make_batch(3))
    assert _fds() - before <= 2 * len(logs)
    seg = logs[0].segments()[-1]
    assert not seg.index_path.exists() and not seg.timeindex_path.exists()
    for log in logs:
        log.close()
    assert _fds() <= before


def test_active_segment_index_grows_in_memory_and_is_written_at_the_seal(tmp_path):
    log = open_log(tmp_path / "p")
    n = 300  # past the initial rows of a growable index: it doubles several times
    for i in range(n):
        log.append(make_batch(2, ts=1_000 + 10 * i))
    seg = log.segments()[-1]
    assert seg._oi.entries == n and seg._ti.entries == n
    assert [log.read(o, 1)[:0] == b"" for o in (0, 299, 599)]
    assert log.offset_for_timestamp(1_000 + 10 * 150) == 300
    assert log.record_for_timestamp(1_000 + 10 * 150 + 1) == (301, 1_000 + 10 * 150 + 1)
    seg.seal()  # what a roll does
    oi = OffsetIndex.open_readonly(seg.index_path)
    ti = TimeIndex.open_readonly(seg.timeindex_path)
    assert oi.entries == n and ti.entries == n
    assert [int(x) for x in oi.column(0)] == list(range(0, 2 * n, 2))
    oi.close()
    ti.close()
    log.close()


def test_full_disk_at_the_seal_keeps_the_indexes_in_memory(tmp_path, file_ops):
    """No preallocated index file is left to free on a full disk: a seal whose index files
    do not fit keeps them in memory (they are derived) instead of failing the close, and
    the next open rebuilds them from the log."""
    log = open_log(tmp_path / "p")
    for i in range(5):
        log.append(make_batch(2, ts=1_000 + i))
    file_ops.fail["write"] = OSError(errno.ENOSPC, "No space left on device")
    seg = log.segments()[-1]
    seg.seal()  # its only writes are the two index files
    assert not seg.index_path.exists()
    assert log.offset_for_timestamp(1_003) == 4  # served from memory
    del file_ops.fail["write"]
    assert log.close()
    log = open_log(tmp_path / "p", clean=True)
    assert log.log_end_offset == 10 and log.offset_for_timestamp(1_003) == 4
    log.close()


def test_a_crashed_active_segment_is_recovered_without_index_files(tmp_path):
    log = open_log(tmp_path / "p")
    for i in range(20):
        log.append(make_batch(3, ts=5_000 + i))
    log.flush()
    for seg in log.segments():  # a crash: nothing sealed
        seg.abandon()
    assert not (tmp_path / "p" / (segment_stem(0) + ".index")).exists()
    log = open_log(tmp_path / "p")
    assert log.log_end_offset == 60 and log.recovery_report.batches_scanned == 20
    assert log.offset_for_timestamp(5_010) == 24
    log.close()


def test_many_partitions_open_under_a_low_descriptor_limit(tmp_path):
    """LogManager raises RLIMIT_NOFILE's soft limit to the hard one; and 2 fds per active
    partition fit where 6 did not."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import resource, sys
        sys.path.insert(0, {os.getcwd()!r})
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (1000, hard))
        from storage_helpers import make_batch
        from logstream.storage import LogManager
        m = LogManager.open({str(tmp_path / "d")!r}, prefault_pages=False)
        print(resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard, flush=True)
        resource.setrlimit(resource.RLIMIT_NOFILE, (1000, hard))  # now really low
        m.create_topic("t", 400, {{"segment_bytes": 65536}})
        b = make_batch(1)
        for p in range(400):
            m.get_log("t", p).append(b)
        m.close()
        print("ok", flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "ok"]


def _manager_with(path, partitions: int, per_partition: int = 1):
    m = LogManager.open(path, prefault_pages=False)
    m.create_topic("t", partitions, {"segment_bytes": 1 << 20, "flush_policy": "never"})
    for p in range(partitions):
        for i in range(per_partition):
            m.get_log("t", p).append(make_batch(2, ts=1_000 + i, tag=p))
    return m


def test_clean_close_parks_active_segments_untrimmed_and_frees_no_blocks(tmp_path, file_ops):
    """Trimming at close (ftruncate of the reserved tail, two index files per partition)
    cost ~1 ms per partition on ext4 with `discard` and did not overlap across threads: 5,000
    partitions took 8-9 s to stop. A clean close now truncates nothing and creates no index
    file; the marker records each parked segment's end."""
    m = _manager_with(tmp_path / "d", 30, per_partition=3)
    truncated_before = len(file_ops.calls["ftruncate"])  # sizing the new segments
    m.close()
    assert file_ops.calls["ftruncate"][truncated_before:] == []
    assert list((tmp_path / "d").glob("t-*/*index")) == []
    seg = tmp_path / "d" / "t-7" / (segment_stem(0) + ".log")
    assert os.path.getsize(seg) == 1 << 20  # still at capacity
    m = LogManager.open(tmp_path / "d", prefault_pages=False)
    log = m.get_log("t", 7)
    r = log.recovery_report
    assert r.clean_shutdown and r.batches_scanned == 0 and log.log_end_offset == 6
    assert log.offset_for_timestamp(1_002) == 2  # indexes rebuilt from the log on first use
    assert [int(o) for o in _offsets(log.read(0, 1 << 20))] == list(range(6))
    log.append(make_batch(2, ts=2_000))  # reactivated in place
    m.close()
    m = LogManager.open(tmp_path / "d", prefault_pages=False)
    log = m.get_log("t", 7)
    assert log.recovery_report.clean_shutdown and log.log_end_offset == 8
    assert log.offset_for_timestamp(2_000) == 6
    m.close()


def _offsets(data: bytes) -> list[int]:
    from logstream.codec import iter_batches

    return [int(o) for b in iter_batches(data) for o in b.offsets]


def test_a_parked_segment_is_trimmed_when_a_roll_seals_it(tmp_path):
    m = _manager_with(tmp_path / "d", 1, per_partition=4)
    m.close()
    m = LogManager.open(tmp_path / "d", prefault_pages=False)
    m.alter_topic_config("t", {"segment_bytes": 4096})  # the next append rolls
    log = m.get_log("t", 0)
    log.append(make_batch(50, value_size=100, ts=9_000))
    first = tmp_path / "d" / "t-0" / (segment_stem(0) + ".log")
    assert log.segment_count == 2
    assert os.path.getsize(first) == log.segments()[0].size  # trimmed, index files written
    assert (tmp_path / "d" / "t-0" / (segment_stem(0) + ".index")).exists()
    m.close()
    m = LogManager.open(tmp_path / "d", prefault_pages=False)
    log = m.get_log("t", 0)
    assert log.log_end_offset == 58 and _offsets(log.read(0, 1 << 20)) == list(range(58))
    assert log.offset_for_timestamp(9_000) == 8
    m.close()


def test_a_marker_that_does_not_match_the_file_means_recovery(tmp_path):
    import json

    m = _manager_with(tmp_path / "d", 2, per_partition=3)
    m.close()
    marker = tmp_path / "d" / files.CLEAN_SHUTDOWN_FILE
    doc = json.loads(marker.read_bytes())
    doc["untrimmed"]["t-1"][2] += 5  # a wrong next offset
    marker.write_text(json.dumps(doc))
    m = LogManager.open(tmp_path / "d", prefault_pages=False)
    assert m.recovery_reports[("t", 0)].clean_shutdown
    r = m.recovery_reports[("t", 1)]
    assert not r.clean_shutdown and r.batches_scanned == 3 and r.log_end_offset == 6
    m.close()
    marker.write_bytes(b"{not json")
    m = LogManager.open(tmp_path / "d", prefault_pages=False)
    assert not any(r.clean_shutdown for r in m.recovery_reports.values())
    assert m.get_log("t", 1).log_end_offset == 6
    m.close()


def test_a_crash_after_a_clean_open_recovers_a_parked_segment(tmp_path):
    m = _manager_with(tmp_path / "d", 1, per_partition=3)
    m.close()
    m = LogManager.open(tmp_path / "d", prefault_pages=False)
    log = m.get_log("t", 0)
    log.append(make_batch(2, ts=5_000))
    log.flush()
    m.abandon()  # a crash
    m = LogManager.open(tmp_path / "d", prefault_pages=False)
    log = m.get_log("t", 0)
    assert not log.recovery_report.clean_shutdown and log.log_end_offset == 8
    assert log.offset_for_timestamp(5_000) == 6
    m.close()


def test_recovery_at_open_syncs_once_and_a_failed_syncfs_fails_the_open(tmp_path, file_ops):
    """Crash recovery of 5,000 partitions took 17 s, mostly ~5 fsyncs per partition
    (truncate, index files, directories). The open now defers them to one syncfs, and
    refuses to open if that fails (nothing may be acknowledged on top of an unsynced
    recovery)."""
    m = _manager_with(tmp_path / "d", 10, per_partition=2)
    for plog in m.all_logs():
        plog.flush()
    m.abandon()  # a crash
    file_ops.calls.clear()
    m = LogManager.open(tmp_path / "d", prefault_pages=False)
    assert len(file_ops.calls["syncfs"]) == 1 and file_ops.calls["fsync"] == []
    assert not any(r.clean_shutdown for r in m.recovery_reports.values())
    assert [m.get_log("t", p).log_end_offset for p in range(10)] == [4] * 10
    m.abandon()  # crash again
    file_ops.fail["syncfs"] = OSError(errno.EIO, "Input/output error")
    with pytest.raises(KafkaStorageError):
        LogManager.open(tmp_path / "d", prefault_pages=False)


def test_crash_recovery_reads_only_the_written_part_of_a_big_segment(tmp_path, monkeypatch):
    """A crashed 64 MiB active segment holding a few KB was read whole (and its zero tail
    scanned for non-zero bytes): 64 MiB per partition. Holes are skipped now, and a clean
    zero tail is not truncated (nothing to free, nothing to discard)."""
    big = TopicConfig(segment_bytes=64 << 20, flush_policy="never")
    log = open_log(tmp_path / "p", config=big)
    for i in range(10):
        log.append(make_batch(3, ts=1_000 + i))
    log.flush()
    for seg in log.segments():
        seg.abandon()
    read = []
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, pos: (read.append(n), real(fd, n, pos))[1])
    log = open_log(tmp_path / "p", config=big)
    assert log.log_end_offset == 30 and log.recovery_report.bytes_truncated == 0
    assert sum(read) <= 4 << 20  # the written pages (and a few populated ones), not 64 MiB
    assert os.path.getsize(tmp_path / "p" / (segment_stem(0) + ".log")) == 64 << 20
    assert log.offset_for_timestamp(1_005) == 9
    log.append(make_batch(1))
    assert log.close()  # trims
    assert os.path.getsize(tmp_path / "p" / (segment_stem(0) + ".log")) == log.segments()[0].size


def _many_segments(path, n_segments: int, *, shuffle: bool = False) -> list[int]:
    """A log of ``n_segments`` one-batch segments; returns each batch's max timestamp."""
    import random

    cfg = TopicConfig(segment_bytes=1024, flush_policy="never", retention_ms=-1)
    log = open_log(path, config=cfg)
    stamps = [10_000 + 10 * i for i in range(n_segments)]
    if shuffle:
        random.Random(7).shuffle(stamps)
    for ts in stamps:
        log.append(make_batch(3, value_size=200, ts=ts - 2))  # records ts-2 .. ts
    assert log.segment_count == n_segments
    log.close()
    return stamps


def _count_touches(monkeypatch):
    from logstream.storage import segment as segment_mod

    touched: list[int] = []
    prop = segment_mod.Segment.max_timestamp
    lookup = segment_mod.Segment.offset_for_timestamp
    monkeypatch.setattr(
        segment_mod.Segment,
        "max_timestamp",
        property(lambda self: (touched.append(self.base_offset), prop.fget(self))[1]),
    )
    monkeypatch.setattr(
        segment_mod.Segment,
        "offset_for_timestamp",
        lambda self, t: (touched.append(self.base_offset), lookup(self, t))[1],
    )
    return touched


def test_lookup_by_time_touches_one_segment_not_every_earlier_one(tmp_path, monkeypatch):
    """offset_for_timestamp walked the segments one by one up to the answer (O(segments)
    per lookup); now a bisect over the running max finds the segment. The running max is
    built once, lazily; after that a lookup touches at most 2 segments whatever n is."""
    for n in (64, 512):
        _many_segments(tmp_path / f"p{n}", n)
        log = open_log(tmp_path / f"p{n}", clean=True)
        touched = _count_touches(monkeypatch)
        assert log.offset_for_timestamp(10_000) == 0  # builds the running max
        for k in (1, n // 3, n // 2, n - 2, n - 1):
            touched.clear()
            assert log.offset_for_timestamp(10_000 + 10 * k) == 3 * k
            assert len(touched) <= 4, (n, k, touched)  # max + lookup of 1-2 segments
        touched.clear()
        assert log.record_for_timestamp(10_000 + 10 * (n - 1) - 1) == (
            3 * (n - 1) + 1,
            10_000 + 10 * (n - 1) - 1,
        )
        assert len(touched) <= 4
        assert log.offset_for_timestamp(10_000 + 10 * n) is None
        monkeypatch.undo()
        log.close()


def test_lookup_by_time_with_unordered_timestamps_matches_a_linear_scan(tmp_path):
    stamps = _many_segments(tmp_path / "p", 120, shuffle=True)
    log = open_log(tmp_path / "p", clean=True)
    for t in range(9_990, 10_000 + 10 * 121, 7):
        want = next((3 * i for i, ts in enumerate(stamps) if ts >= t), None)
        assert log.offset_for_timestamp(t) == want, t
    # retention resets the running max (it included the deleted segments)
    log.config = TopicConfig(segment_bytes=1024, retention_ms=-1, retention_bytes=40 * 400)
    assert log.enforce_retention() > 0
    first = log.log_start_offset // 3
    for t in range(9_990, 10_000 + 10 * 121, 7):
        want = next((3 * i for i, ts in enumerate(stamps) if i >= first and ts >= t), None)
        assert log.offset_for_timestamp(t) == want, t
    log.close()


def test_an_idle_partition_holds_no_fd_after_a_clean_open(tmp_path):
    _manager_with(tmp_path / "d", 30, per_partition=2).close()
    before = _fds()
    m = LogManager.open(tmp_path / "d", prefault_pages=False)
    assert _fds() - before <= 2  # the lock file (and nothing per partition)
    assert m.get_log("t", 3).read(0)  # reopens its file on demand
    m.close()
