"""What the client needs from a connection to one broker, as typed protocols.

:class:`TransportLike` has one typed method per RPC the client makes, taking and returning
protocol messages and raising only ``LogstreamError``. Streams and background calls come back
as :class:`StreamCall` / :class:`PendingCall`, which any thread may ``cancel``. Two classes
implement it: the gRPC ``logstream.client.transport.Transport`` and the in-memory fake
``logstream.testing.transport.InMemoryTransport``; the client runs unchanged on either.
No gRPC here: the seam is plain Python.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, TypeVar

from logstream.protocol import admin_pb2, group_pb2, log_pb2, queue_pb2

T_co = TypeVar("T_co", covariant=True)


class StreamCall(Protocol[T_co]):
    """An open server stream: iterate the answers (a failure raises ``LogstreamError``);
    ``cancel`` ends it from any thread (iteration then raises ``ClientClosedError`` or
    stops)."""

    def __iter__(self) -> Iterator[T_co]: ...

    def cancel(self) -> None: ...


ProduceStreamCall = StreamCall[log_pb2.ProduceResponse]
"""An open ProduceStream."""


class PendingCall(Protocol[T_co]):
    """A unary call running in the background (a long-poll Fetch)."""

    def result(self) -> T_co:
        """Wait for the answer; a failure raises ``LogstreamError``, a cancelled call
        ``ClientClosedError``."""
        ...

    def cancel(self) -> None: ...


class TransportLike(Protocol):
    """What the client needs from a connection to one broker (real or fake).

    Every method raises only ``LogstreamError`` subclasses; requests and answers are the
    protocol's messages (``logstream.protocol``). ``timeout`` is in seconds.
    """

    address: str

    # -- Log service
    def produce_stream(self, requests: Iterator[bytes]) -> ProduceStreamCall:
        """Open a ProduceStream fed with serialized ``ProduceRequest`` messages
        (``logstream.client.wire``)."""
        ...

    def produce(
        self, request: log_pb2.ProduceRequest, *, timeout: float | None
    ) -> log_pb2.ProduceResponse:
        """One unary Produce (a single reply; the Producer streams instead)."""
        ...

    def init_producer_id(
        self, request: log_pb2.InitProducerIdRequest, *, timeout: float | None
    ) -> log_pb2.InitProducerIdResponse: ...

    def fetch(
        self, request: log_pb2.FetchRequest, *, timeout: float | None
    ) -> PendingCall[log_pb2.FetchResponse]: ...

    def subscribe(self, request: log_pb2.SubscribeRequest) -> StreamCall[log_pb2.FetchResponse]:
        """Open a Subscribe stream (the broker pushes appends as they land)."""
        ...

    def list_offsets(
        self, request: log_pb2.ListOffsetsRequest, *, timeout: float | None
    ) -> log_pb2.ListOffsetsResponse: ...

    # -- Admin service
    def create_topics(
        self, request: admin_pb2.CreateTopicsRequest, *, timeout: float | None
    ) -> admin_pb2.CreateTopicsResponse: ...

    def delete_topics(
        self, request: admin_pb2.DeleteTopicsRequest, *, timeout: float | None
    ) -> admin_pb2.DeleteTopicsResponse: ...

    def list_topics(
        self, request: admin_pb2.ListTopicsRequest, *, timeout: float | None
    ) -> admin_pb2.ListTopicsResponse: ...

    def describe_topics(
        self, request: admin_pb2.DescribeTopicsRequest, *, timeout: float | None
    ) -> admin_pb2.DescribeTopicsResponse: ...

    def alter_topic_config(
        self, request: admin_pb2.AlterTopicConfigRequest, *, timeout: float | None
    ) -> admin_pb2.AlterTopicConfigResponse: ...

    def create_partitions(
        self, request: admin_pb2.CreatePartitionsRequest, *, timeout: float | None
    ) -> admin_pb2.CreatePartitionsResponse: ...

    # -- Group service
    def heartbeat(
        self, request: group_pb2.HeartbeatRequest, *, timeout: float | None
    ) -> group_pb2.HeartbeatResponse: ...

    def commit_offsets(
        self, request: group_pb2.CommitOffsetsRequest, *, timeout: float | None
    ) -> group_pb2.CommitOffsetsResponse: ...

    def fetch_offsets(
        self, request: group_pb2.FetchOffsetsRequest, *, timeout: float | None
    ) -> group_pb2.FetchOffsetsResponse: ...

    def list_groups(
        self, request: group_pb2.ListGroupsRequest, *, timeout: float | None
    ) -> group_pb2.ListGroupsResponse: ...

    def describe_group(
        self, request: group_pb2.DescribeGroupRequest, *, timeout: float | None
    ) -> group_pb2.DescribeGroupResponse: ...

    def delete_group(
        self, request: group_pb2.DeleteGroupRequest, *, timeout: float | None
    ) -> group_pb2.DeleteGroupResponse: ...

    def reset_offsets(
        self, request: group_pb2.ResetOffsetsRequest, *, timeout: float | None
    ) -> group_pb2.ResetOffsetsResponse: ...

    # -- Queue service
    def queue_join(
        self, request: queue_pb2.QueueJoinRequest, *, timeout: float | None
    ) -> queue_pb2.QueueJoinResponse: ...

    def queue_leave(
        self, request: queue_pb2.QueueLeaveRequest, *, timeout: float | None
    ) -> queue_pb2.QueueLeaveResponse: ...

    def queue_fetch(
        self, request: queue_pb2.QueueFetchRequest, *, timeout: float | None
    ) -> queue_pb2.QueueFetchResponse: ...

    def queue_settle(
        self, request: queue_pb2.QueueSettleRequest, *, timeout: float | None
    ) -> queue_pb2.QueueSettleResponse: ...

    def queue_session(
        self, requests: Iterator[queue_pb2.QueueSessionRequest]
    ) -> StreamCall[queue_pb2.QueueSessionResponse]:
        """Open a member's push session (the broker pushes acquired records)."""
        ...

    def create_queue_group(
        self, request: queue_pb2.CreateQueueGroupRequest, *, timeout: float | None
    ) -> queue_pb2.CreateQueueGroupResponse: ...

    def alter_queue_group(
        self, request: queue_pb2.AlterQueueGroupRequest, *, timeout: float | None
    ) -> queue_pb2.AlterQueueGroupResponse: ...

    def describe_queue_group(
        self, request: queue_pb2.DescribeQueueGroupRequest, *, timeout: float | None
    ) -> queue_pb2.DescribeQueueGroupResponse: ...

    def list_queue_groups(
        self, request: queue_pb2.ListQueueGroupsRequest, *, timeout: float | None
    ) -> queue_pb2.ListQueueGroupsResponse: ...

    def delete_queue_group(
        self, request: queue_pb2.DeleteQueueGroupRequest, *, timeout: float | None
    ) -> queue_pb2.DeleteQueueGroupResponse: ...

    def queue_peek(
        self, request: queue_pb2.PeekRequest, *, timeout: float | None
    ) -> queue_pb2.PeekResponse: ...

    def queue_redrive(
        self, request: queue_pb2.RedriveRequest, *, timeout: float | None
    ) -> queue_pb2.RedriveResponse: ...

    def connection_drops(self) -> int:
        """How often the connection to the broker was lost so far (a broker restart is one;
        counted from the first call); 0 for a transport that cannot tell."""
        ...

    def close(self) -> None: ...
