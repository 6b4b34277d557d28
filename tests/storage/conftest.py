"""Fixtures for the storage tests (real files in tmp_path); helpers are in storage_helpers.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


from storage_helpers import ScriptedFileOps  # noqa: E402

from logstream.storage import files  # noqa: E402
from logstream.testing.clock import ManualClock  # noqa: E402


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def file_ops() -> Iterator[ScriptedFileOps]:
    """Storage's file operations for this test, recorded and open to injected faults."""
    ops = ScriptedFileOps()
    with files.use_file_ops(ops):
        yield ops
