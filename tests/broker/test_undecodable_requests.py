"""Bytes that are not the method's protobuf message, sent on every RPC method of every
service through a raw channel (identity serializers): each call answers INVALID_ARGUMENT
with INVALID_REQUEST in the trailing metadata, the broker logs no traceback (at most a
rate-limited line), and keeps serving. A cancelled ProduceStream logs nothing at ERROR."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from broker_helpers import Client

from logstream.codec import encode_batch
from logstream.errors import InvalidRequestError
from logstream.protocol import admin_pb2, group_pb2, log_pb2
from logstream.protocol.status import ERROR_CODE_KEY
from logstream.testing.broker import BrokerProcess

SERVICES = [
    log_pb2.DESCRIPTOR.services_by_name["Log"],
    admin_pb2.DESCRIPTOR.services_by_name["Admin"],
    group_pb2.DESCRIPTOR.services_by_name["Group"],
]
METHODS = [(s, m) for s in SERVICES for m in s.methods]

GARBAGE = {
    "bad-tag": b"\xff" * 16,  # field number 0 / wire type 7: not protobuf at all
    "truncated": b"\x0a\xff\xff\xff\xff\x0f",  # field 1, a length far past the end
    "bad-varint": b"\x08" + b"\xff" * 11,  # a varint longer than 10 bytes
}


def _invalid_utf8(method: Any) -> bytes | None:
    """The method's message with its first top-level string field set to invalid UTF-8."""
    for field in method.input_type.fields:
        if field.type == field.TYPE_STRING:
            tag = (field.number << 3) | 2
            return bytes([tag]) + b"\x02\xc3\x28"  # an invalid 2-byte sequence
    return None


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    data_dir = tmp_path_factory.mktemp("undecodable") / "data"
    with BrokerProcess(data_dir) as proc:
        yield proc


@pytest.fixture(scope="module")
def channel(broker: BrokerProcess) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(broker.address)
    yield ch
    ch.close()


def _call(channel: grpc.Channel, service: Any, method: Any, payload: bytes) -> grpc.RpcError:
    path = f"/{service.full_name}/{method.name}"
    ident = {"request_serializer": None, "response_deserializer": None}
    try:
        if method.client_streaming:
            call = channel.stream_stream(path, **ident)
            list(call(iter([payload]), timeout=10))
        elif method.server_streaming:
            list(channel.unary_stream(path, **ident)(payload, timeout=10))
        else:
            channel.unary_unary(path, **ident)(payload, timeout=10)
    except grpc.RpcError as err:
        return err
    raise AssertionError(f"{path} accepted {payload!r}")


def _trailing_code(err: grpc.RpcError) -> int | None:
    for key, value in err.trailing_metadata() or ():  # type: ignore[attr-defined]
        if key == ERROR_CODE_KEY:
            return int(value)
    return None


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[m.full_name for _, m in METHODS])
def test_garbage_on_every_method_is_invalid_argument(
    broker: BrokerProcess, channel: grpc.Channel, service: Any, method: Any
) -> None:
    payloads = dict(GARBAGE)
    utf8 = _invalid_utf8(method)
    if utf8 is not None:
        payloads["invalid-utf8"] = utf8
    for kind, payload in payloads.items():
        err = _call(channel, service, method, payload)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (kind, err)  # type: ignore[attr-defined]
        assert _trailing_code(err) == InvalidRequestError.code, (kind, err)
    client = Client(broker.address)
    try:
        client.assert_serving()
    finally:
        client.close()


def test_garbage_is_logged_rate_limited_and_without_traceback(
    broker: BrokerProcess, channel: grpc.Channel
) -> None:
    log_service = SERVICES[0]
    list_offsets = log_service.methods_by_name["ListOffsets"]
    before = broker.output().count("undecodable")
    for _ in range(200):
        _call(channel, log_service, list_offsets, GARBAGE["bad-tag"])
    out = broker.output()
    assert "Traceback" not in out and "Exception deserializing" not in out
    assert out.count("undecodable") - before <= 2  # one line per 10 s at most


def _log_has_settled(broker: BrokerProcess, seconds: float) -> str:
    """The broker's output once it has not grown for ``seconds`` (bounded wait)."""
    deadline = time.monotonic() + 10
    last, since = broker.output(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = broker.output()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= seconds:
            break
    return last


def test_a_cancelled_produce_stream_logs_no_error(broker: BrokerProcess) -> None:
    client = Client(broker.address)
    try:
        client.create_topic("cancelled-stream")
        request = log_pb2.ProduceRequest(
            partitions=[
                log_pb2.PartitionProduceData(
                    topic="cancelled-stream", batches=[encode_batch([b"x"])]
                )
            ]
        )
        more = threading.Event()

        def requests() -> Iterator[log_pb2.ProduceRequest]:
            yield request
            more.wait(10)  # the stream stays open until we cancel it

        before = len(broker.output())
        call = client.log.ProduceStream(requests(), timeout=20)
        assert next(call).partitions[0].error_code == 0
        call.cancel()
        more.set()
        out = _log_has_settled(broker, 0.5)[before:]
        assert "ERROR" not in out and "Traceback" not in out, out
        client.assert_serving()
    finally:
        client.close()


def test_a_client_that_disconnects_mid_stream_logs_no_error(tmp_path: Path) -> None:
    with BrokerProcess(tmp_path / "data") as proc:
        client = Client(proc.address)
        client.create_topic("t")
        stop = threading.Event()

        def requests() -> Iterator[log_pb2.ProduceRequest]:
            yield log_pb2.ProduceRequest(
                partitions=[log_pb2.PartitionProduceData(topic="t", batches=[encode_batch([b"x"])])]
            )
            stop.wait(10)

        call = client.log.ProduceStream(requests(), timeout=20)
        next(call)
        client.close()  # the connection goes away under the open stream
        stop.set()
        out = _log_has_settled(proc, 0.5)
        assert "ERROR" not in out and "Traceback" not in out, out
