"""Fixtures for queue-group tests over the wire: one real broker process for the module
(tests use fresh topic and group names), helpers to create topics and produce."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from logstream import Admin, GroupAdmin, Producer
from logstream.testing.broker import BrokerProcess


@pytest.fixture(scope="session")
def qbroker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    data = tmp_path_factory.mktemp("queue-broker") / "data"
    with BrokerProcess(data, queue_tick_interval_ms=20) as proc:
        yield proc


@pytest.fixture
def name() -> str:
    return f"q-{uuid.uuid4().hex[:10]}"


def make_topic(address: str, topic: str, partitions: int, count: int, *, keys: int = 0) -> None:
    """Create ``topic`` and write ``count`` records ``b"task-<i>"`` (keys ``k<i % keys>``)."""
    with Admin(address) as admin:
        admin.create_topic(topic, partitions=partitions)
    if not count:
        return
    with Producer(address) as p:
        for i in range(count):
            key = f"k{i % keys}".encode() if keys else None
            p.send(topic, value=f"task-{i}".encode(), key=key, partition=i % partitions)
        p.flush()


def admin(address: str) -> GroupAdmin:
    return GroupAdmin(address)


WORKER = Path(__file__).with_name("worker.py")
