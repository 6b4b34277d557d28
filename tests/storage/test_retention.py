"""Retention by time and size; the log start offset moves and persists."""

from __future__ import annotations

import pytest
from storage_helpers import make_batch

from logstream.errors import OffsetOutOfRangeError
from logstream.storage import LogManager
from logstream.storage.files import LOG_START_FILE, write_checkpoint
from logstream.storage.retention import deletable_prefix

DAY = 86_400_000


def test_time_retention_deletes_old_sealed_segments(tmp_path, clock):
    with LogManager.open(tmp_path, clock=clock) as m:
        m.create_topic("t", 1, {"segment_bytes": 1024, "retention_ms": DAY})
        log = m.get_log("t", 0)
        now = clock.now_ms()
        for i in range(40):
            log.append(make_batch(2, ts=now - 3 * DAY + i, tag=i))  # old data
        for i in range(40):
            log.append(make_batch(2, ts=now + i, tag=i))  # fresh data
        segs = log.segment_count
        deleted = m.enforce_retention()
        assert deleted[("t", 0)] >= 1 and log.segment_count == segs - deleted[("t", 0)]
        start = log.log_start_offset
        assert 0 < start <= 80
        # every remaining old batch sits in the segment that also holds fresh data
        with pytest.raises(OffsetOutOfRangeError, match=f"earliest offset is {start}") as e:
            log.read(0)
        assert e.value.earliest == start
        assert log.read(start)  # readable from the new start
        clock.advance(10 * DAY)
        m.enforce_retention()
        assert log.segment_count == 1  # the active segment is never deleted
        start = log.log_start_offset
    with LogManager.open(tmp_path, clock=clock) as m:
        assert m.get_log("t", 0).log_start_offset == start


def test_size_retention_keeps_at_least_retention_bytes(tmp_path, clock):
    with LogManager.open(tmp_path, clock=clock) as m:
        m.create_topic("t", 1, {"segment_bytes": 1024, "retention_bytes": 3000, "retention_ms": -1})
        log = m.get_log("t", 0)
        for i in range(100):
            log.append(make_batch(2, tag=i))
        m.enforce_retention()
        assert log.size_bytes >= 3000
        sizes = [s.size for s in log.segments()]
        assert sum(sizes[1:]) < 3000  # deleting one more would go below the limit
        assert log.log_start_offset == log.segments()[0].base_offset


def test_interrupted_retention_is_finished_at_open(tmp_path, clock):
    with LogManager.open(tmp_path, clock=clock) as m:
        m.create_topic("t", 1, {"segment_bytes": 1024})
        log = m.get_log("t", 0)
        for i in range(60):
            log.append(make_batch(2, tag=i))
        third = log.segments()[2].base_offset
        write_checkpoint(log.dir / LOG_START_FILE, third)  # crash right after the checkpoint
    with LogManager.open(tmp_path, clock=clock) as m:
        log = m.get_log("t", 0)
        assert log.log_start_offset == third and log.segments()[0].base_offset == third


def test_deletable_prefix_model():
    sizes = [100, 100, 100, 100]
    ts = [10, 20, 5, 40]
    f = ts.__getitem__
    assert deletable_prefix(sizes, f, now_ms=100, retention_ms=85, retention_bytes=-1) == 1
    assert deletable_prefix(sizes, f, now_ms=100, retention_ms=75, retention_bytes=-1) == 3
    assert deletable_prefix(sizes, f, now_ms=10**6, retention_ms=1, retention_bytes=-1) == 3
    assert deletable_prefix(sizes, f, now_ms=0, retention_ms=-1, retention_bytes=250) == 1
    assert deletable_prefix(sizes, f, now_ms=0, retention_ms=-1, retention_bytes=0) == 3
    assert deletable_prefix([5], f, now_ms=10**6, retention_ms=0, retention_bytes=0) == 0


def test_readers_survive_concurrent_retention(tmp_path, clock):
    import threading

    with LogManager.open(tmp_path, clock=clock) as m:
        m.create_topic("t", 1, {"segment_bytes": 1024, "retention_bytes": 2048, "retention_ms": -1})
        log = m.get_log("t", 0)
        stop = threading.Event()
        errors: list[BaseException] = []

        def reader() -> None:
            while not stop.is_set():
                start = log.log_start_offset
                try:
                    log.read(start, 4096)
                except OffsetOutOfRangeError:
                    pass  # retention moved the start meanwhile: the documented answer
                except BaseException as exc:
                    errors.append(exc)
                    return

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        for i in range(400):
            log.append(make_batch(2, tag=i))
            if i % 10 == 0:
                m.enforce_retention()
        stop.set()
        for t in threads:
            t.join()
        assert not errors
