"""The Group gRPC service: protobuf -> ``GroupCoordinator`` call -> protobuf.

Thin on purpose: the protocol lives in ``logstream.coordinator``. Whole-request failures
(unknown member, stale epoch, unknown group, non-empty group, bad arguments) are raised and
leave as a gRPC status with the numeric code in trailing metadata (``logstream.broker.rpc``);
per-partition failures of a commit or fetch travel as ``error_code``/``error_message``
fields. Plain methods: they run in the server's thread pool. Thread-safe: the coordinator
is.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc

from logstream.broker.broker import Broker
from logstream.broker.http import event
from logstream.broker.rpc import error_fields
from logstream.coordinator import GroupCoordinator, ResetSpec
from logstream.coordinator.offsets import CommittedOffset
from logstream.errors import GroupKindMismatchError, InvalidRequestError
from logstream.protocol import common_pb2, group_pb2, group_pb2_grpc
from logstream.types import OffsetAndMetadata, TopicPartition

log = logging.getLogger("logstream.broker.groups")

_RESET_KINDS = {
    "to_earliest": "earliest",
    "to_latest": "latest",
    "to_offset": "offset",
    "to_timestamp_ms": "timestamp",
    "shift_by": "shift",
}


def _tps(items: Any) -> list[TopicPartition]:
    return [TopicPartition(p.topic, p.partition) for p in items]


def _tp_pb(tps: Any) -> list[common_pb2.TopicPartition]:
    return [common_pb2.TopicPartition(topic=t, partition=p) for t, p in sorted(tps)]


def _committed_pb(tp: TopicPartition, c: CommittedOffset | None) -> group_pb2.CommittedOffset:
    if c is None:
        return group_pb2.CommittedOffset(topic=tp.topic, partition=tp.partition, offset=-1)
    return group_pb2.CommittedOffset(
        topic=tp.topic,
        partition=tp.partition,
        offset=c.offset,
        metadata=c.metadata,
        commit_timestamp_ms=c.commit_timestamp_ms,
    )


class GroupServicer(group_pb2_grpc.GroupServicer):
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    @property
    def coordinator(self) -> GroupCoordinator:
        coordinator = self.broker.coordinator
        assert isinstance(coordinator, GroupCoordinator)
        return coordinator

    def Heartbeat(self, request: Any, context: grpc.ServicerContext) -> Any:
        queues: Any = self.broker.queues
        if request.member_epoch == 0 and queues is not None and queues.exists(request.group_id):
            raise GroupKindMismatchError(
                f"{request.group_id!r} is a queue group; a consumer group needs another name"
            )
        with self.broker.operation():
            r = self.coordinator.heartbeat(
                request.group_id,
                request.member_id,
                request.member_epoch,
                instance_id=request.instance_id,
                topics=list(request.topics),
                assignor=request.assignor,
                session_timeout_ms=request.session_timeout_ms,
                owned=_tps(request.owned),
                client_id=request.client_id or context.peer()[:255],
                request_seq=request.request_seq,
            )
        if r is None:  # left
            return group_pb2.HeartbeatResponse(member_id=request.member_id, member_epoch=-1)
        return group_pb2.HeartbeatResponse(
            member_id=r.member_id,
            member_epoch=r.member_epoch,
            heartbeat_interval_ms=r.heartbeat_interval_ms,
            assignment=_tp_pb(r.assignment),
            assignment_changed=r.assignment_changed,
        )

    def CommitOffsets(self, request: Any, context: grpc.ServicerContext) -> Any:
        offsets = {
            TopicPartition(o.topic, o.partition): OffsetAndMetadata(o.offset, o.metadata)
            for o in request.offsets
        }
        with self.broker.operation():
            results = self.coordinator.commit(
                request.group_id, request.member_id, request.member_epoch, offsets
            )
        out = []
        for tp, exc in sorted(results.items()):
            code, message = error_fields(exc)
            out.append(
                group_pb2.PartitionError(
                    topic=tp.topic, partition=tp.partition, error_code=code, error_message=message
                )
            )
        return group_pb2.CommitOffsetsResponse(partitions=out)

    def FetchOffsets(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.broker.operation():
            got = self.coordinator.fetch_offsets(request.group_id, _tps(request.partitions))
        return group_pb2.FetchOffsetsResponse(
            offsets=[_committed_pb(tp, c) for tp, c in got.items()]
        )

    def ListGroups(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.broker.operation():
            groups = self.coordinator.list_groups()
        return group_pb2.ListGroupsResponse(
            groups=[
                group_pb2.GroupSummary(group_id=g.group_id, state=g.state, members=g.members)
                for g in groups
            ]
        )

    def DescribeGroup(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.broker.operation():
            d = self.coordinator.describe_group(request.group_id)
        return group_pb2.DescribeGroupResponse(
            group_id=d.group_id,
            state=d.state,
            group_epoch=d.group_epoch,
            assignor=d.assignor,
            members=[
                group_pb2.MemberDescription(
                    member_id=m.member_id,
                    instance_id=m.instance_id,
                    client_id=m.client_id,
                    member_epoch=m.member_epoch,
                    assignment=_tp_pb(m.assignment),
                    topics=list(m.topics),
                )
                for m in d.members
            ],
            partitions=[
                group_pb2.PartitionLag(
                    topic=p.topic,
                    partition=p.partition,
                    member_id=p.member_id,
                    committed_offset=p.committed_offset,
                    log_end_offset=p.log_end_offset,
                    lag=p.lag,
                    time_lag_ms=p.time_lag_ms,
                )
                for p in d.partitions
            ],
        )

    def DeleteGroup(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.broker.operation():
            self.coordinator.delete_group(request.group_id)
        log.info(
            "group %s deleted",
            request.group_id,
            extra=event("group_deleted", group=request.group_id),
        )
        return group_pb2.DeleteGroupResponse()

    def ResetOffsets(self, request: Any, context: grpc.ServicerContext) -> Any:
        which = request.WhichOneof("target")
        if which is None:
            raise InvalidRequestError(
                "reset needs a target: to_earliest, to_latest, to_offset, to_timestamp_ms "
                "or shift_by"
            )
        value = getattr(request, which)
        spec = ResetSpec(_RESET_KINDS[which], 0 if isinstance(value, bool) else int(value))
        with self.broker.operation():
            plan = self.coordinator.reset_offsets(
                request.group_id,
                request.topic,
                list(request.partitions),
                spec,
                execute=request.execute,
            )
        if request.execute:
            log.info(
                "group %s offsets reset on %s (%d partitions)",
                request.group_id,
                request.topic,
                len(plan),
                extra=event(
                    "group_offsets_reset",
                    group=request.group_id,
                    topic=request.topic,
                    partitions=len(plan),
                ),
            )
        return group_pb2.ResetOffsetsResponse(
            plan=[
                group_pb2.CommittedOffset(topic=tp.topic, partition=tp.partition, offset=o)
                for tp, o in plan.items()
            ]
        )
