"""A queue group when its topic changes under it, against real broker processes:
retention deletes records the group has not read, partitions are added."""

from __future__ import annotations

import json
import time
from pathlib import Path

from click.testing import CliRunner
from queue_helpers import admin, make_topic

from logstream import Admin, Producer, QueueConsumer, TopicPartition
from logstream.cli.main import main
from logstream.testing.broker import BrokerProcess


def drain_all(q: QueueConsumer, want: int, deadline_s: float = 15.0) -> list:
    got: list = []
    end = time.monotonic() + deadline_s
    while len(got) < want and time.monotonic() < end:
        for m in q.poll(0.3):
            got.append(m)
            m.ack()
    q.commit()
    return got


def test_retention_below_the_group_skips_to_the_log_start(tmp_path: Path) -> None:
    with BrokerProcess(
        tmp_path / "data", queue_tick_interval_ms=20, retention_check_interval_ms=100
    ) as broker:
        topic = "retained"
        with Admin(broker.address) as a:
            a.create_topic(topic, 1, {"segment_bytes": 1024, "retention_bytes": 2048})
        ga = admin(broker.address)
        ga.create_queue_group("slow", topics=[topic], window_size=64)
        with Producer(broker.address) as p:
            for i in range(600):
                p.send(topic, value=f"task-{i:04d}".encode(), partition=0)
                if i % 20 == 19:
                    p.flush()  # many small batches, many small segments
        tp = TopicPartition(topic, 0)
        log_start = 0
        deadline = time.monotonic() + 10
        with Admin(broker.address) as a:
            while log_start == 0 and time.monotonic() < deadline:
                log_start = a.list_offsets({tp: "earliest"})[tp]
                time.sleep(0.05)
        assert log_start > 0, "retention never deleted a segment"
        assert ga.describe_queue_group("slow").total.acknowledged == 0  # nothing read yet
        got: list = []
        lost = 0
        deadline = time.monotonic() + 15
        with QueueConsumer(broker.address, group="slow", max_records=100) as q:
            while len(got) + lost < 600 and time.monotonic() < deadline:
                for m in q.poll(0.3):
                    got.append(m)
                    m.ack()
                q.commit()
                lost = ga.describe_queue_group("slow").total.lost_to_retention
        first = min(m.offset for m in got)
        assert first >= log_start, "the group went on from the log start"
        assert len({m.offset for m in got}) == len(got)
        d = ga.describe_queue_group("slow")
        # every record is either delivered and acked or counted as lost
        assert len(got) + d.total.lost_to_retention == 600
        assert d.total.lost_to_retention >= first
        assert d.total.depth == 0


def test_partitions_added_after_the_group_are_read(qbroker: BrokerProcess, name: str) -> None:
    make_topic(qbroker.address, name, 1, 10)
    admin(qbroker.address).create_queue_group(name, topics=[name])
    with QueueConsumer(qbroker.address, group=name, max_records=50) as q:
        assert len(drain_all(q, 10)) == 10
        result = CliRunner().invoke(
            main, ["--broker", qbroker.address, "topic", "add-partitions", name, "--count", "3"]
        )
        assert result.exit_code == 0, result.output
        with Producer(qbroker.address) as p:
            for i in range(30):
                p.send(name, value=f"late-{i}".encode(), partition=i % 3)
            p.flush()
        got = drain_all(q, 30)
    assert sorted({m.partition for m in got}) == [0, 1, 2]
    assert len(got) == 30
    result = CliRunner().invoke(
        main, ["--broker", qbroker.address, "queue", "describe", name, "-o", "json"]
    )
    rows = json.loads(result.stdout)["partitions"]
    assert [r["partition"] for r in rows] == [0, 1, 2, "total"]
    assert rows[-1]["acked"] == 40 and rows[-1]["depth"] == 0


def _internal(address: str) -> set[str]:
    with Admin(address) as a:
        return {t.name for t in a.list_topics(include_internal=True) if t.internal}


def test_queue_state_topic_appears_with_the_first_queue_group(tmp_path: Path) -> None:
    with BrokerProcess(tmp_path / "data", queue_tick_interval_ms=20) as broker:
        assert "__queue_state" not in _internal(broker.address)
        broker.restart(kill=True)  # recovery without the topic
        assert "__queue_state" not in _internal(broker.address)
        make_topic(broker.address, "jobs", 1, 4)
        admin(broker.address).create_queue_group("w", topics=["jobs"])
        assert "__queue_state" in _internal(broker.address)
        with QueueConsumer(broker.address, group="w") as q:
            assert len(drain_all(q, 2, deadline_s=5)) >= 2
        broker.restart(kill=True)  # recovery from it
        d = admin(broker.address).describe_queue_group("w")
        assert d.total.acknowledged >= 2 and d.total.acknowledged + d.total.depth == 4
