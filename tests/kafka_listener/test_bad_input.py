"""Bad input on the Kafka listener: a clean error or a disconnect, and the listener keeps
serving other connections."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from logstream.kafka import KafkaListener
from logstream.testing.broker import run_broker


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[KafkaListener]:
    with run_broker(tmp_path, auto_create_topics=True) as running:
        kafka = KafkaListener(
            running.broker, "127.0.0.1:0", max_request_bytes=1 << 20, frame_timeout_s=0.5
        )
        kafka.start()
        try:
            yield kafka
        finally:
            kafka.stop()


def connect(listener: KafkaListener) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", listener.port), timeout=10)
    return sock


def api_versions_frame(correlation_id: int, version: int = 0) -> bytes:
    client = b"test"
    body = struct.pack(">hhih", 18, version, correlation_id, len(client)) + client
    return struct.pack(">i", len(body)) + body


def read_frame(sock: socket.socket) -> bytes:
    head = _read(sock, 4)
    return _read(sock, struct.unpack(">i", head)[0])


def _read(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return out


def assert_closed(sock: socket.socket) -> None:
    sock.settimeout(10)
    try:
        assert sock.recv(1) == b""
    except ConnectionResetError:
        pass


def assert_serving(listener: KafkaListener) -> None:
    with connect(listener) as sock:
        sock.sendall(api_versions_frame(7))
        frame = read_frame(sock)
        correlation_id, error = struct.unpack_from(">ih", frame)
        assert (correlation_id, error) == (7, 0)


def test_api_versions_v0_answers_with_the_table(listener: KafkaListener) -> None:
    with connect(listener) as sock:
        sock.sendall(api_versions_frame(1))
        frame = read_frame(sock)
    correlation_id, error, count = struct.unpack_from(">ihi", frame)
    keys = {struct.unpack_from(">hhh", frame, 10 + 6 * i)[0] for i in range(count)}
    assert (correlation_id, error) == (1, 0)
    assert {0, 1, 2, 3, 18, 22} <= keys


def test_unsupported_api_versions_version_gets_v0_error_and_table(listener: KafkaListener) -> None:
    with connect(listener) as sock:
        sock.sendall(api_versions_frame(2, version=99))
        frame = read_frame(sock)
        correlation_id, error, count = struct.unpack_from(">ihi", frame)
        assert (correlation_id, error) == (2, 35) and count > 0
        sock.sendall(api_versions_frame(3))  # the connection stays usable
        assert struct.unpack_from(">ih", read_frame(sock)) == (3, 0)


def test_unknown_api_key_gets_unsupported_version_then_a_disconnect(
    listener: KafkaListener,
) -> None:
    with connect(listener) as sock:
        body = struct.pack(">hhih", 9999, 0, 5, -1)
        sock.sendall(struct.pack(">i", len(body)) + body)
        assert struct.unpack(">ih", read_frame(sock)) == (5, 35)
        assert_closed(sock)
    assert_serving(listener)


@pytest.mark.parametrize(
    "payload",
    [
        struct.pack(">i", 3) + b"abc",  # shorter than a request header
        struct.pack(">i", -5),  # negative size
        struct.pack(">i", 2 << 20),  # over max_request_bytes
        # Metadata v1 whose topic array claims a million entries
        struct.pack(">i", 14) + struct.pack(">hhih", 3, 1, 9, -1) + struct.pack(">i", 1_000_000),
        # Produce v3 cut in the middle of its topic name
        struct.pack(">i", 22)
        + struct.pack(">hhih", 0, 3, 9, -1)
        + b"\xff\xff\x00\x01"
        + b"\0\0\0\x01\0\x10ab",
    ],
    ids=["short", "negative-size", "oversized", "huge-array", "truncated-body"],
)
def test_malformed_frames_disconnect_and_the_listener_keeps_serving(
    listener: KafkaListener, payload: bytes
) -> None:
    with connect(listener) as sock:
        sock.sendall(payload)
        assert_closed(sock)
    assert_serving(listener)


def test_half_a_frame_then_a_stall_is_dropped_while_others_are_served(
    listener: KafkaListener,
) -> None:
    with connect(listener) as stalled:
        frame = api_versions_frame(1)
        stalled.sendall(frame[: len(frame) // 2])
        assert_serving(listener)  # served while the other connection is stuck
        started = time.monotonic()
        assert_closed(stalled)  # dropped after frame_timeout_s
        assert time.monotonic() - started < 5
    assert_serving(listener)


def test_garbage_record_batch_gets_corrupt_message(listener: KafkaListener) -> None:
    import datetime
    import io

    from aiokafka.record._crecords import DefaultRecordBatchBuilder
    from kio.schema.produce.v7.request import PartitionProduceData, ProduceRequest, TopicProduceData
    from kio.serial import entity_writer

    builder = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 20)
    builder.append(0, 1_700_000_000_000, b"k", b"v", [])
    batch = bytearray(builder.build())
    batch[-1] ^= 0xFF  # breaks the CRC
    req = ProduceRequest(
        transactional_id=None,
        acks=1,
        timeout=datetime.timedelta(seconds=5),
        topic_data=(
            TopicProduceData(
                name="bad", partition_data=(PartitionProduceData(index=0, records=bytes(batch)),)
            ),
        ),
    )
    out = io.BytesIO()
    out.write(struct.pack(">hhih", 0, 7, 11, -1))
    entity_writer(ProduceRequest)(out, req)
    body = out.getvalue()
    with connect(listener) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        frame = read_frame(sock)
    from kio.schema.produce.v7.response import ProduceResponse
    from kio.serial import entity_reader

    assert struct.unpack_from(">i", frame)[0] == 11
    resp, _ = entity_reader(ProduceResponse)(frame, 4)
    part = resp.responses[0].partition_responses[0]
    assert part.error_code == 2  # CORRUPT_MESSAGE
    assert_serving(listener)
