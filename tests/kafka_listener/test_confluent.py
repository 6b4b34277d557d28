"""confluent-kafka (librdkafka) clients against the Kafka listener."""

from __future__ import annotations

import time
from typing import Any

import pytest

from logstream.client import Consumer, Producer
from tests.kafka_listener.conftest import KafkaBroker, create_topic

ck = pytest.importorskip("confluent_kafka")


def kafka_consume(
    broker: KafkaBroker, topic: str, partition: int, count: int, **conf: Any
) -> list[Any]:
    """``count`` messages from offset 0 of one partition, with a plain assigned consumer."""
    consumer = ck.Consumer(
        {
            "bootstrap.servers": broker.kafka,
            "group.id": "unused",
            "enable.auto.commit": False,
            **conf,
        }
    )
    try:
        consumer.assign([ck.TopicPartition(topic, partition, 0)])
        got: list[Any] = []
        deadline = time.monotonic() + 30
        while len(got) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            got.append(msg)
        return got
    finally:
        consumer.close()


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_idempotent_producer_with_delivery_reports_and_every_codec(
    kafka_broker: KafkaBroker, codec: str
) -> None:
    topic = f"ck-produce-{codec}"
    reports: list[Any] = []
    producer = ck.Producer(
        {
            "bootstrap.servers": kafka_broker.kafka,
            "enable.idempotence": True,
            "compression.type": codec,
            "linger.ms": 5,
        }
    )
    for i in range(200):
        producer.produce(
            topic,
            value=b"v%d" % i,
            key=b"k%d" % (i % 7),
            partition=0,
            headers=[("i", str(i).encode())],
            timestamp=1_700_000_000_000 + i,
            on_delivery=lambda err, msg: reports.append((err, msg.offset())),
        )
    assert producer.flush(30) == 0
    assert [err for err, _ in reports if err is not None] == []
    assert sorted(off for _, off in reports) == list(range(200))
    with Consumer(kafka_broker.grpc, auto_offset_reset="earliest") as consumer:
        consumer.assign([(topic, 0)])
        got: list[Any] = []
        deadline = time.monotonic() + 20
        while len(got) < 200 and time.monotonic() < deadline:
            got.extend(consumer.poll(1.0))
    assert [(r.offset, r.key, r.value, r.timestamp_ms, dict(r.headers)) for r in got] == [
        (i, b"k%d" % (i % 7), b"v%d" % i, 1_700_000_000_000 + i, {"i": str(i).encode()})
        for i in range(200)
    ]


@pytest.mark.parametrize("codec", [None, "zstd", "lz4"])
def test_native_records_are_read_by_confluent_kafka(
    kafka_broker: KafkaBroker, codec: str | None
) -> None:
    topic = create_topic(kafka_broker, f"native-to-ck-{codec}")
    with Producer(kafka_broker.grpc, linger_ms=0, compression=codec) as producer:
        for i in range(50):
            producer.send(
                topic,
                None if i == 3 else b"value-%d" % i,
                key=None if i % 2 else b"key-%d" % i,
                partition=0,
                headers=[("a", b"1"), ("b", str(i).encode())] if i % 5 == 0 else None,
                timestamp_ms=1_600_000_000_000 + i,
            )
        producer.flush(10)
    got = kafka_consume(kafka_broker, topic, 0, 50)
    assert [m.offset() for m in got] == list(range(50))
    for i, m in enumerate(got):
        assert m.key() == (None if i % 2 else b"key-%d" % i)
        assert m.value() == (None if i == 3 else b"value-%d" % i)
        assert m.timestamp() == (ck.TIMESTAMP_CREATE_TIME, 1_600_000_000_000 + i)
        assert (m.headers() or []) == ([("a", b"1"), ("b", str(i).encode())] if i % 5 == 0 else [])


def test_consumer_waits_for_new_records_and_reads_big_values(kafka_broker: KafkaBroker) -> None:
    topic = create_topic(kafka_broker, "ck-long-poll")
    consumer = ck.Consumer(
        {
            "bootstrap.servers": kafka_broker.kafka,
            "group.id": "unused",
            "fetch.wait.max.ms": 5000,
            "enable.auto.commit": False,
        }
    )
    try:
        with Producer(kafka_broker.grpc, linger_ms=0) as producer:
            producer.send(topic, b"first", partition=0)
            producer.flush(10)
        consumer.assign([ck.TopicPartition(topic, 0, 1)])
        consumer.poll(0.5)  # the fetcher starts and waits at the end of the log
        started = time.monotonic()
        with Producer(kafka_broker.grpc, linger_ms=0) as producer:
            producer.send(topic, b"x" * 300_000, partition=0)
            producer.flush(10)
        msg = None
        while msg is None and time.monotonic() - started < 20:
            msg = consumer.poll(0.2)
        assert msg is not None and msg.error() is None
        assert msg.offset() == 1 and msg.value() == b"x" * 300_000
        assert time.monotonic() - started < 4.0  # woken by the append, not the 5 s wait
    finally:
        consumer.close()


def test_list_offsets_earliest_latest(kafka_broker: KafkaBroker) -> None:
    topic = create_topic(kafka_broker, "ck-watermarks")
    with Producer(kafka_broker.grpc, linger_ms=0) as producer:
        for _ in range(7):
            producer.send(topic, b"v", partition=0)
        producer.flush(10)
    consumer = ck.Consumer({"bootstrap.servers": kafka_broker.kafka, "group.id": "unused"})
    try:
        assert consumer.get_watermark_offsets(ck.TopicPartition(topic, 0), timeout=10) == (0, 7)
    finally:
        consumer.close()
