"""Fixtures: a real broker in a child process on a free loopback port (module scope)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

_names = itertools.count()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from logstream.testing.broker import BrokerProcess

    proc = BrokerProcess(Path(tmp_path_factory.mktemp("broker")) / "data", log_level="WARNING")
    proc.start()
    try:
        yield proc
    finally:
        proc.terminate()


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> str:
    return f"{request.node.name[:40].replace('[', '-').replace(']', '')}-{next(_names)}"
