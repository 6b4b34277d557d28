"""Consumer-group administration: list, describe (with lag and time lag), delete, reset
offsets, and read committed offsets. Every method is one RPC of the Group service; failures
come back as the exact ``LogstreamError`` subclass (``GroupIdNotFoundError``,
``NonEmptyGroupError``, ``UnknownTopicOrPartitionError``, ...).

Thread-safe (one gRPC channel; no other state).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from logstream import errors
from logstream.client.admin_connection import AdminConnection
from logstream.client.queue_admin import QueueAdminMixin
from logstream.protocol import common_pb2, group_pb2
from logstream.types import TopicPartition


@dataclass(frozen=True, slots=True)
class GroupListing:
    group_id: str
    state: str  # Empty, Reconciling, Stable
    members: int


@dataclass(frozen=True, slots=True)
class GroupMember:
    member_id: str
    instance_id: str
    client_id: str
    member_epoch: int
    assignment: tuple[TopicPartition, ...]
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """Where the group stands in one partition. ``committed`` is -1 when nothing is
    committed; ``time_lag_ms`` is the age of the record at the committed position (-1 when
    the group has read everything)."""

    topic: str
    partition: int
    member_id: str
    committed: int
    log_end_offset: int
    lag: int
    time_lag_ms: int


@dataclass(frozen=True, slots=True)
class GroupDescription:
    group_id: str
    state: str
    group_epoch: int
    assignor: str
    members: tuple[GroupMember, ...]
    partitions: tuple[PartitionLag, ...]

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.partitions)


RESET_TARGETS = ("earliest", "latest", "offset", "timestamp", "shift")


class GroupAdmin(QueueAdminMixin, AdminConnection):
    """Administration of consumer groups and queue groups (:class:`QueueAdminMixin`) on
    one broker."""

    def list_groups(self) -> list[GroupListing]:
        resp = self._transport.list_groups(group_pb2.ListGroupsRequest(), timeout=self._timeout)
        return [GroupListing(g.group_id, g.state, g.members) for g in resp.groups]

    def describe_group(self, group_id: str) -> GroupDescription:
        r = self._transport.describe_group(
            group_pb2.DescribeGroupRequest(group_id=group_id), timeout=self._timeout
        )
        return GroupDescription(
            r.group_id,
            r.state,
            r.group_epoch,
            r.assignor,
            tuple(
                GroupMember(
                    m.member_id,
                    m.instance_id,
                    m.client_id,
                    m.member_epoch,
                    tuple(TopicPartition(p.topic, p.partition) for p in m.assignment),
                    tuple(m.topics),
                )
                for m in r.members
            ),
            tuple(
                PartitionLag(
                    p.topic,
                    p.partition,
                    p.member_id,
                    p.committed_offset,
                    p.log_end_offset,
                    p.lag,
                    p.time_lag_ms,
                )
                for p in r.partitions
            ),
        )

    def delete_group(self, group_id: str) -> None:
        """Delete an empty group and its committed offsets."""
        self._transport.delete_group(
            group_pb2.DeleteGroupRequest(group_id=group_id), timeout=self._timeout
        )

    def reset_offsets(
        self,
        group_id: str,
        topic: str,
        target: str,
        value: int = 0,
        *,
        partitions: Iterable[int] | None = None,
        execute: bool = False,
    ) -> dict[TopicPartition, int]:
        """Plan (dry run) or apply (``execute``) new offsets for an inactive group.

        ``target``: ``earliest``, ``latest``, ``offset`` (``value`` = the offset),
        ``timestamp`` (``value`` = ms since the epoch) or ``shift`` (``value`` = records,
        negative to go back). Returns the new offset per partition."""
        req = group_pb2.ResetOffsetsRequest(
            group_id=group_id, topic=topic, partitions=list(partitions or ()), execute=execute
        )
        if target == "earliest":
            req.to_earliest = True
        elif target == "latest":
            req.to_latest = True
        elif target == "offset":
            req.to_offset = value
        elif target == "timestamp":
            req.to_timestamp_ms = value
        elif target == "shift":
            req.shift_by = value
        else:
            raise errors.InvalidRequestError(
                f"reset target must be one of {', '.join(RESET_TARGETS)}, not {target!r}"
            )
        resp = self._transport.reset_offsets(req, timeout=self._timeout)
        return {TopicPartition(p.topic, p.partition): p.offset for p in resp.plan}

    def committed_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, int]:
        """Committed offsets (-1 where nothing is committed); all of them by default."""
        req = group_pb2.FetchOffsetsRequest(
            group_id=group_id,
            partitions=[
                common_pb2.TopicPartition(topic=t, partition=p) for t, p in (partitions or ())
            ],
        )
        resp = self._transport.fetch_offsets(req, timeout=self._timeout)
        return {TopicPartition(o.topic, o.partition): o.offset for o in resp.offsets}
