"""The gRPC port's quotas on the Kafka listener, with confluent-kafka over SASL PLAIN: a
principal over its quota is slowed to it (within 10%) through ``throttle_time_ms`` (the
client waits, the broker holds its next request); other principals are not slowed."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import confluent_kafka as ck
import pytest
from click.testing import CliRunner

from logstream.broker.security.credentials import CredentialStore
from logstream.cli.main import main
from tests.kafka_listener.conftest import KafkaBroker, start_broker, stop_broker, wait_until

# rates measured against wall-clock bounds (0.9x-1.1x): run alone (docs/decisions/0040)
pytestmark = [pytest.mark.slow, pytest.mark.serial]
TOPIC = "metered"
RECORD = b"x" * 10_000
QUOTA = 300_000  # bytes/s


@dataclass
class Metered:
    broker: KafkaBroker
    tokens: dict[str, str]


def _quota(data: Path, *args: str) -> None:
    result = CliRunner().invoke(main, ["quota", "set", *args, "--data-dir", str(data)])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Metered]:
    data = tmp_path_factory.mktemp("kafka-quotas") / "data"
    store = CredentialStore(data)
    tokens = {name: store.add(name) for name in ("alice", "bob", "carol")}
    _quota(data, "alice", "--produce-bytes-per-s", str(QUOTA))
    _quota(data, "carol", "--fetch-bytes-per-s", str(QUOTA))
    broker = start_broker(data, "--auth", "--auto-create-topics")
    try:
        yield Metered(broker, tokens)
    finally:
        stop_broker(broker)


def _conf(env: Metered, user: str, throttles: list[int] | None = None) -> dict:
    conf = {
        "bootstrap.servers": env.broker.kafka,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "PLAIN",
        "sasl.username": user,
        "sasl.password": env.tokens[user],
    }
    if throttles is not None:
        conf["throttle_cb"] = lambda event: throttles.append(event.throttle_time)
    return conf


def _produce_rate(producer: ck.Producer, nbytes: int) -> float:
    failed: list[object] = []
    start = time.monotonic()
    for _ in range(nbytes // len(RECORD)):
        producer.produce(
            TOPIC, RECORD, partition=0, on_delivery=lambda e, _m: e and failed.append(e)
        )
        producer.poll(0)
    assert producer.flush(60) == 0
    elapsed = time.monotonic() - start
    assert not failed, failed[:3]
    return nbytes / elapsed


def _producer(env: Metered, user: str, throttles: list[int]) -> ck.Producer:
    # Requests of at most ~40 kB: the request that crosses the quota is stored at once and
    # only what follows waits, so the quota holds to within one request.
    return ck.Producer(
        {**_conf(env, user, throttles), "linger.ms": 1, "batch.size": 40_000, "acks": 1}
    )


def test_a_producer_over_its_quota_is_slowed_to_it_and_others_are_not(metered: Metered) -> None:
    alice_throttles: list[int] = []
    producer = _producer(metered, "alice", alice_throttles)
    _produce_rate(producer, 100_000)  # past the burst
    rate = _produce_rate(producer, 1_200_000)
    producer.poll(0)  # the last throttle events
    assert 0.9 * QUOTA <= rate <= 1.1 * QUOTA, rate
    assert alice_throttles and max(alice_throttles) > 0, alice_throttles
    bob_throttles: list[int] = []
    producer = _producer(metered, "bob", bob_throttles)
    free = _produce_rate(producer, 900_000)
    producer.poll(0)
    assert free > 2 * QUOTA, free
    assert not any(bob_throttles), bob_throttles


def test_a_consumer_over_its_fetch_quota_is_slowed_to_it(metered: Metered) -> None:
    producer = _producer(metered, "bob", [])
    _produce_rate(producer, 1_000_000)  # 100 records of 10 kB
    throttles: list[int] = []
    consumer = ck.Consumer(
        {
            **_conf(metered, "carol", throttles),
            "group.id": f"g-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            # small answers (two records): the throttle applies after each
            "max.partition.fetch.bytes": 20_000,
        }
    )
    consumer.assign([ck.TopicPartition(TOPIC, 0, 0)])
    got = 0
    start = time.monotonic()

    def all_read() -> bool:
        nonlocal got
        got += sum(1 for m in consumer.consume(100, 0.5) if not m.error())
        return got >= 100

    wait_until(all_read, timeout=30, what="100 records")
    elapsed = time.monotonic() - start
    consumer.close()
    rate = got * len(RECORD) / elapsed
    assert rate <= 1.1 * QUOTA, rate
    assert any(throttles), throttles


def test_a_client_that_ignores_the_throttle_is_held_to_the_quota(tmp_path: Path) -> None:
    """Raw frames, pipelined without waiting the reported throttle: the listener holds each
    next request of the principal, so the stored rate still keeps to the quota."""
    import socket
    import struct
    from types import SimpleNamespace

    from benchmarks.bench_kafka_requests import produce_frame
    from logstream.broker.security.quotas import Quotas
    from logstream.broker.security.throttle import Throttle
    from logstream.kafka import KafkaListener
    from logstream.testing.broker import run_broker
    from tests.kafka_listener.test_bad_input import read_frame

    store = CredentialStore(tmp_path / "users")
    token = store.add("alice")
    quotas = Quotas(tmp_path / "users")
    quotas.set("alice", {"produce_bytes_per_s": QUOTA})
    throttle = Throttle(quotas)
    security = SimpleNamespace(
        store=store, tls=None, acls=None, auth=SimpleNamespace(throttle=throttle)
    )
    frames = [produce_frame(i, RECORD * 4) for i in range(30)]  # 30 x 40 kB
    with run_broker(tmp_path / "broker", auto_create_topics=True) as running:
        listener = KafkaListener(running.broker, "127.0.0.1:0", security=security)  # type: ignore[arg-type]
        listener.start()
        try:
            with socket.create_connection(("127.0.0.1", listener.port), timeout=30) as sock:
                mechanism = struct.pack(">h", 5) + b"PLAIN"
                head = struct.pack(">hhih", 17, 0, 1, 1) + b"t"
                sock.sendall(struct.pack(">i", len(head) + len(mechanism)) + head + mechanism)
                assert struct.unpack_from(">ih", read_frame(sock)) == (1, 0)
                plain = f"\0alice\0{token}".encode()
                sock.sendall(struct.pack(">i", len(plain)) + plain)
                assert read_frame(sock) == b""
                sock.sendall(frames[0])  # past the burst
                read_frame(sock)
                start = time.monotonic()
                sock.sendall(b"".join(frames[1:]))  # all at once: no waiting on our side
                throttles = []
                for _ in frames[1:]:
                    answer = read_frame(sock)
                    throttles.append(struct.unpack_from(">i", answer, len(answer) - 4)[0])
                elapsed = time.monotonic() - start
        finally:
            listener.stop()
    rate = sum(len(f) for f in frames[1:]) / elapsed
    assert 0.9 * QUOTA <= rate <= 1.1 * QUOTA, rate
    assert max(throttles) > 0, throttles  # throttle_time_ms, the last field of the answer
    assert throttle.stalled_s > 0.8 * elapsed, (throttle.stalled_s, elapsed)
