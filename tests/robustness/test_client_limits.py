"""Per-client limits on a real broker process (``logstream.broker.limits``): open streams
and connections with calls per client address, request bytes held per connection. Each
refusal has its named code, other clients keep being served, and room comes back when the
calls end."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from robustness_wire import call, field_bytes

from logstream.errors import ConnectionLimitExceededError, ThrottlingQuotaExceededError
from logstream.protocol import admin_pb2, log_pb2
from logstream.protocol.status import ERROR_CODE_KEY
from logstream.testing.broker import BrokerProcess

MiB = 1 << 20
LIMITS = {
    "max_streams_per_address": 3,
    "max_connections_per_address": 2,
    "max_message_bytes": MiB,
    "max_request_bytes_per_connection": MiB,
}
TOPIC = "limited"
PADDING = 700_000


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with BrokerProcess(tmp_path_factory.mktemp("limits") / "data", **LIMITS) as proc:
        channel = grpc.insecure_channel(proc.address)
        spec = admin_pb2.TopicSpec(name=TOPIC, partitions=1)
        request = admin_pb2.CreateTopicsRequest(topics=[spec]).SerializeToString()
        assert call(channel, "Admin.CreateTopics", request).answers[0].topics[0].error_code == 0
        channel.close()
        yield proc
        assert "Traceback" not in proc.output()


def _connection(address: str) -> grpc.Channel:
    """A channel with its own TCP connection (not shared with other channels)."""
    return grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])


def _open_stream(channel: grpc.Channel) -> Any:
    """A Subscribe at the end of an empty partition, known to be open on the broker: its
    first heartbeat arrived. Raises the call's error if the broker refused it."""
    request = log_pb2.SubscribeRequest(
        partitions=[log_pb2.FetchPartition(topic=TOPIC, partition=0)], heartbeat_ms=100
    )
    stream = channel.unary_stream(
        "/logstream.v1.Log/Subscribe",
        request_serializer=log_pb2.SubscribeRequest.SerializeToString,
        response_deserializer=log_pb2.FetchResponse.FromString,
    )(request, timeout=60)
    next(stream)
    return stream


def _code(err: grpc.RpcError) -> int | None:
    for key, value in err.trailing_metadata() or ():  # type: ignore[attr-defined]
        if key == ERROR_CODE_KEY:
            return int(value)
    return None


def _until(ok: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def _list_topics(channel: grpc.Channel) -> grpc.StatusCode:
    return call(channel, "Admin.ListTopics", b"", timeout=10).status


def _refused_with(code: int, opener: Callable[[], Any]) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        opener()
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    assert _code(caught.value) == code


def test_streams_per_address(broker: BrokerProcess) -> None:
    channel = _connection(broker.address)
    streams = [_open_stream(channel) for _ in range(3)]
    _refused_with(ConnectionLimitExceededError.code, lambda: _open_stream(channel))
    assert _list_topics(channel) == grpc.StatusCode.OK  # unary calls are not streams
    streams.pop().cancel()

    def reopened() -> bool:
        try:
            streams.append(_open_stream(channel))
        except grpc.RpcError as err:
            assert _code(err) == ConnectionLimitExceededError.code
            return False
        return True

    _until(reopened)
    for stream in streams:
        stream.cancel()
    channel.close()


def test_connections_with_calls_per_address(broker: BrokerProcess) -> None:
    first, second, third = (_connection(broker.address) for _ in range(3))
    held = [_open_stream(first), _open_stream(second)]
    assert _list_topics(first) == grpc.StatusCode.OK  # a connection already counted
    outcome = call(third, "Admin.ListTopics", b"", timeout=10)
    assert outcome.status == grpc.StatusCode.RESOURCE_EXHAUSTED, outcome
    assert outcome.code == ConnectionLimitExceededError.code
    held[0].cancel()
    _until(lambda: _list_topics(third) == grpc.StatusCode.OK)
    held[1].cancel()
    for channel in (first, second, third):
        channel.close()


def _padded_fetch(max_wait_ms: int) -> bytes:
    """A Fetch of the empty partition, padded with an unknown field to ~700 kB (the bytes
    held are the request's size on the wire)."""
    request = log_pb2.FetchRequest(
        max_wait_ms=max_wait_ms,
        min_bytes=10 * MiB,
        partitions=[log_pb2.FetchPartition(topic=TOPIC, partition=0)],
    ).SerializeToString()
    return request + field_bytes(111, b"x" * PADDING)


def test_request_bytes_per_connection(broker: BrokerProcess) -> None:
    busy, other = _connection(broker.address), _connection(broker.address)
    fetch = busy.unary_unary(
        "/logstream.v1.Log/Fetch", request_serializer=None, response_deserializer=None
    )
    long_poll = fetch.future(_padded_fetch(max_wait_ms=8_000), timeout=30)

    def second_refused() -> bool:
        outcome = call(busy, "Log.Fetch", _padded_fetch(max_wait_ms=0))
        if outcome.status == grpc.StatusCode.OK:
            return False  # the long poll is not held yet
        assert outcome.status == grpc.StatusCode.RESOURCE_EXHAUSTED, outcome
        assert outcome.code == ThrottlingQuotaExceededError.code
        return True

    _until(second_refused, timeout=6)
    assert not long_poll.done()
    # another connection from the same address has its own allowance
    assert call(other, "Log.Fetch", _padded_fetch(max_wait_ms=0)).status == grpc.StatusCode.OK
    long_poll.result()
    assert call(busy, "Log.Fetch", _padded_fetch(max_wait_ms=0)).status == grpc.StatusCode.OK
    busy.close()
    other.close()
