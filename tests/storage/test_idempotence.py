"""Idempotent producer state: duplicates, gaps, fencing; survives clean and crash reopen."""

from __future__ import annotations

import pytest
from storage_helpers import make_batch

from logstream.errors import InvalidProducerEpochError, OutOfOrderSequenceError
from logstream.storage import PartitionLog, TopicConfig

CONFIG = TopicConfig(segment_bytes=1024, flush_policy="never")


def open_log(path, clean=False):
    return PartitionLog(path, topic="t", partition=0, config=CONFIG, clean_shutdown=clean)


def pbatch(seq, count=2, pid=7, epoch=0):
    return make_batch(count, producer_id=pid, epoch=epoch, sequence=seq, tag=seq)


def test_duplicate_returns_original_offsets(tmp_path):
    log = open_log(tmp_path)
    log.append(make_batch(3))  # non-idempotent noise
    first = log.append(pbatch(0))
    log.append(pbatch(2))
    dup = log.append(pbatch(0))
    assert dup.duplicate and (dup.base_offset, dup.last_offset) == (
        first.base_offset, first.last_offset)
    assert log.log_end_offset == 7  # nothing written
    log.close()


def test_gap_and_fencing(tmp_path):
    log = open_log(tmp_path)
    log.append(pbatch(0))
    with pytest.raises(OutOfOrderSequenceError):
        log.append(pbatch(5))
    log.append(pbatch(0, epoch=1))  # new epoch starts at 0
    with pytest.raises(InvalidProducerEpochError):
        log.append(pbatch(2, epoch=0))
    with pytest.raises(OutOfOrderSequenceError):
        log.append(pbatch(3, epoch=2))  # a new epoch must start at 0
    assert log.log_end_offset == 4
    log.close()


def test_only_last_five_batches_are_remembered(tmp_path):
    log = open_log(tmp_path)
    for i in range(7):
        log.append(pbatch(2 * i))
    assert log.append(pbatch(4)).duplicate  # batch 2 of 7 is among the last five
    with pytest.raises(OutOfOrderSequenceError):
        log.append(pbatch(0))  # too old to be recognised
    log.close()


@pytest.mark.parametrize("crash", [False, True])
def test_state_survives_reopen(tmp_path, crash):
    log = open_log(tmp_path)
    originals = [log.append(pbatch(2 * i)) for i in range(20)]  # rolls several segments
    log.append(pbatch(0, pid=9, epoch=3))
    assert log.segment_count > 1
    if crash:
        for seg in log._segments:
            seg.delete_handles()
    else:
        log.close()
    log = open_log(tmp_path, clean=not crash)
    assert log.recovery_report.producers == 2
    dup = log.append(pbatch(38))
    assert dup.duplicate and dup.base_offset == originals[-1].base_offset
    with pytest.raises(OutOfOrderSequenceError):
        log.append(pbatch(41))
    with pytest.raises(InvalidProducerEpochError):
        log.append(pbatch(2, pid=9, epoch=2))
    assert not log.append(pbatch(40)).duplicate
    log.close()


def test_crash_without_any_snapshot_rebuilds_from_headers(tmp_path):
    log = PartitionLog(tmp_path, topic="t", partition=0,
                       config=TopicConfig(segment_bytes=1 << 20, flush_policy="never"))
    for i in range(10):
        log.append(pbatch(2 * i))
    for seg in log._segments:
        seg.delete_handles()
    assert not (tmp_path / "producer-state.json").exists()
    log = open_log(tmp_path)
    assert log.append(pbatch(18)).duplicate
    log.close()
