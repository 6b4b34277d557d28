"""Consumer groups of Kafka clients: real logstream groups (describe, commits, lag), members
killed and replaced, and a native consumer resuming from a Kafka client's commits."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from logstream.client import Consumer, Producer
from logstream.client.group_admin import GroupAdmin
from tests.kafka_listener.conftest import KafkaBroker, create_topic, wait_until

ck = pytest.importorskip("confluent_kafka")
MEMBER = str(Path(__file__).with_name("group_member.py"))


def produce(broker: KafkaBroker, topic: str, partitions: int, count: int, start: int = 0) -> None:
    with Producer(broker.grpc, linger_ms=0) as producer:
        for i in range(start, start + count):
            producer.send(topic, b"v%d" % i, partition=i % partitions)
        producer.flush(10)


def test_a_confluent_group_commits_and_a_native_consumer_resumes(kafka_broker: KafkaBroker) -> None:
    topic = create_topic(kafka_broker, "grp-resume", 3)
    produce(kafka_broker, topic, 3, 60)
    consumer = ck.Consumer(
        {
            "bootstrap.servers": kafka_broker.kafka,
            "group.id": "resume",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.subscribe([topic])
        seen: list[Any] = []
        deadline = time.monotonic() + 30
        while len(seen) < 60 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                seen.append(msg)
        assert len(seen) == 60
        consumer.commit(asynchronous=False)
        with GroupAdmin(kafka_broker.grpc) as admin:
            desc = admin.describe_group("resume")
            assert len(desc.members) == 1 and desc.state == "Stable"
            assert sorted(tp.partition for tp in desc.members[0].assignment) == [0, 1, 2]
            assert {(p.partition, p.committed, p.lag) for p in desc.partitions} == {
                (0, 20, 0),
                (1, 20, 0),
                (2, 20, 0),
            }
    finally:
        consumer.close()
    produce(kafka_broker, topic, 3, 30, start=60)
    with Consumer(kafka_broker.grpc, group="resume", auto_offset_reset="earliest") as native:
        native.subscribe([topic])
        got: list[Any] = []
        deadline = time.monotonic() + 30
        while len(got) < 30 and time.monotonic() < deadline:
            got.extend(native.poll(0.5))
    assert sorted(r.value for r in got) == sorted(b"v%d" % i for i in range(60, 90))


class Member:
    def __init__(self, broker: KafkaBroker, topic: str, group: str) -> None:
        env = dict(os.environ)
        self.proc = subprocess.Popen(
            [sys.executable, MEMBER, broker.kafka, topic, group],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.assigned: list[int] = []
        self.records: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def drain(self) -> None:
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return
            if line.startswith("ASSIGNED"):
                parts = line.split(" ", 1)[1] if " " in line else ""
                self.assigned = [int(p) for p in parts.split(",") if p]
            elif line.startswith("RECORD"):
                self.records.append(line.split()[3])

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


@pytest.mark.slow
def test_three_member_processes_share_partitions_and_take_over_a_killed_one(
    kafka_broker: KafkaBroker,
) -> None:
    topic = create_topic(kafka_broker, "grp-three", 6)
    members = [Member(kafka_broker, topic, "three") for _ in range(3)]
    try:

        def balanced() -> bool:
            for m in members:
                m.drain()
            owned = sorted(p for m in members for p in m.assigned)
            return owned == list(range(6)) and all(len(m.assigned) == 2 for m in members)

        wait_until(balanced, 60, "three members with two partitions each")
        produce(kafka_broker, topic, 6, 60)

        def all_read(n: int, alive: list[Member]) -> bool:
            for m in alive:
                m.drain()
            return len({r for m in members for r in m.records}) >= n

        wait_until(lambda: all_read(60, members), 30, "60 records read")
        members[0].kill()

        def taken_over() -> bool:
            for m in members[1:]:
                m.drain()
            return sorted(p for m in members[1:] for p in m.assigned) == list(range(6))

        wait_until(taken_over, 60, "the survivors to own all six partitions")
        produce(kafka_broker, topic, 6, 60, start=60)
        wait_until(lambda: all_read(120, members[1:]), 30, "the next 60 records read")
        got = {r for m in members for r in m.records}
        assert got == {f"v{i}" for i in range(120)}
        with GroupAdmin(kafka_broker.grpc) as admin:
            desc = wait_until(
                lambda: (d := admin.describe_group("three")) and len(d.members) == 2 and d,
                30,
                "describe to show two members",
            )
            assert sum(p.lag for p in desc.partitions) == 0
    finally:
        for m in members:
            if m.proc.poll() is None:
                m.proc.kill()
                m.proc.wait(10)


def test_kcat_balanced_consume(kcat: str, kafka_broker: KafkaBroker) -> None:
    topic = create_topic(kafka_broker, "grp-kcat", 2)
    produce(kafka_broker, topic, 2, 20)
    proc = subprocess.Popen(
        [
            kcat,
            "-b",
            kafka_broker.kafka,
            "-G",
            "kcat-group",
            "-u",
            "-o",
            "beginning",
            "-f",
            "%p %o %s\n",
            topic,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.strip())

    threading.Thread(target=read, daemon=True).start()
    got: list[str] = []

    def twenty() -> bool:
        while not lines.empty():
            got.append(lines.get())
        return len(got) >= 20

    try:
        wait_until(twenty, 30, "kcat -G to print 20 records")
        with GroupAdmin(kafka_broker.grpc) as admin:
            desc = wait_until(
                lambda: (d := admin.describe_group("kcat-group")) and len(d.members) == 1 and d,
                30,
                "kcat to show up as a member",
            )
            assert sorted(tp.partition for tp in desc.members[0].assignment) == [0, 1]
    finally:
        proc.terminate()
        proc.wait(10)
    assert sorted(line.split()[2] for line in got) == sorted(f"v{i}" for i in range(20))


def test_kafka_python_produces_and_consumes_in_a_group(kafka_broker: KafkaBroker) -> None:
    kafka = pytest.importorskip("kafka")
    topic = create_topic(kafka_broker, "grp-kafka-python", 2)
    producer = kafka.KafkaProducer(bootstrap_servers=kafka_broker.kafka, linger_ms=0)
    for i in range(40):
        producer.send(topic, value=b"kp%d" % i, key=b"k%d" % i, headers=[("h", b"1")])
    producer.flush(30)
    producer.close()
    consumer = kafka.KafkaConsumer(
        topic,
        bootstrap_servers=kafka_broker.kafka,
        group_id="kp-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20000,
    )
    got = []
    for msg in consumer:
        got.append(msg)
        if len(got) == 40:
            break
    consumer.commit()
    consumer.close()
    assert sorted(m.value for m in got) == sorted(b"kp%d" % i for i in range(40))
    assert all(m.headers == [("h", b"1")] for m in got)
    with GroupAdmin(kafka_broker.grpc) as admin:
        desc = admin.describe_group("kp-group")
    assert sum(p.committed for p in desc.partitions) == 40


def test_aiokafka_produces_and_consumes_in_a_group(kafka_broker: KafkaBroker) -> None:
    import asyncio

    aiokafka = pytest.importorskip("aiokafka")
    topic = create_topic(kafka_broker, "grp-aiokafka", 2)

    async def scenario() -> list[Any]:
        producer = aiokafka.AIOKafkaProducer(
            bootstrap_servers=kafka_broker.kafka, compression_type="gzip"
        )
        await producer.start()
        try:
            for i in range(30):
                await producer.send_and_wait(topic, b"ak%d" % i, key=b"k", headers=[("h", b"2")])
        finally:
            await producer.stop()
        consumer = aiokafka.AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_broker.kafka,
            group_id="ak-group",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        got: list[Any] = []
        try:
            async with asyncio.timeout(30):
                async for msg in consumer:
                    got.append(msg)
                    if len(got) == 30:
                        break
            await consumer.commit()
        finally:
            await consumer.stop()
        return got

    got = asyncio.run(scenario())
    assert [m.value for m in got] == [b"ak%d" % i for i in range(30)]  # one key: one partition
    assert all(m.headers == (("h", b"2"),) or list(m.headers) == [("h", b"2")] for m in got)
    with GroupAdmin(kafka_broker.grpc) as admin:
        desc = admin.describe_group("ak-group")
    assert sum(p.committed for p in desc.partitions) == 30
