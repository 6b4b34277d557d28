"""Client and broker keepalive settings agree: an idle Subscribe stream survives the client's
pings. Shown quickly by shortening both intervals through configuration (client pings every
200 ms, the broker accepts pings every 100 ms); with the broker's policy stricter than the
client's pings, the same stream dies of GOAWAY ``too_many_pings``, which shows the scenario
detects the failure."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any

from logstream import Producer, errors
from logstream.client.transport import Transport
from logstream.protocol import log_pb2
from logstream.testing.broker import run_broker

IDLE_S = 6.0
CLIENT_PING_MS = 200
"""gRPC's client sends pings at most once a second (its own floor), so 200 ms means ~1 s;
with a mismatched broker policy the stream dies after ~4 s (third strike), within IDLE_S."""


def _idle_subscribe_then_produce(tmp_path: Path, broker_min_ping_ms: int, idle_s: float) -> Any:
    """Open a Subscribe on an empty partition, stay idle up to ``idle_s`` seconds while the
    client pings, then produce one record: what the stream yields first (a response with the
    record, or an error, possibly while idle)."""
    with run_broker(tmp_path, keepalive_min_ping_interval_ms=broker_min_ping_ms) as b:
        b.broker.manager.create_topic("quiet", 1)
        transport = Transport(b.address, keepalive_time_ms=CLIENT_PING_MS)
        got: queue.Queue[Any] = queue.Queue()
        request = log_pb2.SubscribeRequest(
            partitions=[log_pb2.FetchPartition(topic="quiet", partition=0, offset=0)],
            heartbeat_ms=0,  # the broker sends nothing while there is no data
        )
        stream = transport.subscribe(request)

        def read() -> None:
            try:
                for resp in stream:
                    if any(p.records for p in resp.partitions):
                        got.put(resp)
                        return
            except errors.LogstreamError as exc:
                got.put(exc)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            try:
                return got.get(timeout=idle_s)  # an error while idle
            except queue.Empty:
                pass
            with Producer(b.address) as producer:
                producer.send("quiet", b"after the quiet").result(10)
            return got.get(timeout=10)
        finally:
            stream.cancel()
            reader.join(5)
            transport.close()


def test_an_idle_stream_survives_the_clients_pings(tmp_path: Path) -> None:
    started = time.monotonic()
    first = _idle_subscribe_then_produce(tmp_path, CLIENT_PING_MS // 2, idle_s=IDLE_S)
    assert isinstance(first, log_pb2.FetchResponse), first
    assert time.monotonic() - started >= IDLE_S


def test_a_stricter_broker_policy_kills_the_idle_stream(tmp_path: Path) -> None:
    """The same scenario with the policies mismatched fails: the test above can fail."""
    started = time.monotonic()
    first = _idle_subscribe_then_produce(tmp_path, 60_000, idle_s=20)
    assert isinstance(first, errors.BrokerNotAvailableError), first
    assert "ping" in str(first).lower(), first
    assert time.monotonic() - started < 20
