"""The calls of :class:`logstream.client.transport_api.TransportLike` that
:class:`~logstream.testing.transport.InMemoryTransport` does not model: the group, queue and
rarer admin calls. Each raises ``NotImplementedError`` naming the call; test code that needs
them runs against a real broker (:mod:`logstream.testing.broker`).
"""

from __future__ import annotations

from collections.abc import Iterator

from logstream.client.transport_api import StreamCall
from logstream.protocol import admin_pb2, group_pb2, queue_pb2


class UnmodelledCalls:
    """Base of the in-memory transport: every call here raises ``NotImplementedError``.
    Holds no state, so it is safe from any thread."""

    def _unsupported(self, name: str) -> NotImplementedError:
        return NotImplementedError(f"InMemoryTransport does not model {name}: use run_broker")

    def alter_topic_config(
        self, request: admin_pb2.AlterTopicConfigRequest, *, timeout: float | None
    ) -> admin_pb2.AlterTopicConfigResponse:
        raise self._unsupported("AlterTopicConfig")

    def create_partitions(
        self, request: admin_pb2.CreatePartitionsRequest, *, timeout: float | None
    ) -> admin_pb2.CreatePartitionsResponse:
        raise self._unsupported("CreatePartitions")

    def heartbeat(
        self, request: group_pb2.HeartbeatRequest, *, timeout: float | None
    ) -> group_pb2.HeartbeatResponse:
        raise self._unsupported("Heartbeat")

    def commit_offsets(
        self, request: group_pb2.CommitOffsetsRequest, *, timeout: float | None
    ) -> group_pb2.CommitOffsetsResponse:
        raise self._unsupported("CommitOffsets")

    def fetch_offsets(
        self, request: group_pb2.FetchOffsetsRequest, *, timeout: float | None
    ) -> group_pb2.FetchOffsetsResponse:
        raise self._unsupported("FetchOffsets")

    def list_groups(
        self, request: group_pb2.ListGroupsRequest, *, timeout: float | None
    ) -> group_pb2.ListGroupsResponse:
        raise self._unsupported("ListGroups")

    def describe_group(
        self, request: group_pb2.DescribeGroupRequest, *, timeout: float | None
    ) -> group_pb2.DescribeGroupResponse:
        raise self._unsupported("DescribeGroup")

    def delete_group(
        self, request: group_pb2.DeleteGroupRequest, *, timeout: float | None
    ) -> group_pb2.DeleteGroupResponse:
        raise self._unsupported("DeleteGroup")

    def reset_offsets(
        self, request: group_pb2.ResetOffsetsRequest, *, timeout: float | None
    ) -> group_pb2.ResetOffsetsResponse:
        raise self._unsupported("ResetOffsets")

    # -- Queue service: not simulated (queue groups need a real broker)
    def queue_join(
        self, request: queue_pb2.QueueJoinRequest, *, timeout: float | None
    ) -> queue_pb2.QueueJoinResponse:
        raise self._unsupported("queue_join")

    def queue_leave(
        self, request: queue_pb2.QueueLeaveRequest, *, timeout: float | None
    ) -> queue_pb2.QueueLeaveResponse:
        raise self._unsupported("queue_leave")

    def queue_fetch(
        self, request: queue_pb2.QueueFetchRequest, *, timeout: float | None
    ) -> queue_pb2.QueueFetchResponse:
        raise self._unsupported("queue_fetch")

    def queue_settle(
        self, request: queue_pb2.QueueSettleRequest, *, timeout: float | None
    ) -> queue_pb2.QueueSettleResponse:
        raise self._unsupported("queue_settle")

    def queue_session(
        self, requests: Iterator[queue_pb2.QueueSessionRequest]
    ) -> StreamCall[queue_pb2.QueueSessionResponse]:
        raise self._unsupported("queue_session")

    def create_queue_group(
        self, request: queue_pb2.CreateQueueGroupRequest, *, timeout: float | None
    ) -> queue_pb2.CreateQueueGroupResponse:
        raise self._unsupported("create_queue_group")

    def alter_queue_group(
        self, request: queue_pb2.AlterQueueGroupRequest, *, timeout: float | None
    ) -> queue_pb2.AlterQueueGroupResponse:
        raise self._unsupported("alter_queue_group")

    def describe_queue_group(
        self, request: queue_pb2.DescribeQueueGroupRequest, *, timeout: float | None
    ) -> queue_pb2.DescribeQueueGroupResponse:
        raise self._unsupported("describe_queue_group")

    def list_queue_groups(
        self, request: queue_pb2.ListQueueGroupsRequest, *, timeout: float | None
    ) -> queue_pb2.ListQueueGroupsResponse:
        raise self._unsupported("list_queue_groups")

    def delete_queue_group(
        self, request: queue_pb2.DeleteQueueGroupRequest, *, timeout: float | None
    ) -> queue_pb2.DeleteQueueGroupResponse:
        raise self._unsupported("delete_queue_group")

    def queue_peek(
        self, request: queue_pb2.PeekRequest, *, timeout: float | None
    ) -> queue_pb2.PeekResponse:
        raise self._unsupported("queue_peek")

    def queue_redrive(
        self, request: queue_pb2.RedriveRequest, *, timeout: float | None
    ) -> queue_pb2.RedriveResponse:
        raise self._unsupported("queue_redrive")
