"""Flexible-version details: unknown tagged fields are skipped (Kafka's rule), Metadata v9-12
as librdkafka sends it, and fetch sessions answered as "no session"."""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from kio.index import load_request_schema
from kio.serial import entity_writer

from logstream.kafka import KafkaListener, wire
from logstream.kafka.wire import FrameError, build
from logstream.testing.broker import run_broker
from tests.kafka_listener.test_bad_input import connect, read_frame

# Metadata v10 from librdkafka 2.16's AdminClient.list_topics(), as captured on the wire
# (size prefix removed): the body ends in a tagged section with an empty tag 0 the schema
# does not define, then one more byte.
LIBRDKAFKA_METADATA_V10 = bytes.fromhex("0003000a00000003000772646b61666b61000000000001000000")


def test_librdkafka_admin_metadata_v10_is_read() -> None:
    req = wire.parse_request(LIBRDKAFKA_METADATA_V10)
    assert (req.api_key, req.api_version, req.correlation_id) == (3, 10, 3)
    assert req.body.topics is None
    assert req.body.allow_auto_topic_creation is False


# Metadata v12 from librdkafka 2.16 (AdminClient.list_topics(), then a Producer asking for
# topic "t2"), as captured: each body is followed by three bytes (01 00 00) the v12 schema
# does not read; Kafka's parser ignores them, and so does the listener.
LIBRDKAFKA_METADATA_V12_ALL = bytes.fromhex("0003000c00000004000772646b61666b610000000000010000")
LIBRDKAFKA_METADATA_V12_T2 = bytes.fromhex(
    "0003000c00000003000772646b61666b6100020000000000000000000000000000000003743200010000"
)


def test_librdkafka_metadata_v12_is_read() -> None:
    every = wire.parse_request(LIBRDKAFKA_METADATA_V12_ALL)
    assert (every.api_version, every.correlation_id, every.body.topics) == (12, 4, None)
    one = wire.parse_request(LIBRDKAFKA_METADATA_V12_T2)
    assert [t.name for t in one.body.topics] == ["t2"]
    assert one.body.allow_auto_topic_creation is True


def test_bytes_after_a_body_are_refused_but_for_metadata() -> None:
    produce_v3 = struct.pack(">hhih", 0, 3, 1, 1) + b"t" + struct.pack(">hhii", -1, 1, 1000, 0)
    wire.parse_request(produce_v3)
    with pytest.raises(FrameError, match="after its body"):
        wire.parse_request(produce_v3 + b"\x01")


def _api_versions_v3(tags: bytes) -> bytes:
    header = struct.pack(">hhih", 18, 3, 9, 4) + b"test" + b"\x00"
    body = b"\x05kcat" + b"\x041.7" + tags  # compact strings: client software name/version
    return header + body


@pytest.mark.parametrize("tags", [b"\x01\x05\x02ab", b"\x02\x00\x00\x07\x01z"])
def test_unknown_tags_in_a_flexible_body_are_skipped(tags: bytes) -> None:
    req = wire.parse_request(_api_versions_v3(tags))
    assert req.body.client_software_name == "kcat"
    assert req.body.client_software_version == "1.7"


def test_a_torn_flexible_body_is_still_refused() -> None:
    with pytest.raises(FrameError):
        wire.parse_request(_api_versions_v3(b"\x01\x05\x09ab"))  # tag size past the end


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[KafkaListener]:
    with run_broker(tmp_path, auto_create_topics=True) as running:
        kafka = KafkaListener(running.broker, "127.0.0.1:0")
        kafka.start()
        try:
            yield kafka
        finally:
            kafka.stop()


def _fetch_frame(version: int, session_id: int, epoch: int) -> bytes:
    cls = load_request_schema(wire.FETCH, version)
    body = build(
        cls,
        replica_id=-1,
        max_wait=0,
        min_bytes=0,
        max_bytes=1 << 20,
        isolation_level=0,
        session_id=session_id,
        session_epoch=epoch,
        topics=(),
        forgotten_topics_data=(),
        rack_id="",
    )
    out = io.BytesIO()
    header_cls = cls.__header_schema__
    header = header_cls(
        request_api_key=1, request_api_version=version, correlation_id=5, client_id="t"
    )
    entity_writer(header_cls)(out, header)
    entity_writer(cls)(out, body)
    raw = out.getvalue()
    return struct.pack(">i", len(raw)) + raw


@pytest.mark.parametrize("version", [7, 11])
def test_fetch_sessions_are_answered_as_none(listener: KafkaListener, version: int) -> None:
    """A request for a new session (id 0, epoch 0) gets a full answer with session id 0, so
    the client keeps sending full fetches; an id the listener never gave out is
    FETCH_SESSION_ID_NOT_FOUND (70)."""
    with connect(listener) as sock:
        sock.sendall(_fetch_frame(version, 0, 0))
        frame = read_frame(sock)
        correlation_id, _throttle, error, session = struct.unpack_from(">iihi", frame)
        assert (correlation_id, error, session) == (5, 0, 0)
        sock.sendall(_fetch_frame(version, 1234, 1))
        frame = read_frame(sock)
        correlation_id, _throttle, error, session = struct.unpack_from(">iihi", frame)
        assert (correlation_id, error, session) == (5, 70, 0)
