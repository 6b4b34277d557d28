"""Fixtures for broker tests: a real broker process on a free loopback port, raw gRPC stubs.

``broker`` is one broker subprocess shared by the session (tests use unique topic names);
set ``LOGSTREAM_TEST_INPROCESS=1`` to run it in-process instead (quicker to debug).
Tests that kill or restart a broker start their own :class:`BrokerProcess`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from broker_helpers import Client

from logstream.testing.broker import BrokerProcess, run_broker

SHARED_CONFIG: dict[str, Any] = {"topic_defaults": {"max_batch_bytes": 64 * 1024}}
"""The shared broker's config: a small max batch so the too-large test stays cheap."""


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The shared broker: an object with ``.address``."""
    data_dir = tmp_path_factory.mktemp("shared-broker") / "data"
    if os.environ.get("LOGSTREAM_TEST_INPROCESS"):
        with run_broker(data_dir, **SHARED_CONFIG) as running:
            yield running
    else:
        with BrokerProcess(data_dir, **SHARED_CONFIG) as proc:
            yield proc


@pytest.fixture
def client(broker: Any) -> Iterator[Client]:
    c = Client(broker.address)
    yield c
    c.close()


@pytest.fixture
def topic() -> str:
    """A fresh topic name (not yet created)."""
    return f"t-{uuid.uuid4().hex[:10]}"
