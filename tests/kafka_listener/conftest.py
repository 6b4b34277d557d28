"""A real broker process with the Kafka listener on free loopback ports, for Kafka clients."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from logstream.kafka.listener import KafkaListener
from logstream.testing.broker import RunningBroker, run_broker
from logstream.testing.wait import wait_for

ROOT = str(Path(__file__).resolve().parents[2])


@dataclass(frozen=True)
class KafkaBroker:
    grpc: str  # native address
    kafka: str  # Kafka listener address (bootstrap.servers)
    data_dir: Path
    process: subprocess.Popen[str]


def start_broker(data_dir: Path, *extra: str) -> KafkaBroker:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "logstream",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--kafka-listen",
            "127.0.0.1:0",
            "--data-dir",
            str(data_dir),
            "--log-level",
            "WARNING",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    grpc = kafka = ""
    deadline = time.monotonic() + 60
    while not (grpc and kafka):
        line = proc.stdout.readline()
        if not line or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"broker did not start (exit {proc.poll()})")
        if line.startswith("logstream broker listening on "):
            grpc = line.split()[4]
        elif line.startswith("logstream kafka listener on "):
            kafka = line.split()[4]
    return KafkaBroker(grpc, kafka, data_dir, proc)


def stop_broker(broker: KafkaBroker) -> None:
    broker.process.terminate()
    try:
        broker.process.wait(15)
    except subprocess.TimeoutExpired:
        broker.process.kill()
        broker.process.wait(5)


@pytest.fixture(scope="module")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = start_broker(tmp_path_factory.mktemp("kafka-data"), "--auto-create-topics")
    try:
        yield broker
    finally:
        stop_broker(broker)


@pytest.fixture(scope="session")
def kcat() -> str:
    path = shutil.which("kcat") or shutil.which("kafkacat")
    if path is None:
        pytest.skip("kcat is not installed (make test-services installs it)")
    return path


# the project's wait (20 ms polls), under the name these tests use
wait_until = wait_for


def create_topic(broker: KafkaBroker, name: str, partitions: int = 1) -> str:
    """Create ``name`` through the native admin API (the native producer does not auto-create)."""
    from logstream.client.admin import Admin

    with Admin(broker.grpc) as admin:
        admin.create_topic(name, partitions=partitions)
    return name


@contextlib.contextmanager
def listener_in_process(
    data_dir: Path, **broker_options: Any
) -> Iterator[tuple[RunningBroker, KafkaListener]]:
    """A broker in this process (topics created on first use) with its Kafka listener on a
    free loopback port: its registries and counters can be read directly."""
    with run_broker(data_dir, auto_create_topics=True, **broker_options) as broker:
        kafka = KafkaListener(broker.broker, "127.0.0.1:0")
        kafka.start()
        try:
            yield broker, kafka
        finally:
            kafka.stop()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[RunningBroker, KafkaListener]]:
    with listener_in_process(tmp_path) as pair:
        yield pair
