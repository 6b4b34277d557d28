"""Fixtures for queue-group tests over the wire: one real broker process for the module
(tests use fresh topic and group names), helpers to create topics and produce."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from logstream.testing.broker import BrokerProcess


@pytest.fixture(scope="session")
def qbroker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    data = tmp_path_factory.mktemp("queue-broker") / "data"
    with BrokerProcess(data, queue_tick_interval_ms=20) as proc:
        yield proc


@pytest.fixture
def name() -> str:
    return f"q-{uuid.uuid4().hex[:10]}"
