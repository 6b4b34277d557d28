"""Quotas: a principal over its quota is slowed to it (within 10%), others are not."""

from __future__ import annotations

import time
from pathlib import Path

from click.testing import CliRunner

from logstream.broker.security.credentials import CredentialStore
from logstream.cli.main import main
from logstream.client import Admin, Consumer, Producer
from logstream.testing.broker import run_broker

RECORD = b"x" * 10_000
QUOTA = 300_000  # bytes/s


def _produce_rate(address: str, token: str, topic: str, nbytes: int) -> float:
    producer = Producer(address, token=token, batch_bytes=20_000, linger_ms=1)
    start = time.monotonic()
    for _ in range(nbytes // len(RECORD)):
        producer.send(topic, value=RECORD, partition=0)
    producer.flush(60)
    elapsed = time.monotonic() - start
    producer.close()
    return nbytes / elapsed


def test_produce_quota_slows_only_its_principal(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = CredentialStore(data)
    alice, bob = store.add("alice"), store.add("bob")
    set_quota = ["quota", "set", "alice", "--produce-bytes-per-s", str(QUOTA)]
    result = CliRunner().invoke(main, [*set_quota, "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    listed = CliRunner().invoke(main, ["quota", "list", "--data-dir", str(data)])
    assert listed.output.startswith("alice\tproduce 300000 B/s\tfetch unlimited")
    with run_broker(data, auth=True) as b:
        admin = Admin(b.address, token=bob)
        admin.create_topic("metered")
        admin.close()
        _produce_rate(b.address, alice, "metered", 100_000)  # past the burst
        rate = _produce_rate(b.address, alice, "metered", 900_000)
        assert 0.9 * QUOTA <= rate <= 1.1 * QUOTA, rate
        free = _produce_rate(b.address, bob, "metered", 900_000)
        assert free > 2 * QUOTA, free
        assert b.server.security.quotas.throttled_s > 1.0


def test_fetch_quota(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = CredentialStore(data)
    alice, bob = store.add("alice"), store.add("bob")
    result = CliRunner().invoke(
        main,
        ["quota", "set", "*", "--fetch-bytes-per-s", str(QUOTA), "--data-dir", str(data)],
    )
    assert result.exit_code == 0, result.output
    with run_broker(data, auth=True) as b:
        admin = Admin(b.address, token=bob)
        admin.create_topic("metered")
        admin.close()
        producer = Producer(b.address, token=bob)
        for _ in range(100):
            producer.send("metered", value=RECORD, partition=0)
        producer.flush(60)
        producer.close()
        consumer = Consumer(
            b.address, token=alice, auto_offset_reset="earliest", max_partition_fetch_bytes=20_000
        )
        consumer.assign([("metered", 0)])
        got = 0
        start = time.monotonic()
        deadline = start + 30
        while got < 100 and time.monotonic() < deadline:
            got += len(consumer.poll(timeout=1.0))
        elapsed = time.monotonic() - start
        consumer.close()
        assert got == 100
        rate = 100 * len(RECORD) / elapsed
        assert rate <= 1.1 * QUOTA, rate
        assert rate >= 0.6 * QUOTA, rate  # the consumer's prefetch start-up is in the time
