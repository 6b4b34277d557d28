"""kill -9 during topic creates and deletes leaves no orphan partition directory: every
directory at the next start belongs to a topic the broker lists (before: 21 orphans after
20 kills, deleted data left on disk). A real broker process, SIGKILL at a random moment of
a create/delete loop (seeded), bounded in cycles and time."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from logstream.client import Admin
from logstream.client.admin import TopicInfo
from logstream.errors import BrokerNotAvailableError, LogstreamError
from logstream.testing.broker import BrokerProcess

pytestmark = pytest.mark.slow

CYCLES = 6


def _churn(address: str, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    try:
        with Admin(address, request_timeout_ms=2000) as admin:
            while not stop.is_set():
                name = f"churn{rng.randrange(4)}"
                try:
                    admin.create_topic(name, rng.randrange(1, 9))
                    admin.delete_topic(name)
                except LogstreamError:
                    pass  # exists already, unknown, or the broker was killed under us
    except LogstreamError:
        pass


def _topics(address: str, deadline_s: float = 20.0) -> list[TopicInfo]:
    """The topics, once the restarted broker answers (a new channel right after the start
    line was sometimes refused under load; wait on the answer, with a deadline)."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            with Admin(address, request_timeout_ms=2000) as admin:
                return admin.list_topics(include_internal=True)
        except BrokerNotAvailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _partition_dirs(data: Path) -> set[str]:
    return {
        p.name
        for p in data.iterdir()
        if p.is_dir() and p.name != "meta" and p.name.rpartition("-")[2].isdigit()
    }


def test_kills_during_create_and_delete_leave_no_orphans(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rng = random.Random(5)
    broker = BrokerProcess(data).start()
    try:
        for cycle in range(CYCLES):
            stop = threading.Event()
            worker = threading.Thread(target=_churn, args=(broker.address, stop, cycle))
            worker.start()
            time.sleep(rng.uniform(0.2, 0.8))  # let the loop run: the kill lands mid-way
            broker.restart(kill=True)
            stop.set()
            worker.join(10)
            counts = {t.name: t.partitions for t in _topics(broker.address)}
            expected = {f"{n}-{p}" for n, c in counts.items() for p in range(c)}
            assert _partition_dirs(data) <= expected, (cycle, _partition_dirs(data) - expected)
    finally:
        broker.kill()
