"""Redrive is exactly once across a broker crash between its copies and its record
(a real broker process killed with SIGKILL at that point by its test hook)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from queue_helpers import admin, make_topic

from logstream import Consumer, QueueConsumer, errors
from logstream.broker.queue_redrive import CRASH_ENV
from logstream.testing.broker import BrokerProcess


def read_all(address: str, topic: str, want: int) -> list:
    with Consumer(address, auto_offset_reset="earliest") as c:
        c.assign([(topic, 0)])
        got: list = []
        end = time.monotonic() + 5
        while len(got) < want and time.monotonic() < end:
            got += c.poll(0.3)
        got += c.poll(0.3)  # anything beyond `want` shows up too
    return got


def test_a_crash_after_the_copies_does_not_redrive_twice(tmp_path: Path) -> None:
    broker = BrokerProcess(
        tmp_path / "data", queue_tick_interval_ms=20, env={CRASH_ENV: "redrive-copied"}
    )
    with broker:
        topic = "jobs"
        make_topic(broker.address, topic, 1, 5)
        ga = admin(broker.address)
        ga.create_queue_group("w", topics=[topic])
        with QueueConsumer(broker.address, group="w", max_records=10) as q:
            got: list = []
            end = time.monotonic() + 10
            while len(got) < 5 and time.monotonic() < end:
                got += q.poll(0.3)
            for m in got:
                m.reject(reason="bad")
            assert q.commit() == []
        assert ga.describe_queue_group("w").total.dead_lettered == 5
        with pytest.raises(errors.LogstreamError):
            ga.redrive("w", execute=True)  # the broker kills itself after the copies
        assert broker.proc is not None and broker.proc.wait(10) != 0
        broker.env = {}
        broker.restart(kill=True)
        ga = admin(broker.address)
        assert ga.redrive("w", execute=True) == []  # found copied at start-up
        assert ga.redrive("w") == []
        records = read_all(broker.address, topic, 10)
        copies = [r for r in records if r.offset >= 5]
        assert sorted(r.value for r in copies) == [f"task-{i}".encode() for i in range(5)]
        marks = sorted(int(dict(r.headers)["logstream.redrive.offset"]) for r in copies)
        assert marks == [0, 1, 2, 3, 4]
        # the group hands each copy out once
        with QueueConsumer(broker.address, group="w", max_records=10) as q:
            back: list = []
            end = time.monotonic() + 10
            while len(back) < 5 and time.monotonic() < end:
                back += q.poll(0.3)
            for m in back:
                m.ack()
            assert q.commit() == []
            assert sorted(m.offset for m in back) == [5, 6, 7, 8, 9]
        # after a restart (replay, then a checkpoint's compaction) nothing goes back again
        broker.restart()
        assert admin(broker.address).redrive("w", execute=True) == []
