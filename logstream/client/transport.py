"""The one place where the client touches gRPC: the channel, its options, and the translation
of ``grpc.RpcError`` into the logstream exception tree.

Everything above this module (producer, consumer, admin) sees only ``LogstreamError``
subclasses. A failed call is translated exactly once, here, with ``raise ... from exc`` so
the gRPC error stays attached as ``__cause__`` for debugging.

The typed seam the rest of the client codes against (``TransportLike``, ``StreamCall``,
``PendingCall``) lives in ``logstream.client.transport_api``; :class:`Transport` is its gRPC
implementation and the in-memory fake (``logstream.testing.transport``) the other one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

import grpc

from logstream import errors
from logstream.client.transport_api import (
    PendingCall,
    ProduceStreamCall,
    StreamCall,
    TransportLike,
)
from logstream.protocol import (
    admin_pb2,
    admin_pb2_grpc,
    group_pb2,
    group_pb2_grpc,
    log_pb2,
    log_pb2_grpc,
    queue_pb2,
    queue_pb2_grpc,
    security_pb2,
    security_pb2_grpc,
)
from logstream.protocol.status import error_from_rpc

T = TypeVar("T")

MAX_MESSAGE_BYTES = 256 * 1024 * 1024
"""Client-side send/receive limit: fetches of many partitions can be large."""

CONNECT_TIMEOUT_MS = 20_000
"""How long one connection attempt (TCP and HTTP/2 handshake) may take: gRPC's default."""

KEEPALIVE_TIME_MS = 30_000
"""How often the client pings an idle connection (also one whose only call is an idle
long-poll), so that a dead broker or a dropped NAT mapping is noticed. The broker accepts
pings this often: its ``keepalive_min_ping_interval_ms`` (10 s by default) must not be more
(``logstream.broker.network``); else it answers GOAWAY ``too_many_pings`` and every stream of
the connection fails."""


def channel_options(*, keepalive_time_ms: int = KEEPALIVE_TIME_MS) -> list[tuple[str, Any]]:
    """The client's gRPC channel options."""
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        # Reconnect quickly after a broker restart (gRPC's default first backoff is 1 s).
        # Not min_reconnect_backoff_ms: gRPC takes it as the time one connection attempt may
        # take, and at 50 ms a loaded machine's slower handshake failed every call.
        ("grpc.initial_reconnect_backoff_ms", 50),
        ("grpc.min_reconnect_backoff_ms", CONNECT_TIMEOUT_MS),
        ("grpc.max_reconnect_backoff_ms", 1000),
        ("grpc.keepalive_time_ms", keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.enable_retries", 0),
        # The consumer's Subscribe stream is read by the fetcher thread itself instead of being
        # handed over by the channel's polling thread: one thread wake-up less per message
        # (docs/performance.md, Latency). Affects server-streaming calls only.
        (
            "SingleThreadedUnaryStream",
            1,
        ),  # grpc.experimental.ChannelOptions.SingleThreadedUnaryStream
    ]


CHANNEL_OPTIONS = channel_options()


TOKEN_ENV = "LOGSTREAM_TOKEN"


@dataclass(frozen=True)
class ChannelSecurity:
    """How a client reaches a broker: TLS (``ca`` verifies the broker; ``cert`` + ``key``
    are the client's own certificate for mutual TLS) and an API token sent with every call
    as ``authorization: Bearer <token>``. ``token=None`` reads ``LOGSTREAM_TOKEN``."""

    tls: bool = False
    ca: str | Path | None = None
    cert: str | Path | None = None
    key: str | Path | None = None
    token: str | None = None

    @classmethod
    def of(
        cls,
        *,
        tls: bool = False,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        token: str | None = None,
    ) -> ChannelSecurity:
        if bool(cert) != bool(key):
            raise errors.InvalidConfigError("a client certificate needs its key (cert= and key=)")
        token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        return cls(bool(tls or ca or cert), ca, cert, key, token)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        def read(path: str | Path | None, what: str, marker: str) -> bytes | None:
            if path is None:
                return None
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                raise errors.InvalidConfigError(f"cannot read {what} {path}: {exc}") from exc
            # gRPC's own word for a wrong file is "Failed to create security handshaker"
            if marker.encode() not in data:
                raise errors.InvalidConfigError(f"{what} {path} has no PEM line {marker!r}")
            return data

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca, "CA file", "-----BEGIN CERTIFICATE-----"),
            private_key=read(self.key, "client key", "PRIVATE KEY-----"),
            certificate_chain=read(self.cert, "client certificate", "-----BEGIN CERTIFICATE-----"),
        )


class _ClientCallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: Any
    compression: Any


class _BearerToken(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``authorization: Bearer <token>`` to every call's metadata."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details: Any) -> _ClientCallDetails:
        return _ClientCallDetails(
            details.method,
            details.timeout,
            (*(details.metadata or ()), self._header),
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def translate(exc: grpc.RpcError, address: str = "") -> errors.LogstreamError:
    """The logstream exception for a failed RPC (does not raise)."""
    err = error_from_rpc(exc)
    if isinstance(err, errors.BrokerNotAvailableError) and address:
        hint = ""
        if "Socket closed" in err.message:
            hint = (
                " (the broker closed the connection: if it uses TLS, connect with tls=True /"
                " --tls; under mutual TLS it refuses a missing, expired or unknown client"
                " certificate)"
            )
        elif "WRONG_VERSION_NUMBER" in err.message:
            hint = " (the broker does not speak TLS: connect without tls)"
        err = errors.BrokerNotAvailableError(
            f"broker at {address} not available: {err.message}{hint}"
        )
    return err


def _call(method: Callable[..., T], request: Any, timeout: float | None, address: str) -> T:
    """Invoke a unary stub method; a gRPC failure becomes a ``LogstreamError``."""
    try:
        return method(request, timeout=timeout)
    except grpc.RpcError as exc:
        raise translate(exc, address) from exc


def _iterate(stream: Iterator[T], address: str) -> Iterator[T]:
    """Iterate a server stream, translating a gRPC failure at any point."""
    try:
        yield from stream
    except grpc.RpcError as exc:
        raise translate(exc, address) from exc


class Transport:
    """A gRPC channel to one broker: the only client module that speaks gRPC.

    Pass one as ``bootstrap`` to share a connection or to set connection options, e.g.
    ``Consumer(Transport(address, keepalive_time_ms=60_000))``.

    Thread-safe (gRPC channels are). ``close()`` is idempotent; calls after it fail with
    ``BrokerNotAvailableError`` (the channel is gone) or are refused by the owner first.
    The raw stubs (``log``, ``admin``, ``group``) stay reachable for tests of the broker's
    wire behaviour; the client itself uses only the typed methods.
    """

    def __init__(
        self,
        address: str,
        *,
        options: list[tuple[str, Any]] | None = None,
        security: ChannelSecurity | None = None,
        keepalive_time_ms: int = KEEPALIVE_TIME_MS,
    ) -> None:
        if not address or ":" not in address:
            raise errors.InvalidRequestError(f"broker address must be host:port, got {address!r}")
        self.address = address
        security = security or ChannelSecurity.of()
        if options is None:
            options = channel_options(keepalive_time_ms=keepalive_time_ms)
        channel = (
            grpc.secure_channel(address, security.channel_credentials(), options=options)
            if security.tls
            else grpc.insecure_channel(address, options=options)
        )
        self._raw_channel = channel
        if security.token:
            channel = grpc.intercept_channel(channel, _BearerToken(security.token))
        self._channel = channel
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
        self.acl = security_pb2_grpc.SecurityStub(self._channel)
        self.queue = queue_pb2_grpc.QueueStub(self._channel)
        self._closed = False
        self._drops = 0
        self._was_ready = False
        self._watching = False  # the connectivity watch starts with the first question

    # -- Log
    def produce_stream(self, requests: Iterator[bytes]) -> ProduceStreamCall:
        try:
            call = self._produce_stream(requests)
        except grpc.RpcError as exc:
            raise translate(exc, self.address) from exc
        return _TranslatedStream(call, self.address)

    def produce(
        self, request: log_pb2.ProduceRequest, *, timeout: float | None
    ) -> log_pb2.ProduceResponse:
        return _call(self.log.Produce, request, timeout, self.address)

    def init_producer_id(
        self, request: log_pb2.InitProducerIdRequest, *, timeout: float | None
    ) -> log_pb2.InitProducerIdResponse:
        return _call(self.log.InitProducerId, request, timeout, self.address)

    def fetch(
        self, request: log_pb2.FetchRequest, *, timeout: float | None
    ) -> PendingCall[log_pb2.FetchResponse]:
        return _TranslatedFuture(self.log.Fetch.future(request, timeout=timeout), self.address)

    def subscribe(self, request: log_pb2.SubscribeRequest) -> StreamCall[log_pb2.FetchResponse]:
        return self._open_stream(self.log.Subscribe, request)

    def _open_stream(self, method: Callable[[Any], Any], request: Any) -> _TranslatedStream[Any]:
        """Start a response-streaming call, with opening errors as the client's types."""
        try:
            call = method(request)
        except ValueError as exc:  # the channel was closed under the caller
            raise errors.ClientClosedError("transport closed") from exc
        except grpc.RpcError as exc:
            raise translate(exc, self.address) from exc
        return _TranslatedStream(call, self.address)

    def list_offsets(
        self, request: log_pb2.ListOffsetsRequest, *, timeout: float | None
    ) -> log_pb2.ListOffsetsResponse:
        return _call(self.log.ListOffsets, request, timeout, self.address)

    # -- Admin
    def create_topics(
        self, request: admin_pb2.CreateTopicsRequest, *, timeout: float | None
    ) -> admin_pb2.CreateTopicsResponse:
        return _call(self.admin.CreateTopics, request, timeout, self.address)

    def delete_topics(
        self, request: admin_pb2.DeleteTopicsRequest, *, timeout: float | None
    ) -> admin_pb2.DeleteTopicsResponse:
        return _call(self.admin.DeleteTopics, request, timeout, self.address)

    def list_topics(
        self, request: admin_pb2.ListTopicsRequest, *, timeout: float | None
    ) -> admin_pb2.ListTopicsResponse:
        return _call(self.admin.ListTopics, request, timeout, self.address)

    def describe_topics(
        self, request: admin_pb2.DescribeTopicsRequest, *, timeout: float | None
    ) -> admin_pb2.DescribeTopicsResponse:
        return _call(self.admin.DescribeTopics, request, timeout, self.address)

    # -- Security (ACLs; not part of TransportLike: the in-memory fake has no broker ACLs)
    def create_acls(
        self, request: security_pb2.CreateAclsRequest, *, timeout: float | None
    ) -> security_pb2.CreateAclsResponse:
        return _call(self.acl.CreateAcls, request, timeout, self.address)

    def list_acls(
        self, request: security_pb2.ListAclsRequest, *, timeout: float | None
    ) -> security_pb2.ListAclsResponse:
        return _call(self.acl.ListAcls, request, timeout, self.address)

    def delete_acls(
        self, request: security_pb2.DeleteAclsRequest, *, timeout: float | None
    ) -> security_pb2.DeleteAclsResponse:
        return _call(self.acl.DeleteAcls, request, timeout, self.address)

    def create_user(
        self, request: security_pb2.CreateUserRequest, *, timeout: float | None
    ) -> security_pb2.CreateUserResponse:
        return _call(self.acl.CreateUser, request, timeout, self.address)

    def delete_user(
        self, request: security_pb2.DeleteUserRequest, *, timeout: float | None
    ) -> security_pb2.DeleteUserResponse:
        return _call(self.acl.DeleteUser, request, timeout, self.address)

    def list_users(
        self, request: security_pb2.ListUsersRequest, *, timeout: float | None
    ) -> security_pb2.ListUsersResponse:
        return _call(self.acl.ListUsers, request, timeout, self.address)

    def set_quota(
        self, request: security_pb2.SetQuotaRequest, *, timeout: float | None
    ) -> security_pb2.SetQuotaResponse:
        return _call(self.acl.SetQuota, request, timeout, self.address)

    def list_quotas(
        self, request: security_pb2.ListQuotasRequest, *, timeout: float | None
    ) -> security_pb2.ListQuotasResponse:
        return _call(self.acl.ListQuotas, request, timeout, self.address)

    def alter_topic_config(
        self, request: admin_pb2.AlterTopicConfigRequest, *, timeout: float | None
    ) -> admin_pb2.AlterTopicConfigResponse:
        return _call(self.admin.AlterTopicConfig, request, timeout, self.address)

    def create_partitions(
        self, request: admin_pb2.CreatePartitionsRequest, *, timeout: float | None
    ) -> admin_pb2.CreatePartitionsResponse:
        return _call(self.admin.CreatePartitions, request, timeout, self.address)

    # -- Group
    def heartbeat(
        self, request: group_pb2.HeartbeatRequest, *, timeout: float | None
    ) -> group_pb2.HeartbeatResponse:
        return _call(self.group.Heartbeat, request, timeout, self.address)

    def commit_offsets(
        self, request: group_pb2.CommitOffsetsRequest, *, timeout: float | None
    ) -> group_pb2.CommitOffsetsResponse:
        return _call(self.group.CommitOffsets, request, timeout, self.address)

    def fetch_offsets(
        self, request: group_pb2.FetchOffsetsRequest, *, timeout: float | None
    ) -> group_pb2.FetchOffsetsResponse:
        return _call(self.group.FetchOffsets, request, timeout, self.address)

    def list_groups(
        self, request: group_pb2.ListGroupsRequest, *, timeout: float | None
    ) -> group_pb2.ListGroupsResponse:
        return _call(self.group.ListGroups, request, timeout, self.address)

    def describe_group(
        self, request: group_pb2.DescribeGroupRequest, *, timeout: float | None
    ) -> group_pb2.DescribeGroupResponse:
        return _call(self.group.DescribeGroup, request, timeout, self.address)

    def delete_group(
        self, request: group_pb2.DeleteGroupRequest, *, timeout: float | None
    ) -> group_pb2.DeleteGroupResponse:
        return _call(self.group.DeleteGroup, request, timeout, self.address)

    def reset_offsets(
        self, request: group_pb2.ResetOffsetsRequest, *, timeout: float | None
    ) -> group_pb2.ResetOffsetsResponse:
        return _call(self.group.ResetOffsets, request, timeout, self.address)

    # -- Queue
    def queue_join(
        self, request: queue_pb2.QueueJoinRequest, *, timeout: float | None
    ) -> queue_pb2.QueueJoinResponse:
        return _call(self.queue.Join, request, timeout, self.address)

    def queue_leave(
        self, request: queue_pb2.QueueLeaveRequest, *, timeout: float | None
    ) -> queue_pb2.QueueLeaveResponse:
        return _call(self.queue.Leave, request, timeout, self.address)

    def queue_fetch(
        self, request: queue_pb2.QueueFetchRequest, *, timeout: float | None
    ) -> queue_pb2.QueueFetchResponse:
        return _call(self.queue.Fetch, request, timeout, self.address)

    def queue_settle(
        self, request: queue_pb2.QueueSettleRequest, *, timeout: float | None
    ) -> queue_pb2.QueueSettleResponse:
        return _call(self.queue.Settle, request, timeout, self.address)

    def queue_session(
        self, requests: Iterator[queue_pb2.QueueSessionRequest]
    ) -> StreamCall[queue_pb2.QueueSessionResponse]:
        return self._open_stream(self.queue.Session, requests)

    def create_queue_group(
        self, request: queue_pb2.CreateQueueGroupRequest, *, timeout: float | None
    ) -> queue_pb2.CreateQueueGroupResponse:
        return _call(self.queue.CreateQueueGroup, request, timeout, self.address)

    def alter_queue_group(
        self, request: queue_pb2.AlterQueueGroupRequest, *, timeout: float | None
    ) -> queue_pb2.AlterQueueGroupResponse:
        return _call(self.queue.AlterQueueGroup, request, timeout, self.address)

    def describe_queue_group(
        self, request: queue_pb2.DescribeQueueGroupRequest, *, timeout: float | None
    ) -> queue_pb2.DescribeQueueGroupResponse:
        return _call(self.queue.DescribeQueueGroup, request, timeout, self.address)

    def list_queue_groups(
        self, request: queue_pb2.ListQueueGroupsRequest, *, timeout: float | None
    ) -> queue_pb2.ListQueueGroupsResponse:
        return _call(self.queue.ListQueueGroups, request, timeout, self.address)

    def delete_queue_group(
        self, request: queue_pb2.DeleteQueueGroupRequest, *, timeout: float | None
    ) -> queue_pb2.DeleteQueueGroupResponse:
        return _call(self.queue.DeleteQueueGroup, request, timeout, self.address)

    def queue_peek(
        self, request: queue_pb2.PeekRequest, *, timeout: float | None
    ) -> queue_pb2.PeekResponse:
        return _call(self.queue.Peek, request, timeout, self.address)

    def queue_redrive(
        self, request: queue_pb2.RedriveRequest, *, timeout: float | None
    ) -> queue_pb2.RedriveResponse:
        return _call(self.queue.Redrive, request, timeout, self.address)

    def connection_drops(self) -> int:
        if not self._watching:
            self._watching = True
            self._raw_channel.subscribe(self._on_connectivity, try_to_connect=False)
        return self._drops

    def _on_connectivity(self, state: grpc.ChannelConnectivity) -> None:
        # gRPC's watcher thread; a count only goes up, so readers need no lock
        if state is grpc.ChannelConnectivity.READY:
            self._was_ready = True
        elif self._was_ready:
            self._was_ready = False
            self._drops += 1

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._watching:
                self._raw_channel.unsubscribe(self._on_connectivity)
            self._raw_channel.close()


class _TranslatedStream(Generic[T]):
    """A gRPC streaming call whose failures surface as ``LogstreamError``."""

    def __init__(self, call: Any, address: str) -> None:
        self._call = call
        self._address = address

    def __iter__(self) -> Iterator[T]:
        return _iterate(self._call, self._address)

    def cancel(self) -> None:
        self._call.cancel()  # a no-op once the call is over


class _TranslatedFuture(Generic[T]):
    """A ``stub.X.future(...)`` call whose failures surface as ``LogstreamError``."""

    def __init__(self, future: Any, address: str) -> None:
        self._future = future
        self._address = address

    def result(self) -> T:
        try:
            return self._future.result()  # type: ignore[no-any-return]
        except grpc.FutureCancelledError as exc:
            raise errors.ClientClosedError("request cancelled") from exc
        except grpc.RpcError as exc:
            raise translate(exc, self._address) from exc

    def cancel(self) -> None:
        self._future.cancel()


def connect(
    bootstrap: str | TransportLike, security: ChannelSecurity | None = None
) -> TransportLike:
    """A transport for ``bootstrap``: an address string, or a transport object to share
    (``security`` applies to a new connection only)."""
    if isinstance(bootstrap, str):
        return Transport(bootstrap.split(",")[0].strip(), security=security)
    return bootstrap
