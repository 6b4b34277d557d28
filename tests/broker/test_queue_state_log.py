"""``__queue_state`` on real files: a checkpoint's compaction keeps what a group redrove,
and intents survive until their REDRIVEN record."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from logstream.broker.queue_state import QUEUE_STATE_TOPIC, QueueStateLog, RedriveIntent
from logstream.clock import SYSTEM_CLOCK
from logstream.coordinator.queues.statelog import encode_checkpoint_begin, encode_checkpoint_end
from logstream.storage import LogManager


def test_compaction_after_a_checkpoint_keeps_the_redriven_letters(tmp_path: Path) -> None:
    mgr = LogManager(tmp_path)
    try:
        # small segments so that a checkpoint can delete the ones below it (the constructor,
        # not open(): open() would raise the limits of a topic made with small batches)
        mgr.create_topic(QUEUE_STATE_TOPIC, 1, {"segment_bytes": 1024, "retention_ms": -1})
        state = QueueStateLog(mgr, SYSTEM_CLOCK)
        writer = state.writer("g")
        writer.append([b"\x01settings"])
        state.redrive_intents("g", [RedriveIntent("t", 0, 7, np.array([3, 4, 9], np.int64))])
        state.redriven("g", [3, 4, 9])
        for _ in range(40):  # fill a few segments
            writer.append([b"\x05" + bytes(100)])
        writer.append_checkpoint([[b"\x08checkpoint"]])
        assert mgr.get_log(QUEUE_STATE_TOPIC, 0).log_start_offset > 2, "nothing compacted"
        replayed = QueueStateLog(mgr, SYSTEM_CLOCK).replay()
        assert replayed.redriven["g"] == {3, 4, 9}
    finally:
        mgr.close()


def test_an_intent_round_trips() -> None:
    i = RedriveIntent("orders", 3, 1234, np.array([1, 2, 3, 10, 11], np.int64))
    back = RedriveIntent.decode(i.encode())
    assert (back.topic, back.partition, back.from_offset) == ("orders", 3, 1234)
    assert back.letters.tolist() == [1, 2, 3, 10, 11]


def test_a_checkpoint_in_several_units_is_kept_whole_by_compaction(tmp_path: Path) -> None:
    """Compaction may delete below a checkpoint's first unit (its BEGIN), never inside it:
    the floor is that unit's base even when the last unit lands segments later."""
    mgr = LogManager(tmp_path)
    try:
        mgr.create_topic(QUEUE_STATE_TOPIC, 1, {"segment_bytes": 1024, "retention_ms": -1})
        state = QueueStateLog(mgr, SYSTEM_CLOCK)
        writer = state.writer("g")
        for _ in range(20):
            writer.append([b"\x05" + bytes(100)])
        begin, end = encode_checkpoint_begin(1), encode_checkpoint_end(1, 0)
        body = [b"\x06" + bytes([i]) * 300 for i in range(12)]  # several segments' worth
        units = [[begin, body[0]], *[[b] for b in body[1:]], [end]]
        writer.append_checkpoint(units)
        plog = mgr.get_log(QUEUE_STATE_TOPIC, 0)
        assert plog.log_start_offset > 2, "nothing compacted"
        replayed = QueueStateLog(mgr, SYSTEM_CLOCK).replay()
        assert replayed.records["g"] == [begin, *body, end]
    finally:
        mgr.close()
