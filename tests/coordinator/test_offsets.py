"""The committed-offsets table: records in __consumer_offsets, rebuilt by replay."""

from __future__ import annotations

from logstream.codec import encode_batch
from logstream.coordinator.offsets import (
    OFFSETS_TOPIC,
    CommittedOffset,
    OffsetStore,
    decode_key,
    decode_offset_value,
    encode_offset_key,
    encode_offset_value,
)
from logstream.storage import LogManager
from logstream.types import OffsetAndMetadata, TopicPartition

T0 = TopicPartition("orders", 0)
T1 = TopicPartition("orders", 1)


def test_key_and_value_round_trip():
    key = encode_offset_key("billing", TopicPartition("örders", 7))
    assert decode_key(key) == (1, "billing", TopicPartition("örders", 7))
    value = encode_offset_value(42, "note", 1234)
    assert decode_offset_value(value) == CommittedOffset(42, "note", 1234)


def test_commits_survive_a_reopen(tmp_path, clock):
    with LogManager.open(tmp_path, clock=clock) as lm:
        store = OffsetStore.open(lm, clock)
        store.commit("billing", {T0: OffsetAndMetadata(5, "m"), T1: OffsetAndMetadata(7)})
        clock.advance(1000)
        store.commit("billing", {T0: OffsetAndMetadata(9)})
        store.commit("audit", {T0: OffsetAndMetadata(1)})
    with LogManager.open(tmp_path, clock=clock) as lm:
        assert OFFSETS_TOPIC in lm.topics()
        store = OffsetStore.open(lm, clock)
        assert store.records_replayed == 4
        got = store.get("billing")
        assert got[T0] == CommittedOffset(9, "", clock.now_ms())
        assert got[T1].offset == 7
        assert store.groups() == ["audit", "billing"]
        assert store.last_commit_ms("billing") == clock.now_ms()


def test_tombstones_delete_groups_and_partitions_across_a_reopen(tmp_path, clock):
    with LogManager.open(tmp_path, clock=clock) as lm:
        store = OffsetStore.open(lm, clock)
        store.commit("a", {T0: OffsetAndMetadata(1), T1: OffsetAndMetadata(2)})
        store.commit("b", {T0: OffsetAndMetadata(3)})
        store.delete_offsets("a", [T1])
        store.delete_group("b")
        assert store.get("a") == {T0: store.get("a")[T0]}
        assert store.get("b") == {}
    with LogManager.open(tmp_path, clock=clock) as lm:
        store = OffsetStore.open(lm, clock)
        assert list(store.get("a")) == [T0]
        assert store.groups() == ["a"]
        store.commit("b", {T1: OffsetAndMetadata(4)})  # a deleted group can come back
        assert store.get("b")[T1].offset == 4


def test_foreign_records_in_the_topic_are_skipped(tmp_path, clock):
    with LogManager.open(tmp_path, clock=clock) as lm:
        store = OffsetStore.open(lm, clock)
        store.commit("a", {T0: OffsetAndMetadata(1)})
        lm.get_log(OFFSETS_TOPIC, 0).append(
            encode_batch([b"junk", None, b"\x09"], keys=[None, b"\x01\xff", b"\x07abc"])
        )
        store.commit("a", {T1: OffsetAndMetadata(2)})
    with LogManager.open(tmp_path, clock=clock) as lm:
        store = OffsetStore.open(lm, clock)
        assert {tp: c.offset for tp, c in store.get("a").items()} == {T0: 1, T1: 2}


def test_replay_of_many_batches_spanning_segments(tmp_path, clock):
    with LogManager.open(tmp_path, clock=clock) as lm:
        store = OffsetStore.open(
            lm, clock, topic_config={"segment_bytes": 4096, "retention_ms": -1}
        )
        for i in range(500):
            store.commit("g", {TopicPartition("t", i % 3): OffsetAndMetadata(i)})
        assert lm.get_log(OFFSETS_TOPIC, 0).segment_count > 3
    with LogManager.open(tmp_path, clock=clock) as lm:
        store = OffsetStore.open(lm, clock)
        assert {tp.partition: c.offset for tp, c in store.get("g").items()} == {
            0: 498,
            1: 499,
            2: 497,
        }
