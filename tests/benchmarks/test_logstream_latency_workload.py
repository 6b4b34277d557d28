"""Smoke test of logstream's latency workload in the peers benchmark
(benchmarks/peers/logstream_adapter.py): a real broker process, a producer process at a
steady rate, the iterating consumer and the ``poll()`` one; every record verified."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.peers import logstream_adapter, servers  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def broker_addr():
    srv = servers.logstream_broker()
    try:
        yield srv.addr
    finally:
        srv.stop()
        assert srv.proc is not None and srv.proc.poll() is not None  # exactly ours, stopped


@pytest.mark.parametrize("workload", ["latency", "latency_poll"])
def test_every_record_arrives_once_with_a_latency(broker_addr: str, workload: str) -> None:
    run = getattr(logstream_adapter, workload)
    res = run(broker_addr, f"lat-{workload}", 400, 0.5, 100)
    assert res.records == 200 and res.bytes == 200 * 100
    assert 0 < res.extra["p50_ms"] <= res.extra["p99_ms"] <= res.extra["max_ms"] < 5_000
