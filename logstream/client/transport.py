"""The one place where the client touches gRPC: the channel, its options, and the translation
of ``grpc.RpcError`` into the logstream exception tree.

Everything above this module (producer, consumer, admin) sees only ``LogstreamError``
subclasses. A failed call is translated exactly once, here, with ``raise ... from exc`` so
the gRPC error stays attached as ``__cause__`` for debugging.

Seam for tests: :class:`Transport` exposes three stub-like attributes (``log``, ``admin``,
``group``) whose methods look like generated gRPC stubs (``stub.Fetch(request, timeout=...)``,
``stub.Fetch.future(...)``, ``stub.ProduceStream(iterator)``). A fake transport
(``logstream.testing.transport.InMemoryTransport``) provides the same attributes, so the
producer and consumer run unchanged against it. :class:`Transport` also has
``produce_stream_raw`` (ProduceStream fed with serialized requests); the producer uses it
when a transport has it and builds ``ProduceRequest`` messages otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import grpc

from logstream import errors
from logstream.protocol import admin_pb2_grpc, group_pb2_grpc, log_pb2, log_pb2_grpc
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


class TransportLike(Protocol):
    """What the client needs from a transport (real or fake)."""

    address: str
    log: Any
    admin: Any
    group: Any

    def close(self) -> None: ...


def translate(exc: grpc.RpcError, address: str = "") -> errors.LogstreamError:
    """The logstream exception for a failed RPC (does not raise)."""
    err = error_from_rpc(exc)
    if isinstance(err, errors.BrokerNotAvailableError) and address:
        err = errors.BrokerNotAvailableError(f"broker at {address} not available: {err.message}")
    return err


def is_unimplemented(exc: BaseException) -> bool:
    """True if ``exc`` (or its cause) says the broker does not implement the RPC."""
    cause = exc.__cause__ if isinstance(exc, errors.LogstreamError) else exc
    code = getattr(cause, "code", None)
    try:
        return callable(code) and code() == grpc.StatusCode.UNIMPLEMENTED
    except Exception:
        return False


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
        self.produce_stream_raw = self._channel.stream_stream(
            "/logstream.v1.Log/ProduceStream",
            request_serializer=None,
            response_deserializer=log_pb2.ProduceResponse.FromString,
        )
        self.admin = admin_pb2_grpc.AdminStub(self._channel)
        self.group = group_pb2_grpc.GroupStub(self._channel)
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._channel.close()


def connect(bootstrap: str | TransportLike) -> TransportLike:
    """A transport for ``bootstrap``: an address string, or a transport object to share."""
    if isinstance(bootstrap, str):
        return Transport(bootstrap.split(",")[0].strip())
    return bootstrap
