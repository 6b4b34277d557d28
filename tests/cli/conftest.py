"""CLI fixtures."""

from __future__ import annotations

import pytest

from logstream.replay.memory import MemorySource, make_records
from logstream.types import TopicPartition


@pytest.fixture
def two_partitions() -> MemorySource:
    """orders-0 at even seconds, orders-1 at odd seconds, 10 records each."""
    base = 1_714_557_600_000
    return MemorySource(
        {
            TopicPartition("orders", 0): make_records(
                "orders", 0, [base + 2000 * i for i in range(10)]
            ),
            TopicPartition("orders", 1): make_records(
                "orders", 1, [base + 2000 * i + 1000 for i in range(10)]
            ),
        }
    )
