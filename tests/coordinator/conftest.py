"""Fixtures: a ManualClock, a real LogManager in a tmp dir, and a GroupCoordinator over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from logstream.codec import encode_batch
from logstream.coordinator import CoordinatorConfig, GroupCoordinator, GroupSettings
from logstream.storage import LogManager
from logstream.testing.clock import ManualClock

SETTINGS = GroupSettings(
    min_session_timeout_ms=100, default_session_timeout_ms=10_000, heartbeat_interval_ms=1_000
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def storage(tmp_path: Path, clock: ManualClock) -> Iterator[LogManager]:
    lm = LogManager.open(tmp_path / "data", clock=clock)
    yield lm
    lm.close()


@pytest.fixture
def coord(storage: LogManager, clock: ManualClock) -> GroupCoordinator:
    return GroupCoordinator(storage, clock, CoordinatorConfig(groups=SETTINGS))


def produce(storage: LogManager, topic: str, partition: int, n: int, ts: int) -> None:
    """Append ``n`` records stamped ``ts``, ``ts+1``, ... to one partition."""
    storage.get_log(topic, partition).append(
        encode_batch([b"v%d" % i for i in range(n)], timestamps=[ts + i for i in range(n)])
    )
