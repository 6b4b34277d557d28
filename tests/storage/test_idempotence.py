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
        first.base_offset,
        first.last_offset,
    )
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
        for seg in log.segments():
            seg.abandon()
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
    log = PartitionLog(
        tmp_path,
        topic="t",
        partition=0,
        config=TopicConfig(segment_bytes=1 << 20, flush_policy="never"),
    )
    for i in range(10):
        log.append(pbatch(2 * i))
    for seg in log.segments():
        seg.abandon()
    assert not (tmp_path / "producer-state.json").exists()
    log = open_log(tmp_path)
    assert log.append(pbatch(18)).duplicate
    log.close()


def test_idle_producers_expire_and_leave_the_snapshot(tmp_path, clock):
    """A producer id whose last append (broker time) is older than
    producer_id_expiration_ms is forgotten by the periodic retention pass: its state stops
    growing memory and snapshots, and a late retry is then taken as new data (Kafka's
    producer.id.expiration.ms). The records' own timestamps do not matter: they are years
    old here."""
    import json

    from logstream.storage import files
    from logstream.storage.log import PRODUCER_EXPIRY_CHECK_MS

    day = 86_400_000
    config = TopicConfig(
        segment_bytes=1024, flush_policy="never", retention_ms=-1, producer_id_expiration_ms=day
    )
    log = PartitionLog(tmp_path, topic="t", partition=0, config=config, clock=clock)
    log.append(pbatch(0, pid=7))
    log.append(pbatch(0, pid=8))
    clock.advance(day - 1)
    log.enforce_retention()  # idle just under a day: both kept
    assert log.append(pbatch(0, pid=7)).duplicate  # (a duplicate is not an append)
    log.append(pbatch(2, pid=8))  # 8 writes again: seen now
    clock.advance(PRODUCER_EXPIRY_CHECK_MS)
    log.enforce_retention()  # 7 idle for a day and a minute, 8 for a minute
    again = log.append(pbatch(0, pid=7))
    assert not again.duplicate and again.base_offset == 6  # a new copy: 7 was forgotten
    with pytest.raises(OutOfOrderSequenceError):
        log.append(pbatch(9, pid=8))  # 8 is still known: a gap is refused
    log.close()
    snapshot = json.loads((tmp_path / files.PRODUCER_STATE_FILE).read_bytes())
    assert set(snapshot["producers"]) == {"7", "8"}  # 7 is back, as a fresh producer
    assert [b[0] for b in snapshot["producers"]["7"]["batches"]] == [0]
    assert snapshot["producers"]["7"]["seen"] == clock.now_ms()


def test_an_active_producer_with_old_record_timestamps_is_not_expired(tmp_path, clock):
    """A backfill writes records stamped long ago; it is still an active producer."""
    day = 86_400_000
    config = TopicConfig(
        segment_bytes=1024, flush_policy="never", retention_ms=-1, producer_id_expiration_ms=day
    )
    clock.advance(30 * day)  # broker time a month after the records' timestamps
    log = PartitionLog(tmp_path, topic="t", partition=0, config=config, clock=clock)
    first = log.append(pbatch(0, pid=7))
    clock.advance(60_000)
    log.enforce_retention()
    retry = log.append(pbatch(0, pid=7))
    assert retry.duplicate and retry.base_offset == first.base_offset
    log.close()


def test_rebuilt_producer_state_counts_as_seen_at_open(tmp_path, clock):
    """After a crash the state is rebuilt from batch headers, which carry no append time:
    a rebuilt producer counts as seen at the open, so expiry can only come later."""
    day = 86_400_000
    config = TopicConfig(
        segment_bytes=1024, flush_policy="never", retention_ms=-1, producer_id_expiration_ms=day
    )
    log = PartitionLog(tmp_path, topic="t", partition=0, config=config, clock=clock)
    first = log.append(pbatch(0, pid=7))
    log.segments()[-1].active_file.map.flush()  # what a crash keeps: the data, no snapshot
    del log  # no close: no clean marker, no producer snapshot
    clock.advance(2 * day)
    log = PartitionLog(tmp_path, topic="t", partition=0, config=config, clock=clock)
    log.enforce_retention()  # two days after the append, but just rebuilt: kept
    retry = log.append(pbatch(0, pid=7))
    assert retry.duplicate and retry.base_offset == first.base_offset
    log.close()


def test_producer_id_expiration_must_be_positive():
    from logstream.errors import InvalidConfigError

    with pytest.raises(InvalidConfigError, match="producer_id_expiration_ms"):
        TopicConfig(producer_id_expiration_ms=0)
    kafka_style = TopicConfig.from_dict({"producer.id.expiration.ms": "60000"})
    assert kafka_style.producer_id_expiration_ms == 60000
