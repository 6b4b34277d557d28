"""Smoke test of the gRPC relay floor of the peers benchmark (benchmarks/peers/grpc_floor.py):
a real relay process, the latency workload with a tiny count, every record verified."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.peers import grpc_floor  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def relay_addr():
    srv = grpc_floor.relay_server()
    try:
        yield srv.addr
    finally:
        srv.stop()
        assert srv.proc is not None and srv.proc.poll() is not None  # exactly ours, stopped


def test_every_record_arrives_once_with_a_latency(relay_addr: str) -> None:
    res = grpc_floor.latency(relay_addr, "unused", 400, 0.5, 100)
    assert res.records == 200 and res.bytes == 200 * 100
    assert 0 < res.extra["p50_ms"] <= res.extra["p99_ms"] <= res.extra["max_ms"] < 5_000


def test_a_second_subscriber_gets_its_own_copy(relay_addr: str) -> None:
    """A consumer that has left (its stream cancelled) does not break the next one."""
    first = grpc_floor.latency(relay_addr, "unused", 400, 0.25, 64)
    second = grpc_floor.latency(relay_addr, "unused", 400, 0.25, 64)
    assert first.records == second.records == 100
