"""Many partitions: what an active partition holds (file descriptors, files), how fast and
how cheaply a data directory with thousands of partitions closes and opens, and lookups by
time across many segments (docs/performance.md, Scale; decision D7)."""

from __future__ import annotations

import errno
import os

from storage_helpers import make_batch

from logstream.errors import KafkaStorageError
from logstream.storage import PartitionLog, TopicConfig, files
from logstream.storage.files import segment_stem
from logstream.storage.index import OffsetIndex, TimeIndex

SMALL = TopicConfig(segment_bytes=1 << 20, flush_policy="never", retention_ms=-1)


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def open_log(path, *, config=SMALL, clean=False):
    return PartitionLog(path, topic="t", partition=0, config=config, clean_shutdown=clean,
                        prefault_pages=False)


def test_an_active_partition_holds_two_file_descriptors(tmp_path):
    """6 before (data fd, its map's dup, and fd + map dup for each preallocated index):
    ~3,300 active partitions per 20,000 open files. The indexes now live in memory."""
    logs = [open_log(tmp_path / f"p{i}") for i in range(40)]
    before = _fds()
    for log in logs:
        log.append(make_batch(3))
    assert _fds() - before <= 2 * len(logs)
    seg = logs[0]._segments[-1]
    assert not seg.index_path.exists() and not seg.timeindex_path.exists()
    for log in logs:
        log.close()
    assert _fds() <= before


def test_active_segment_index_grows_in_memory_and_is_written_at_the_seal(tmp_path):
    log = open_log(tmp_path / "p")
    n = 300  # past the initial rows of a growable index: it doubles several times
    for i in range(n):
        log.append(make_batch(2, ts=1_000 + 10 * i))
    seg = log._segments[-1]
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


def test_full_disk_at_the_seal_keeps_the_indexes_in_memory(tmp_path, monkeypatch):
    """No preallocated index file is left to free on a full disk: a seal whose index files
    do not fit keeps them in memory (they are derived) instead of failing the close, and
    the next open rebuilds them from the log."""
    log = open_log(tmp_path / "p")
    for i in range(5):
        log.append(make_batch(2, ts=1_000 + i))
    real = files.atomic_write

    def full(path, data):
        if str(path).endswith((".index", ".timeindex")):
            raise KafkaStorageError("writing: no space") from OSError(errno.ENOSPC, "full")
        return real(path, data)

    monkeypatch.setattr(files, "atomic_write", full)
    seg = log._segments[-1]
    seg.seal()
    assert not seg.index_path.exists()
    assert log.offset_for_timestamp(1_003) == 4  # served from memory
    monkeypatch.setattr(files, "atomic_write", real)
    assert log.close()
    log = open_log(tmp_path / "p", clean=True)
    assert log.log_end_offset == 10 and log.offset_for_timestamp(1_003) == 4
    log.close()


def test_a_crashed_active_segment_is_recovered_without_index_files(tmp_path):
    log = open_log(tmp_path / "p")
    for i in range(20):
        log.append(make_batch(3, ts=5_000 + i))
    log.flush()
    for seg in log._segments:  # a crash: nothing sealed
        seg.delete_handles()
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
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "ok"]
