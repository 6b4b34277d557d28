"""Fixtures and helpers for the storage tests (real files in tmp_path)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from logstream.codec import encode_batch  # noqa: E402
from logstream.testing.clock import ManualClock  # noqa: E402


def make_batch(
    count: int = 1,
    *,
    ts: int = 1_700_000_000_000,
    value_size: int = 10,
    tag: int = 0,
    producer_id: int = -1,
    epoch: int = -1,
    sequence: int = -1,
) -> bytes:
    """A batch of ``count`` records, timestamps ts, ts+1, ...; values carry ``tag``."""
    values = [(b"%d:%d:" % (tag, i)).ljust(value_size, b"x") for i in range(count)]
    return encode_batch(
        values,
        timestamps=[ts + i for i in range(count)],
        producer_id=producer_id,
        producer_epoch=epoch,
        base_sequence=sequence,
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
