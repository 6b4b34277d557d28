"""The ``__queue_state`` topic takes batches as large as a checkpoint of many parked rows,
also in a data directory created before it did."""

from __future__ import annotations

from pathlib import Path

from logstream.broker.queue_state import QUEUE_STATE_CONFIG, QUEUE_STATE_TOPIC, QueueStateLog
from logstream.clock import SYSTEM_CLOCK
from logstream.storage import LogManager

BIG = int(QUEUE_STATE_CONFIG["max_batch_bytes"])


def test_a_new_state_topic_takes_large_batches(tmp_path: Path) -> None:
    manager = LogManager(tmp_path)
    try:
        state = QueueStateLog.open(manager, SYSTEM_CLOCK)
        assert QUEUE_STATE_TOPIC not in manager.topics()  # created by the first write
        writer = state.writer("g")
        writer.append([b"\x00" * (4 << 20)])  # a 4 MiB checkpoint unit: over the old 1 MiB
        assert manager.topic(QUEUE_STATE_TOPIC).config.max_batch_bytes == BIG
    finally:
        manager.close()


def test_an_old_state_topic_gets_the_large_limit_when_opened(tmp_path: Path) -> None:
    manager = LogManager(tmp_path)
    manager.create_topic(QUEUE_STATE_TOPIC, 1, {"segment_bytes": 16 << 20, "retention_ms": -1})
    manager.close()
    manager = LogManager(tmp_path)
    try:
        QueueStateLog.open(manager, SYSTEM_CLOCK)
        config = manager.topic(QUEUE_STATE_TOPIC).config
        assert (config.max_batch_bytes, config.segment_bytes) == (BIG, BIG)
        assert config.retention_ms == -1  # the other settings stay
    finally:
        manager.close()
