"""The ``monitored`` fixture: a broker process with its HTTP listener (monitoring_helpers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from monitoring_helpers import Monitored, start_monitored


@pytest.fixture
def monitored(tmp_path: Path) -> Iterator[Monitored]:
    m = start_monitored(tmp_path / "data", auto_create_topics=True)
    try:
        yield m
    finally:
        m.proc.terminate()
