"""Consumer-group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
OffsetCommit, OffsetFetch, ListGroups, DescribeGroups.

Membership is the coordinator's classic-protocol groups (``coordinator/classic.py``):
the clients' own assignors run in their leader, and the broker passes the assignment bytes
through. Offsets go to the same committed-offsets table as native groups, so a native
consumer resumes from a Kafka client's commits and ``logstream group describe`` shows the
group, its members, commits and lag. The listener is every group's coordinator.

Concurrency: JoinGroup and SyncGroup wait on the coordinator's futures on the listener's
loop (no thread is held while a member waits for the others); commits and offset reads,
which touch storage, run on the pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any

from kio.index import load_entity_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader
from kio.static.constants import EntityType

from logstream.broker.broker import Broker
from logstream.coordinator import GroupCoordinator
from logstream.errors import LogstreamError
from logstream.kafka import wire
from logstream.kafka.access import Access
from logstream.kafka.log_apis import NODE_ID, error_code
from logstream.kafka.wire import Request, build, ms
from logstream.types import OffsetAndMetadata, TopicPartition

VERSIONS = {
    wire.FIND_COORDINATOR: (0, 3),
    wire.JOIN_GROUP: (0, 7),
    wire.SYNC_GROUP: (0, 5),
    wire.HEARTBEAT: (0, 4),
    wire.LEAVE_GROUP: (0, 4),
    wire.OFFSET_COMMIT: (2, 8),
    wire.OFFSET_FETCH: (1, 7),
    wire.LIST_GROUPS: (0, 4),
    wire.DESCRIBE_GROUPS: (0, 5),
}


def assigned_partitions(assignment: bytes) -> tuple[TopicPartition, ...]:
    """The partitions named by a consumer-protocol assignment (empty if not one)."""
    if len(assignment) < 2:
        return ()
    version = min(int.from_bytes(assignment[:2], "big", signed=True), 3)
    try:
        cls = load_entity_schema("consumer_protocol_assignment", max(version, 0), EntityType.data)
        data: Any
        data, _ = entity_reader(cls)(assignment, 2)
    except Exception:  # another protocol type's bytes: nothing to show
        return ()
    return tuple(
        TopicPartition(t.topic, int(p)) for t in data.assigned_partitions for p in t.partitions
    )


class GroupApis:
    def __init__(
        self,
        broker: Broker,
        advertised: Callable[[], tuple[str, int]],
        pool: Executor,
        access: Access | None = None,
    ) -> None:
        self.broker = broker
        self.advertised = advertised
        self.pool = pool
        self.access = access or Access()

    @property
    def coordinator(self) -> GroupCoordinator:
        coordinator = self.broker.coordinator
        assert isinstance(coordinator, GroupCoordinator)
        return coordinator

    def handlers(self) -> dict[int, Callable[[Request], Any]]:
        return {
            wire.FIND_COORDINATOR: self._on_pool(self.find_coordinator),
            wire.JOIN_GROUP: self._group_read(wire.JOIN_GROUP, self.join_group),
            wire.SYNC_GROUP: self._group_read(wire.SYNC_GROUP, self.sync_group),
            wire.HEARTBEAT: self._group_read(wire.HEARTBEAT, self._on_pool(self.heartbeat)),
            wire.LEAVE_GROUP: self._group_read(wire.LEAVE_GROUP, self._on_pool(self.leave_group)),
            wire.OFFSET_COMMIT: self._on_pool(self.offset_commit),
            wire.OFFSET_FETCH: self._on_pool(self.offset_fetch),
            wire.LIST_GROUPS: self._on_pool(self.list_groups),
            wire.DESCRIBE_GROUPS: self._on_pool(self.describe_groups),
        }

    def _on_pool(self, fn: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def run(req: Request) -> Any:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn, req)

        return run

    def _group_read(
        self, api_key: int, handler: Callable[[Request], Awaitable[Any]]
    ) -> Callable[[Request], Awaitable[Any]]:
        """Membership APIs: the group's read permission first; a refusal is the answer's
        top-level error (every version of these four has one)."""

        async def run(req: Request) -> Any:
            refused = self.access.refused(req.principal, "group", req.body.group_id, "read")
            if refused is None:
                return await handler(req)
            response = wire.response_class(api_key, req.api_version)
            return build(response, error_code=error_code(refused), generation_id=-1)

        return run

    # -- coordinator, membership ---------------------------------------------------------

    def find_coordinator(self, req: Request) -> Any:
        mod = wire.response_module(wire.FIND_COORDINATOR, req.api_version)
        host, port = self.advertised()
        key = getattr(req.body, "key", None)
        key_type = int(getattr(req.body, "key_type", 0))
        refused = (
            self.access.refused(req.principal, "group", key, "describe")
            if key is not None and key_type == 0
            else None
        )
        if refused is not None:
            return build(
                mod.FindCoordinatorResponse,
                error_code=error_code(refused),
                error_message=str(refused),
                node_id=-1,
                host="",
                port=-1,
            )
        return build(
            mod.FindCoordinatorResponse,
            error_code=ErrorCode.none,
            node_id=NODE_ID,
            host=host,
            port=port,
        )

    async def join_group(self, req: Request) -> Any:
        mod = wire.response_module(wire.JOIN_GROUP, req.api_version)
        body = req.body
        session = ms(body.session_timeout)
        rebalance = ms(getattr(body, "rebalance_timeout", session))
        try:
            future = self.coordinator.classic.join(
                body.group_id,
                body.member_id,
                client_id=req.client_id or "",
                client_host="",
                instance_id=getattr(body, "group_instance_id", None),
                session_timeout_ms=session,
                rebalance_timeout_ms=rebalance,
                protocol_type=body.protocol_type,
                protocols=[(p.name, bytes(p.metadata)) for p in body.protocols],
            )
            result = await asyncio.wrap_future(future)
        except LogstreamError as exc:
            return build(
                mod.JoinGroupResponse,
                error_code=error_code(exc),
                generation_id=-1,
                member_id=body.member_id,
                members=(),
            )
        members = tuple(
            build(mod.JoinGroupResponseMember, member_id=m, group_instance_id=i, metadata=meta)
            for m, i, meta in result.members
        )
        return build(
            mod.JoinGroupResponse,
            error_code=ErrorCode.none,
            generation_id=result.generation,
            protocol_type=body.protocol_type,
            protocol_name=result.protocol,
            leader=result.leader,
            member_id=result.member_id,
            members=members,
        )

    async def sync_group(self, req: Request) -> Any:
        mod = wire.response_module(wire.SYNC_GROUP, req.api_version)
        body = req.body
        assignments = {a.member_id: bytes(a.assignment) for a in body.assignments}
        partitions = {m: assigned_partitions(a) for m, a in assignments.items()}
        try:
            future = self.coordinator.classic.sync(
                body.group_id, body.member_id, body.generation_id, assignments, partitions
            )
            assignment = await asyncio.wrap_future(future)
        except LogstreamError as exc:
            return build(mod.SyncGroupResponse, error_code=error_code(exc), assignment=b"")
        group = self.coordinator.classic.get(body.group_id)
        return build(
            mod.SyncGroupResponse,
            error_code=ErrorCode.none,
            protocol_type=group.protocol_type if group else None,
            protocol_name=group.protocol if group else None,
            assignment=assignment,
        )

    def heartbeat(self, req: Request) -> Any:
        mod = wire.response_module(wire.HEARTBEAT, req.api_version)
        body = req.body
        try:
            self.coordinator.classic.heartbeat(body.group_id, body.member_id, body.generation_id)
            code = ErrorCode.none
        except LogstreamError as exc:
            code = error_code(exc)
        return build(mod.HeartbeatResponse, error_code=code)

    def leave_group(self, req: Request) -> Any:
        mod = wire.response_module(wire.LEAVE_GROUP, req.api_version)
        body = req.body
        # v3+ leave a list of members (static membership); v0-2 one member id
        ids = [m.member_id for m in body.members] if hasattr(body, "members") else [body.member_id]
        results = self.coordinator.classic.leave(body.group_id, ids)
        members = (
            tuple(
                build(mod.MemberResponse, member_id=m, error_code=error_code(e))
                for m, e in results.items()
            )
            if hasattr(mod, "MemberResponse")
            else ()
        )
        first = next(iter(results.values()), None) if not members else None
        return build(mod.LeaveGroupResponse, error_code=error_code(first), members=members)

    # -- offsets -------------------------------------------------------------------------

    def offset_commit(self, req: Request) -> Any:
        mod = wire.response_module(wire.OFFSET_COMMIT, req.api_version)
        body = req.body
        generation = int(
            getattr(body, "generation_id_or_member_epoch", getattr(body, "generation_id", -1))
        )
        offsets = {
            TopicPartition(t.name, int(p.partition_index)): OffsetAndMetadata(
                int(p.committed_offset), p.committed_metadata or ""
            )
            for t in body.topics
            for p in t.partitions
        }
        who = req.principal
        refused = {tp: self.access.refused(who, "topic", tp.topic, "read") for tp in offsets}
        results: dict[TopicPartition, Any] = {tp: e for tp, e in refused.items() if e}
        allowed = {tp: o for tp, o in offsets.items() if not refused[tp]}
        try:
            group_refused = self.access.refused(who, "group", body.group_id, "read")
            if group_refused is not None:
                raise group_refused
            self.coordinator.classic.check_commit(body.group_id, body.member_id, generation)
            if allowed:
                with self.broker.operation():
                    results.update(self.coordinator.commit(body.group_id, "", -1, allowed))
        except LogstreamError as exc:
            results = dict.fromkeys(offsets, exc)
        topics = tuple(
            build(
                mod.OffsetCommitResponseTopic,
                name=t.name,
                partitions=tuple(
                    build(
                        mod.OffsetCommitResponsePartition,
                        partition_index=p.partition_index,
                        error_code=error_code(
                            results.get(TopicPartition(t.name, int(p.partition_index)))
                        ),
                    )
                    for p in t.partitions
                ),
            )
            for t in body.topics
        )
        return build(mod.OffsetCommitResponse, topics=topics)

    def offset_fetch(self, req: Request) -> Any:
        mod = wire.response_module(wire.OFFSET_FETCH, req.api_version)
        body = req.body
        wanted = None
        if body.topics is not None:
            wanted = [
                TopicPartition(t.name, int(p)) for t in body.topics for p in t.partition_indexes
            ]
        try:
            refused = self.access.refused(req.principal, "group", body.group_id, "describe")
            if refused is not None:
                raise refused
            with self.broker.operation():
                found = self.coordinator.fetch_offsets(body.group_id, wanted or None)
            if wanted is not None:
                found = {tp: found.get(tp) for tp in wanted}
            found = {
                tp: c
                for tp, c in found.items()
                if self.access.allowed(req.principal, "topic", tp.topic, "describe")
            }
            code = ErrorCode.none
        except LogstreamError as exc:
            found, code = dict.fromkeys(wanted or [], None), error_code(exc)
        by_topic: dict[str, list[Any]] = {}
        for tp, committed in found.items():
            by_topic.setdefault(tp.topic, []).append(
                build(
                    mod.OffsetFetchResponsePartition,
                    partition_index=tp.partition,
                    committed_offset=committed.offset if committed is not None else -1,
                    committed_leader_epoch=-1,
                    metadata=committed.metadata if committed is not None else "",
                    error_code=ErrorCode.none,
                )
            )
        topics = tuple(
            build(mod.OffsetFetchResponseTopic, name=name, partitions=tuple(parts))
            for name, parts in by_topic.items()
        )
        return build(mod.OffsetFetchResponse, topics=topics, error_code=code)

    # -- admin ---------------------------------------------------------------------------

    def list_groups(self, req: Request) -> Any:
        mod = wire.response_module(wire.LIST_GROUPS, req.api_version)
        states = set(getattr(req.body, "states_filter", ()) or ())
        with self.broker.operation():
            summaries = self.coordinator.list_groups()
        groups = tuple(
            build(
                mod.ListedGroup,
                group_id=s.group_id,
                protocol_type="consumer",
                group_state=s.state,
            )
            for s in summaries
            if (not states or s.state in states)
            and self.access.allowed(req.principal, "group", s.group_id, "describe")
        )
        return build(mod.ListGroupsResponse, error_code=ErrorCode.none, groups=groups)

    def describe_groups(self, req: Request) -> Any:
        mod = wire.response_module(wire.DESCRIBE_GROUPS, req.api_version)
        out = []
        for group_id in req.body.groups:
            refused = self.access.refused(req.principal, "group", group_id, "describe")
            if refused is not None:
                out.append(
                    build(
                        mod.DescribedGroup,
                        error_code=error_code(refused),
                        group_id=group_id,
                        members=(),
                        authorized_operations=-(2**31),
                    )
                )
                continue
            snap = self.coordinator.classic.snapshot(group_id)
            if snap is None:
                out.append(
                    build(
                        mod.DescribedGroup,
                        error_code=ErrorCode.none,
                        group_id=group_id,
                        group_state="Dead",
                        members=(),
                        authorized_operations=-(2**31),
                    )
                )
                continue
            state, protocol_type, protocol, members = snap
            described = tuple(
                build(
                    mod.DescribedGroupMember,
                    member_id=m.member_id,
                    group_instance_id=m.instance_id,
                    client_id=m.client_id,
                    client_host=m.client_host,
                    member_metadata=dict(m.protocols).get(protocol, b""),
                    member_assignment=m.assignment,
                )
                for m in members
            )
            out.append(
                build(
                    mod.DescribedGroup,
                    error_code=ErrorCode.none,
                    group_id=group_id,
                    group_state=state,
                    protocol_type=protocol_type,
                    protocol_data=protocol,
                    members=described,
                    authorized_operations=-(2**31),
                )
            )
        return build(mod.DescribeGroupsResponse, groups=tuple(out))
