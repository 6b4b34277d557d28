"""The request/reply benchmark (benchmarks/peers/request_reply.py) with tiny counts: logstream
and Redis against real servers, and its reply-count verification."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.peers import request_reply, servers  # noqa: E402
from benchmarks.peers.workload import VerificationError  # noqa: E402

pytestmark = pytest.mark.slow

RATE, SECONDS, SIZE = 200, 1, 100


def test_logstream_request_reply_round_trips() -> None:
    srv = servers.logstream_broker()
    try:
        res = request_reply.logstream_rr(srv.addr, "smoke", RATE, SECONDS, SIZE)
    finally:
        srv.stop()
    assert (res.records, res.bytes) == (RATE * SECONDS, RATE * SECONDS * SIZE)
    assert 0 < res.extra["p50_ms"] <= res.extra["p99_ms"] <= res.extra["max_ms"]


def test_redis_request_reply_round_trips() -> None:
    srv = servers.redis_server()
    try:
        res = request_reply.redis_rr(srv.addr, "smoke", RATE, SECONDS, SIZE)
    finally:
        srv.stop()
    assert res.records == RATE * SECONDS
    assert 0 < res.extra["p50_ms"] <= res.extra["max_ms"]


def test_a_missing_reply_fails_the_row() -> None:
    sent = {0: 10, 1: 20, 2: 30}
    with pytest.raises(VerificationError, match="3 requests, 2 replies"):
        request_reply.summarize("x", sent, {0: 15, 1: 25}, SIZE, 1.0)
    res = request_reply.summarize("x", sent, {0: 15, 1: 25, 2: 1_000_030}, SIZE, 1.0)
    assert res.extra["max_ms"] == 1.0
