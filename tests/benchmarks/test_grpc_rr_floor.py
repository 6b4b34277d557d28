"""Smoke test of the request/reply gRPC floor (benchmarks/peers/grpc_rr_floor.py): a real
relay process and responder process, a tiny count, every reply matched to its request."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.peers import grpc_rr_floor  # noqa: E402

pytestmark = pytest.mark.slow


def test_every_request_gets_its_reply_with_a_latency_and_cpu() -> None:
    srv = grpc_rr_floor.relay_server()
    try:
        res = grpc_rr_floor.floor_rr(srv.addr, 200, 0.5, 100, srv.pid)
    finally:
        srv.stop()
    assert srv.proc is not None and srv.proc.poll() is not None  # exactly ours, stopped
    assert 0 < res["p50_ms"] <= res["p99_ms"] <= res["max_ms"] < 5_000
    assert set(res["cpu_us"]) == {"server", "responder", "requester"}
    assert all(v >= 0 for v in res["cpu_us"].values())
