"""The one place where the client touches gRPC: the channel, its options, and the translation
of ``grpc.RpcError`` into the logstream exception tree.

Everything above this module (producer, consumer, admin) sees only ``LogstreamError``
subclasses. A failed call is translated exactly once, here, with ``raise ... from exc`` so
the gRPC error stays attached as ``__cause__`` for debugging.

Seam for tests: :class:`TransportLike` is what the client needs from a connection. The
producer's calls are typed methods that raise only ``LogstreamError`` (``produce_stream``,
``init_producer_id``, ``describe_topics``); the consumer, admin and group calls still go
through three stub-like attributes (``log``, ``admin``, ``group``) shaped like generated gRPC
stubs, translated by :func:`call`, :func:`result` and :func:`iterate`. A fake transport
(``logstream.testing.transport.InMemoryTransport``) provides both, so the client runs
unchanged against it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import grpc

from logstream import errors
from logstream.protocol import admin_pb2, admin_pb2_grpc, group_pb2_grpc, log_pb2, log_pb2_grpc
from logstream.protocol.status import error_from_rpc

T = TypeVar("T")

MAX_MESSAGE_BYTES = 256 * 1024 * 1024
"""Client-side send/receive limit: fetches of many partitions can be large."""

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Reconnect quickly after a broker restart (gRPC's default first backoff is 1 s).
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.enable_retries", 0),
    # The consumer's Subscribe stream is read by the fetcher thread itself instead of being
    # handed over by the channel's polling thread: one thread wake-up less per message
    # (docs/performance.md, Latency). Affects server-streaming calls only.
    ("SingleThreadedUnaryStream", 1),  # grpc.experimental.ChannelOptions.SingleThreadedUnaryStream
]


class ProduceStreamCall(Protocol):
    """An open ProduceStream: iterate the answers (a failure raises ``LogstreamError``)."""

    def __iter__(self) -> Iterator[log_pb2.ProduceResponse]: ...

    def cancel(self) -> None: ...


class TransportLike(Protocol):
    """What the client needs from a transport (real or fake)."""

    address: str
    log: Any
    admin: Any
    group: Any

    def produce_stream(self, requests: Iterator[bytes]) -> ProduceStreamCall:
        """Open a ProduceStream fed with serialized ``ProduceRequest`` messages
        (``logstream.client.wire``)."""
        ...

    def init_producer_id(
        self, request: log_pb2.InitProducerIdRequest, *, timeout: float | None
    ) -> log_pb2.InitProducerIdResponse: ...

    def describe_topics(
        self, request: admin_pb2.DescribeTopicsRequest, *, timeout: float | None
    ) -> admin_pb2.DescribeTopicsResponse: ...

    def close(self) -> None: ...


def translate(exc: grpc.RpcError, address: str = "") -> errors.LogstreamError:
    """The logstream exception for a failed RPC (does not raise)."""
    err = error_from_rpc(exc)
    if isinstance(err, errors.BrokerNotAvailableError) and address:
        err = errors.BrokerNotAvailableError(f"broker at {address} not available: {err.message}")
    return err


def call(method: Callable[..., T], request: Any, *, timeout: float | None, address: str = "") -> T:
    """Invoke a unary stub method; a gRPC failure becomes a ``LogstreamError``."""
    try:
        return method(request, timeout=timeout)
    except grpc.RpcError as exc:
        raise translate(exc, address) from exc


def result(future: Any, *, timeout: float | None = None, address: str = "") -> Any:
    """Wait for a ``stub.X.future(...)`` result, translating a gRPC failure."""
    try:
        return future.result(timeout=timeout)
    except grpc.FutureCancelledError as exc:
        raise errors.ClientClosedError("request cancelled") from exc
    except grpc.RpcError as exc:
        raise translate(exc, address) from exc


def iterate(stream: Iterator[T], address: str = "") -> Iterator[T]:
    """Iterate a server stream, translating a gRPC failure at any point."""
    try:
        yield from stream
    except grpc.RpcError as exc:
        raise translate(exc, address) from exc


class Transport:
    """A gRPC channel to one broker plus the three service stubs.

    Thread-safe (gRPC channels are). ``close()`` is idempotent; calls after it fail with
    ``BrokerNotAvailableError`` (the channel is gone) or are refused by the owner first.
    """

    def __init__(self, address: str, *, options: list[tuple[str, Any]] | None = None) -> None:
        if not address or ":" not in address:
            raise errors.InvalidRequestError(f"broker address must be host:port, got {address!r}")
        self.address = address
        self._channel = grpc.insecure_channel(address, options=options or CHANNEL_OPTIONS)
        self.log = log_pb2_grpc.LogStub(self._channel)
        # ProduceStream taking requests already serialized (logstream.client.wire): no
        # protobuf message is built and no serializer runs (docs/performance.md, Client).
        self._produce_stream = self._channel.stream_stream(
            "/logstream.v1.Log/ProduceStream",
            request_serializer=None,
            response_deserializer=log_pb2.ProduceResponse.FromString,
        )
        self.admin = admin_pb2_grpc.AdminStub(self._channel)
        self.group = group_pb2_grpc.GroupStub(self._channel)
        self._closed = False

    def produce_stream(self, requests: Iterator[bytes]) -> ProduceStreamCall:
        try:
            call = self._produce_stream(requests)
        except grpc.RpcError as exc:
            raise translate(exc, self.address) from exc
        return _TranslatedStream(call, self.address)

    def init_producer_id(
        self, request: log_pb2.InitProducerIdRequest, *, timeout: float | None
    ) -> log_pb2.InitProducerIdResponse:
        return call(self.log.InitProducerId, request, timeout=timeout, address=self.address)

    def describe_topics(
        self, request: admin_pb2.DescribeTopicsRequest, *, timeout: float | None
    ) -> admin_pb2.DescribeTopicsResponse:
        return call(self.admin.DescribeTopics, request, timeout=timeout, address=self.address)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._channel.close()


class _TranslatedStream:
    """A gRPC stream-stream call whose failures surface as ``LogstreamError``."""

    def __init__(self, call: Any, address: str) -> None:
        self._call = call
        self._address = address

    def __iter__(self) -> Iterator[log_pb2.ProduceResponse]:
        return iterate(self._call, self._address)

    def cancel(self) -> None:
        self._call.cancel()


def connect(bootstrap: str | TransportLike) -> TransportLike:
    """A transport for ``bootstrap``: an address string, or a transport object to share."""
    if isinstance(bootstrap, str):
        return Transport(bootstrap.split(",")[0].strip())
    return bootstrap
