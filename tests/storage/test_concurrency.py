"""Topic deletion and close racing appends, reads and retention: only named errors escape."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from storage_helpers import make_batch

from logstream.errors import (
    KafkaStorageError,
    LogstreamError,
    OffsetOutOfRangeError,
    UnknownTopicOrPartitionError,
)
from logstream.storage import LogManager

SMALL = {"segment_bytes": 4096, "flush_policy": "never"}


def test_a_deleted_partition_answers_unknown_topic_and_touches_no_file(tmp_path):
    with LogManager.open(tmp_path / "d") as m:
        m.create_topic("t", 1, SMALL)
        log = m.get_log("t", 0)
        for i in range(60):
            log.append(make_batch(3, value_size=100, tag=i))
        assert log.segment_count > 1
        m.delete_topic("t")
        for call in (
            lambda: log.read(0),
            lambda: log.read(log.log_end_offset - 1),
            lambda: log.position_of(0),
            lambda: log.offset_for_timestamp(0),
            lambda: log.append(make_batch(1)),
        ):
            with pytest.raises(UnknownTopicOrPartitionError):
                call()
        assert log.enforce_retention() == 0
        assert not (tmp_path / "d" / "t-0").exists()
        assert not list((tmp_path / "d").glob("t-0*"))


def test_a_closed_partition_refuses_reads_with_a_named_error(tmp_path):
    m = LogManager.open(tmp_path / "d")
    m.create_topic("t", 1, SMALL)
    log = m.get_log("t", 0)
    for i in range(60):
        log.append(make_batch(3, value_size=100, tag=i))
    m.close()
    files_after_close = sorted(p.name for p in (tmp_path / "d" / "t-0").iterdir())
    with pytest.raises(KafkaStorageError):
        log.read(0)
    with pytest.raises(KafkaStorageError):
        log.offset_for_timestamp(0)
    # A late read must not reopen files or rebuild indexes behind the clean-shutdown marker.
    assert sorted(p.name for p in (tmp_path / "d" / "t-0").iterdir()) == files_after_close


def test_delete_topic_under_concurrent_appends_reads_and_retention(tmp_path):
    """Threads hammer one partition while it is deleted and re-created: every failure is a
    LogstreamError with a fitting class, nothing deadlocks (bounded joins)."""
    m = LogManager.open(tmp_path / "d")
    seen: Counter[str] = Counter()
    unexpected: list[BaseException] = []
    stop = threading.Event()

    def hammer(k: int) -> None:
        while not stop.is_set():
            try:
                log = m.get_log("t", 0)
                if k % 3 == 0:
                    log.append(make_batch(2, value_size=100, tag=k))
                elif k % 3 == 1:
                    log.read(max(log.log_start_offset, log.log_end_offset - 5), 2000)
                    log.offset_for_timestamp(0)
                else:
                    log.enforce_retention()
                    log.read(log.log_start_offset, 500)
                seen["ok"] += 1
                time.sleep(0.0002)  # let the deleting thread get the GIL now and then
            except (UnknownTopicOrPartitionError, OffsetOutOfRangeError) as exc:
                seen[type(exc).__name__] += 1
                time.sleep(0.0002)
            except LogstreamError as exc:  # anything else named is still wrong here
                unexpected.append(exc)
            except BaseException as exc:
                unexpected.append(exc)

    config = {**SMALL, "retention_bytes": 8192, "retention_ms": -1}
    m.create_topic("t", 1, config)
    threads = [threading.Thread(target=hammer, args=(k,), daemon=True) for k in range(6)]
    for t in threads:
        t.start()
    try:
        for _ in range(25):
            time.sleep(0.01)
            m.delete_topic("t")
            time.sleep(0.002)
            m.create_topic("t", 1, config)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not any(t.is_alive() for t in threads), "a thread is stuck (deadlock?)"
    m.close()
    assert not unexpected, unexpected[:5]
    assert seen["ok"] > 0 and seen["UnknownTopicOrPartitionError"] > 0, seen
