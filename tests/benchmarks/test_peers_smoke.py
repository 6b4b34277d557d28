"""Smoke test of the peer benchmark (benchmarks/peers): the Redis Streams adapter with tiny
counts against a real redis-server, its record-count verification, and ``run.py --quick``.

Skipped, with the reason, when redis-server or the ``redis`` client (the ``bench`` extra) is
not installed: ``make bench-peers`` installs both.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("redis-server") is None,
        reason="redis-server is not installed (make bench-peers installs it with apt-get)",
    ),
]
pytest.importorskip("redis", reason="the redis client is not installed (pip install -e '.[bench]')")

from peers_quick import run_quick  # noqa: E402

from benchmarks.peers import redis_streams, servers  # noqa: E402
from benchmarks.peers.workload import VerificationError, verify  # noqa: E402

N, SIZE = 2_500, 100


@pytest.fixture(scope="module")
def redis_addr():
    srv = servers.redis_server()
    try:
        yield srv.addr
    finally:
        srv.stop()
    assert srv.proc.poll() is not None, "the server we started is still running"
    assert not srv.workdir.exists(), "the server's temp dir was not removed"


def test_produce_replay_group_verify_counts(redis_addr):
    res = redis_streams.produce(redis_addr, "smoke", N, SIZE)
    assert (res.records, res.bytes) == (N, N * SIZE) and res.rate > 0
    rep = redis_streams.replay(redis_addr, "smoke", N, SIZE)
    assert (rep.records, rep.bytes) == (N, N * SIZE)
    grp = redis_streams.group_consume(redis_addr, "smoke", N, SIZE, group="g1")
    assert (grp.records, grp.bytes) == (N, N * SIZE)


def test_short_read_is_caught(redis_addr):
    import redis

    redis_streams.produce(redis_addr, "short", N, SIZE)
    host, port = redis_addr.rsplit(":", 1)
    r = redis.Redis(host=host, port=int(port))
    victim = r.xrange("short", count=7)[-1][0]
    assert r.xdel("short", victim) == 1  # one record lost behind the benchmark's back
    with pytest.raises(VerificationError, match=f"expected {N} records"):
        redis_streams.replay(redis_addr, "short", N, SIZE)
    with pytest.raises(VerificationError, match=f"received {N - 1} records"):
        redis_streams.group_consume(redis_addr, "short", N, SIZE, group="g2")


def test_verify_catches_wrong_bytes():
    verify("ok", 3, 300, 3, 300)
    with pytest.raises(VerificationError):
        verify("bytes", 3, 300, 3, 299)
    with pytest.raises(VerificationError):
        verify("padded", 3, 300, 4, 400)


def test_run_quick_redis_only(tmp_path):
    out = tmp_path / "RESULTS.md"
    out.write_text("# Results\n\n<!-- other:begin -->\nkeep me\n<!-- other:end -->\n")
    proc = run_quick("redis", out, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    assert "keep me" in text  # other sections untouched
    assert "<!-- peers:begin -->" in text and "<!-- peers:end -->" in text
    assert "| produce 100 B |" in text and "Redis Streams" in text
    assert "### Request/reply round trip at 500 requests/s" in text
    assert "| Redis | " in text  # its request/reply row, with figures
    assert "| work queue, 2 worker processes, ack per message, 100 B |" in text
    assert "FAILED" not in text
