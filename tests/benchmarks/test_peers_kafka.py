"""Smoke test of the peer benchmark's Kafka row (benchmarks/peers/kafka_adapter.py): tiny
counts through confluent-kafka against a real broker's Kafka listener, and the count check
that makes a short read fail."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import pytest

from logstream.testing.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from peers_quick import run_quick  # noqa: E402

from benchmarks.peers import kafka_adapter, kafka_ceiling, servers  # noqa: E402
from benchmarks.peers.workload import VerificationError  # noqa: E402

pytestmark = pytest.mark.slow
N, SIZE = 2_500, 100


@pytest.fixture(scope="module")
def kafka_addr():
    srv = servers.logstream_kafka()
    try:
        yield srv.addr
    finally:
        srv.stop()
    assert srv.proc.poll() is not None, "the server we started is still running"


def test_produce_replay_group_verify_counts(kafka_addr):
    res = kafka_adapter.produce(kafka_addr, "smoke", N, SIZE)
    assert (res.records, res.bytes) == (N, N * SIZE) and res.rate > 0
    rep = kafka_adapter.replay(kafka_addr, "smoke", N, SIZE)
    assert (rep.records, rep.bytes) == (N, N * SIZE)
    grp = kafka_adapter.group_consume(kafka_addr, "smoke", N, SIZE, group="g1")
    assert (grp.records, grp.bytes) == (N, N * SIZE)


def test_replay_refetches_soon_after_its_queue_was_full(kafka_addr):
    """librdkafka stops fetching while its prefetch queue is over queued.min.messages and
    then waits fetch.queue.backoff.ms (default 1 s) before it fetches again: the replay
    row read 354-541 k/s instead of ~2 M/s on a host fast enough to fill the queue. Here
    the queue is made to stay full (a tiny queued.min.messages, the records taken one at
    a time) until librdkafka's debug log names a wait; the replay's settings must keep
    that wait short."""
    import confluent_kafka as ck

    kafka_adapter.produce(kafka_addr, "backoff", N, SIZE)
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    log = logging.getLogger("test-replay-backoff")
    log.addHandler(Capture())
    log.setLevel(logging.DEBUG)
    c = ck.Consumer(
        {
            "bootstrap.servers": kafka_addr,
            "group.id": "backoff",
            "enable.auto.commit": False,
            **kafka_adapter.REPLAY_CONSUMER,
            "queued.min.messages": 100,
            "debug": "fetch",
            "logger": log,
        }
    )
    pattern = re.compile(r"Fetch backoff for (\d+)ms: Local: Queue full")
    try:
        c.assign([ck.TopicPartition("backoff", 0, 0)])
        taken = 0

        def waited() -> bool:
            nonlocal taken
            taken += len(c.consume(1, 0.05))  # serves the log callbacks too
            return any(pattern.search(line) for line in lines)

        wait_for(waited, timeout=20, what="librdkafka to back off on a full queue")
    finally:
        c.close()
    assert taken < N - 100, "the queue drained before the wait was seen"
    waits = [int(m.group(1)) for line in lines for m in pattern.finditer(line)]
    assert max(waits) <= 10, waits  # the replay setting, not librdkafka's 1,000 ms default


def test_a_short_read_is_caught(kafka_addr):
    kafka_adapter.produce(kafka_addr, "short", N, SIZE)
    with pytest.raises(VerificationError, match=f"received {N} records"):
        kafka_adapter.replay(kafka_addr, "short", N + 1, SIZE)


def test_the_ceiling_server_serves_the_replay_the_listener_serves():
    """The ceiling row's server (``kafka_ceiling.py``) answers confluent-kafka's replay with
    every record and byte once (the consumer's count check would fail otherwise), and a
    short read from it is caught the same way."""
    rep = kafka_ceiling.replay("", "", N, SIZE)
    assert (rep.records, rep.bytes) == (N, N * SIZE) and rep.rate > 0
    srv = kafka_ceiling.ceiling_server(N, SIZE)
    try:
        with pytest.raises(VerificationError, match=f"received {N} records"):
            kafka_adapter.replay(srv.addr, kafka_ceiling.TOPIC, N + 1, SIZE)
    finally:
        srv.stop()


def test_durable_row_is_reported_not_available(kafka_addr):
    with pytest.raises(kafka_adapter.NotAvailable):
        kafka_adapter.durable_produce(kafka_addr, "durable", 10, SIZE)


def test_run_quick_kafka_only_reports_every_row(tmp_path):
    """The driver's Kafka system end to end: rows it cannot express say n/a, nothing fails,
    and the latency row and the Kafka targets carry figures."""
    out = tmp_path / "RESULTS.md"
    out.write_text("# Results\n")
    proc = run_quick("kafka", out, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    assert "error" not in text and "FAILED" not in text, text
    assert "| work queue, 2 worker processes, ack per message, 100 B | n/a (" in text
    latency = next(line for line in text.splitlines() if line.startswith("| logstream, Kafka"))
    assert float(latency.split("|")[2]) > 0  # p50 in ms
    assert "| latency p99 <= 1 ms at 2,000/s |" in text
    assert "answering from memory (`kafka_ceiling.py`): the client's ceiling |" in text
