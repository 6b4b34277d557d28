"""kcat (librdkafka) against the Kafka listener: metadata, produce, consume, offsets."""

from __future__ import annotations

import subprocess
import time

import pytest

from logstream.client import Consumer, Producer
from tests.kafka_listener.conftest import KafkaBroker, create_topic


def run(kcat: str, broker: KafkaBroker, *args: str, input: str | None = None) -> str:
    done = subprocess.run(
        [kcat, "-b", broker.kafka, *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def topic(kafka_broker: KafkaBroker, request: pytest.FixtureRequest) -> str:
    name = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")[:60]
    return create_topic(kafka_broker, name, partitions=2)


def test_metadata_lists_the_broker_and_topics(
    kcat: str, kafka_broker: KafkaBroker, topic: str
) -> None:
    out = run(kcat, kafka_broker, "-L")
    assert f"broker 0 at {kafka_broker.kafka}" in out
    assert f'topic "{topic}" with 2 partitions' in out
    assert "__consumer_offsets" not in out or "internal" in out


def test_produce_with_keys_and_headers_is_read_by_the_native_consumer(
    kcat: str, kafka_broker: KafkaBroker, topic: str
) -> None:
    lines = "".join(f"k{i}:value-{i}\n" for i in range(20))
    run(kcat, kafka_broker, "-P", "-t", topic, "-p", "1", "-K:", "-H", "trace=abc", input=lines)
    with Consumer(kafka_broker.grpc, auto_offset_reset="earliest") as consumer:
        consumer.assign([(topic, 1)])
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 20 and time.monotonic() < deadline:
            got.extend(consumer.poll(1.0))
    assert [(r.offset, r.key, r.value) for r in got] == [
        (i, f"k{i}".encode(), f"value-{i}".encode()) for i in range(20)
    ]
    assert all(dict(r.headers) == {"trace": b"abc"} for r in got)


def test_consume_to_the_end_and_the_last_ten(
    kcat: str, kafka_broker: KafkaBroker, topic: str
) -> None:
    with Producer(kafka_broker.grpc, linger_ms=0) as producer:
        for i in range(30):
            producer.send(
                topic,
                f"v{i}".encode(),
                key=f"k{i}".encode(),
                partition=0,
                headers=[("n", str(i).encode())],
            )
        producer.flush(10)
    out = run(kcat, kafka_broker, "-C", "-t", topic, "-p", "0", "-e", "-f", "%o %k %s %h\n")
    assert out.splitlines() == [f"{i} k{i} v{i} n={i}" for i in range(30)]
    last = run(kcat, kafka_broker, "-C", "-t", topic, "-p", "0", "-o", "-10", "-e", "-f", "%o\n")
    assert last.split() == [str(i) for i in range(20, 30)]


def test_offsets_by_timestamp(kcat: str, kafka_broker: KafkaBroker, topic: str) -> None:
    base = 1_700_000_000_000
    with Producer(kafka_broker.grpc, linger_ms=0) as producer:
        for i in range(10):
            producer.send(topic, b"x", partition=0, timestamp_ms=base + i * 1000)
            producer.flush(10)
    out = run(kcat, kafka_broker, "-Q", "-t", f"{topic}:0:{base + 4500}")
    assert f"{topic} [0] offset 5" in out
    out = run(kcat, kafka_broker, "-Q", "-t", f"{topic}:0:{base + 60_000}")
    assert f"{topic} [0] offset 10" in out  # the log end, where Kafka says -1
