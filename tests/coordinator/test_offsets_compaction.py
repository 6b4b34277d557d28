"""Compaction of ``__consumer_offsets`` by checkpoints: a real GroupCoordinator over a real
LogManager with small segments; checkpoint, segment deletion, restart, crash mid-checkpoint,
tombstones."""

from __future__ import annotations

from pathlib import Path

import pytest

from logstream.codec import decode_batch, encode_batch
from logstream.coordinator import CoordinatorConfig, GroupCoordinator
from logstream.coordinator.offsets import OFFSETS_TOPIC, encode_checkpoint_key
from logstream.errors import KafkaStorageError
from logstream.storage import LogManager
from logstream.types import TopicPartition

from .conftest import SETTINGS

TOPIC_CONFIG = {"retention_ms": -1, "retention_bytes": -1, "segment_bytes": 4096}
CONFIG = CoordinatorConfig(
    groups=SETTINGS, offsets_topic_config=TOPIC_CONFIG, offsets_compact_min_records=200
)
TPS = [TopicPartition("orders", p) for p in range(4)]


def _open(path: Path, clock, config=CONFIG) -> tuple[LogManager, GroupCoordinator]:
    lm = LogManager.open(path, clock=clock)
    if "orders" not in lm.topics():
        lm.create_topic("orders", 4)
        for p in range(4):
            lm.get_log("orders", p).append(encode_batch([b"x"] * 1000))
    return lm, GroupCoordinator(lm, clock, config)


def _table(coord: GroupCoordinator) -> dict[str, dict[TopicPartition, tuple[int, str, int]]]:
    return {
        g: {tp: tuple(c) for tp, c in coord.fetch_offsets(g).items()}
        for g in coord.offsets.groups()
    }


def _commit_many(coord: GroupCoordinator, rounds: int, groups: int = 5) -> None:
    for i in range(rounds):
        for g in range(groups):
            coord.commit(f"g{g}", "", -1, {TPS[i % 4]: i % 1000, TPS[(i + 1) % 4]: (i * 7) % 1000})


def _offsets_log(lm: LogManager):
    return lm.get_log(OFFSETS_TOPIC, 0)


def test_delete_segments_before_deletes_whole_sealed_segments_only(tmp_path, clock):
    with LogManager.open(tmp_path, clock=clock) as lm:
        lm.create_topic("t", 1, {"segment_bytes": 1024})
        log = lm.get_log("t", 0)
        for _ in range(40):
            log.append(encode_batch([b"y" * 50] * 2))
        assert log.segment_count > 3
        assert log.delete_segments_before(0) == 0
        end = log.log_end_offset
        bases = [s.base_offset for s in log.segments()]
        # a cut inside the third segment deletes the first two only
        assert log.delete_segments_before(bases[2] + 1) == 2
        assert log.log_start_offset == bases[2]
        assert log.delete_segments_before(end + 100) == len(bases) - 3  # never the last
        assert log.segment_count == 1 and log.log_end_offset == end
        start = log.log_start_offset
    with LogManager.open(tmp_path, clock=clock) as lm:
        assert lm.get_log("t", 0).log_start_offset == start
        assert lm.get_log("t", 0).log_end_offset == end


def test_checkpoint_deletes_segments_and_restart_rebuilds_the_same_table(tmp_path, clock):
    lm, coord = _open(tmp_path, clock)
    _commit_many(coord, 300)
    log = _offsets_log(lm)
    segments_before = log.segment_count
    assert segments_before > 5 and coord.offsets.checkpoints_written == 0
    coord.expire()  # the timer: 600 records > max(200, 4 x 20 live entries)
    assert coord.offsets.checkpoints_written == 1
    assert log.log_start_offset > 0
    assert log.segment_count < segments_before
    expected = _table(coord)
    assert sum(len(t) for t in expected.values()) == 20
    coord.expire()  # nothing new: no second checkpoint
    assert coord.offsets.checkpoints_written == 1
    lm.close()

    lm, coord = _open(tmp_path, clock)
    assert _table(coord) == expected
    assert coord.offsets.records_replayed < 300  # not the 600 commits ever made
    _commit_many(coord, 10)  # and it keeps working after the restart
    lm.close()
    lm, coord2 = _open(tmp_path, clock)
    assert _table(coord2) == _table(coord)
    lm.close()


def test_repeated_checkpoints_keep_the_log_bounded(tmp_path, clock):
    lm, coord = _open(tmp_path, clock)
    sizes = []
    for _ in range(6):
        _commit_many(coord, 100)
        coord.expire()
        sizes.append(_offsets_log(lm).size_bytes)
    assert coord.offsets.checkpoints_written >= 5
    assert max(sizes[2:]) < 3 * min(sizes[2:]) + 8192
    expected = _table(coord)
    lm.close()
    lm, coord = _open(tmp_path, clock)
    assert _table(coord) == expected
    lm.close()


def test_threshold_scales_with_the_live_table(tmp_path, clock):
    lm, coord = _open(tmp_path, clock)
    for g in range(100):  # 100 groups x 4 partitions = 400 live entries
        coord.commit(f"big{g}", "", -1, {tp: 1 for tp in TPS})
    coord.expire()
    assert coord.offsets.checkpoints_written == 0  # 400 records, not > 4 x 400
    _commit_many(coord, 600, groups=2)  # +2400 records: 2800 > 1600
    coord.expire()
    assert coord.offsets.checkpoints_written == 1
    lm.close()


def test_crash_in_the_middle_of_a_checkpoint_loses_nothing(tmp_path, clock, monkeypatch):
    lm, coord = _open(tmp_path, clock)
    _commit_many(coord, 300)
    expected = _table(coord)
    log = _offsets_log(lm)
    coord.offsets.checkpoint_batch_records = 3
    real_append = log.append
    appends = []

    def append(batch):
        if len(appends) == 2:  # the "crash": the third checkpoint batch never lands
            raise KafkaStorageError("simulated crash")
        appends.append(batch)
        return real_append(batch)

    monkeypatch.setattr(log, "append", append)
    coord.expire()  # the failure is logged; the coordinator keeps working
    monkeypatch.setattr(log, "append", real_append)
    assert coord.offsets.checkpoints_written == 0
    coord.expire()  # no retry on every tick: only after as many records again
    assert coord.offsets.checkpoints_written == 0
    assert log.log_start_offset == 0  # nothing deleted
    lm.close()  # (a process crash keeps what was appended: the partial checkpoint)

    lm, coord = _open(tmp_path, clock)
    assert _table(coord) == expected
    assert coord.offsets.checkpoint_start == [-1]  # the partial one is not a checkpoint
    # newer commits after the partial checkpoint win over its restated values
    coord.commit("g0", "", -1, {TPS[0]: 999})
    expected["g0"][TPS[0]] = tuple(coord.fetch_offsets("g0")[TPS[0]])
    coord.expire()  # a complete checkpoint this time
    assert coord.offsets.checkpoints_written == 1
    lm.close()
    lm, coord = _open(tmp_path, clock)
    assert _table(coord) == expected
    assert _offsets_log(lm).log_start_offset > 0
    lm.close()


def test_checkpoint_without_its_marker_deletes_nothing_and_is_ignored(tmp_path, clock, monkeypatch):
    lm, coord = _open(tmp_path, clock)
    _commit_many(coord, 300)
    expected = _table(coord)
    log = _offsets_log(lm)
    real_append = log.append
    restated, markers = [], []

    def append(batch):
        # the records of a checkpoint land, then a "crash" before its marker
        if decode_batch(batch).key(0) == encode_checkpoint_key():
            markers.append(batch)
            raise KafkaStorageError("simulated crash")
        restated.append(batch)
        return real_append(batch)

    monkeypatch.setattr(log, "append", append)
    coord.expire()  # the checkpoint is due: it re-states the table, then fails on the marker
    monkeypatch.setattr(log, "append", real_append)
    assert restated and len(markers) == 1
    assert coord.offsets.checkpoints_written == 0
    lm.close()
    lm, coord = _open(tmp_path, clock)
    assert _table(coord) == expected
    assert coord.offsets.checkpoint_start == [-1]
    assert _offsets_log(lm).log_start_offset == 0
    lm.close()


def test_deleted_groups_and_offsets_stay_deleted_after_compaction(tmp_path, clock):
    config = CoordinatorConfig(
        groups=SETTINGS,
        offsets_topic_config=TOPIC_CONFIG,
        offsets_compact_min_records=200,
        offsets_retention_ms=60_000,
    )
    lm, coord = _open(tmp_path, clock, config)
    _commit_many(coord, 150)
    coord.delete_group("g1")
    coord.offsets.delete_offsets("g2", [TPS[0], TPS[1]])
    clock.advance(30_000)
    coord.commit("fresh", "", -1, {TPS[0]: 1})
    coord.commit("g3", "", -1, {TPS[3]: 3})  # g3 stays: committed recently
    clock.advance(40_000)
    report = coord.expire()  # g0, g2 and g4 expire; then the checkpoint
    assert sorted(report.expired_groups) == ["g0", "g2", "g4"]
    assert coord.offsets.checkpoints_written == 1
    expected = _table(coord)
    assert sorted(expected) == ["fresh", "g3"]
    _commit_many(coord, 100, groups=1)  # g0 again, after the checkpoint
    coord.delete_group("g0")  # and deleted again, by a tombstone after the checkpoint
    lm.close()
    lm, coord = _open(tmp_path, clock, config)
    assert _table(coord) == expected
    assert _offsets_log(lm).log_start_offset > 0
    lm.close()


@pytest.mark.parametrize("partitions", [3])
def test_checkpoints_per_partition_of_the_offsets_topic(tmp_path, clock, partitions):
    config = CoordinatorConfig(
        groups=SETTINGS,
        offsets_topic_config=TOPIC_CONFIG,
        offsets_compact_min_records=200,
        offsets_topic_partitions=partitions,
    )
    lm, coord = _open(tmp_path, clock, config)
    _commit_many(coord, 400, groups=9)
    coord.expire()
    assert coord.offsets.checkpoints_written >= 2
    expected = _table(coord)
    lm.close()
    lm, coord = _open(tmp_path, clock, config)
    assert _table(coord) == expected
    assert any(lm.get_log(OFFSETS_TOPIC, p).log_start_offset > 0 for p in range(partitions))
    lm.close()


def test_commits_during_a_checkpoint_are_not_held_up_and_not_lost(tmp_path, clock, monkeypatch):
    """A checkpoint re-states a big table in many batches; a commit from another thread lands
    between them (it does not wait for the whole checkpoint) and, after a restart, every key
    has its newest value, never the older one the checkpoint re-stated."""
    import threading
    import time

    lm, coord = _open(tmp_path, clock)
    _commit_many(coord, 40, groups=100)  # 400 live offsets: a checkpoint of 200 batches
    coord.offsets.checkpoint_batch_records = 2
    log = _offsets_log(lm)
    real_append = log.append
    order: list[str] = []

    def commit_and_delete() -> None:
        # g99 sorts last: its keys are re-stated *after* this commit, so a checkpoint that
        # re-stated values captured at its start would overwrite the commit on replay.
        coord.commit("g99", "", -1, {TPS[0]: 904, TPS[1]: 5})
        coord.offsets.delete_group("g98")  # also re-stated later: must stay deleted

    committer = threading.Thread(target=commit_and_delete)

    def append(batch):
        order.append("commit" if threading.current_thread() is committer else "checkpoint")
        if len(order) == 2:  # the checkpoint is under way: another thread commits now
            committer.start()
            time.sleep(0.05)  # (holding the lock) so that it is waiting for the lock
        return real_append(batch)

    monkeypatch.setattr(log, "append", append)
    coord.offsets.compact(0)
    committer.join(10)
    monkeypatch.setattr(log, "append", real_append)
    assert "commit" in order
    # the commit went in between checkpoint batches, before the marker (the last append)
    assert order.index("commit") < len(order) - 1 and order[-1] == "checkpoint"
    assert coord.offsets.checkpoints_written == 1
    expected = _table(coord)
    assert expected["g99"][TPS[0]][0] == 904 and expected["g99"][TPS[1]][0] == 5
    assert "g98" not in expected
    lm.close()
    lm, coord = _open(tmp_path, clock)
    assert _table(coord) == expected
    lm.close()
