"""The Queue gRPC service: protobuf <-> :class:`~logstream.broker.queues.QueueManager`.

``Fetch`` is a coroutine on the server's event loop (a waiting fetch parks a coroutine, no
thread): it hands the replies it carries to their inboxes (a responder's answers ride its
next fetch, docs/decisions/0035), then settles and acquires inline (one engine call and one
append to ``__queue_state`` under the group's lock), and when nothing is available it waits on the
broker's notifier for an append to one of the group's partitions or a wake-up of the group
(a nack delay or a lease ran out, a member left), up to ``max_wait_ms``. The records are
read from the logs after the state log holds their acquisition. Every other method is
plain and runs in the server's thread pool.

``Session`` is a member's push stream (:mod:`.queue_session`, decision 0037).

Whole-request errors (unknown group, kind mismatch, negative delay, bad settings) raise and
leave as a gRPC status with the numeric code (``logstream.broker.rpc``); per-record
refusals of a settlement travel in ``SettleResult``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from logstream.broker.broker import Broker
from logstream.broker.queue_messages import deliver_replies, records_pb, settle_results, settles
from logstream.broker.queue_session import serve_session
from logstream.broker.queues import QueueManager
from logstream.coordinator.queues import QueueDepth, QueueSettings
from logstream.errors import InvalidRequestError
from logstream.protocol import queue_pb2, queue_pb2_grpc
from logstream.protocol.queue_settings import SETTING_NAMES

DEFAULT_MAX_RECORDS = 500


def settings_values(pb: Any) -> dict[str, Any]:
    """The fields set in a ``QueueSettings`` message."""
    out: dict[str, Any] = {}
    for name in SETTING_NAMES:
        if pb.HasField(name):
            value = getattr(pb, name)
            if name == "start" and value not in ("earliest", "latest"):
                try:
                    value = int(value)
                except ValueError:
                    raise InvalidRequestError(
                        f"start must be earliest, latest or a timestamp in ms: {value!r}"
                    ) from None
            out[name] = value
    return out


def settings_pb(s: QueueSettings) -> queue_pb2.QueueSettings:
    return queue_pb2.QueueSettings(
        lease_ms=s.lease_ms,
        max_deliveries=s.max_deliveries,
        backoff_initial_ms=s.backoff_initial_ms,
        backoff_max_ms=s.backoff_max_ms,
        dead_letter_topic=s.dead_letter_topic,
        key_ordered=s.key_ordered,
        auto_ack=s.auto_ack,
        window_size=s.window_size,
        start=str(s.start),
        expired_action=s.expired_action,
    )


def _depth_pb(d: QueueDepth) -> queue_pb2.QueueDepth:
    return queue_pb2.QueueDepth(
        topic=d.topic,
        partition=d.partition,
        start_offset=d.start_offset,
        end_offset=d.end_offset,
        available=d.available,
        unread=d.unread,
        acquired=d.acquired,
        delayed=d.delayed,
        dead_letter_pending=d.dead_letter_pending,
        acknowledged=d.acknowledged,
        dead_lettered=d.dead_lettered,
        dropped=d.dropped,
        redelivered=d.redelivered,
        oldest_unfinished_offset=-1
        if d.oldest_unfinished_offset is None
        else d.oldest_unfinished_offset,
        oldest_unfinished_age_ms=-1
        if d.oldest_unfinished_age_ms is None
        else d.oldest_unfinished_age_ms,
        depth=d.depth,
        parked=d.parked,
        expired=d.expired,
        next_due_ms=-1 if d.next_due_ms is None else d.next_due_ms,
        lost_to_retention=d.lost_to_retention,
    )


class QueueServicer(queue_pb2_grpc.QueueServicer):
    def __init__(self, broker: Broker, queues: QueueManager) -> None:
        self.broker = broker
        self.queues = queues

    # ---- members -------------------------------------------------------------------------

    def Join(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.broker.operation():
            m = self.queues.join(
                request.group,
                request.member_id,
                list(request.topics),
                create=request.create,
                client_id=request.client_id or context.peer(),
            )
        return queue_pb2.QueueJoinResponse(
            settings=settings_pb(m.group.settings), topics=m.topics, offset_runs=True
        )

    def Leave(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.broker.operation():
            outcomes, released = self.queues.leave(
                request.group, request.member_id, settles(request.settle)
            )
        return queue_pb2.QueueLeaveResponse(results=settle_results(outcomes), released=released)

    def Settle(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.broker.operation():
            outcomes = self.queues.settle(request.group, request.member_id, settles(request.settle))
        return queue_pb2.QueueSettleResponse(results=settle_results(outcomes))

    async def Fetch(self, request: Any, context: Any) -> Any:
        if request.max_records < 0 or request.max_wait_ms < 0 or request.lease_ms < 0:
            raise InvalidRequestError("max_records, max_wait_ms and lease_ms must be >= 0")
        if not request.member_id:
            raise InvalidRequestError("member_id must not be empty")
        q = self.queues
        name, member = request.group, request.member_id
        max_records = request.max_records or DEFAULT_MAX_RECORDS
        lease = request.lease_ms or None
        notifier = self.broker.notifier
        keys = q.partition_keys(name)
        seen = notifier.mark(keys)
        # parsed first: a refused settlement fails the call before any reply is delivered,
        # so the member can send its replies again without the requester seeing two
        settling = settles(request.settle)
        replied: list[queue_pb2.QueueReplyResult] = []
        if request.replies:
            replied = deliver_replies(self.broker.inboxes, request.replies)
            await asyncio.sleep(0)  # the inbox streams push the replies before we acquire
        with self.broker.operation():
            outcomes, deliveries, granted = q.acquire(name, member, settling, max_records, lease)
        wait_s = min(request.max_wait_ms, self.broker.config.fetch_max_wait_ms) / 1000.0
        if not deliveries and wait_s > 0 and self.broker.waiter_slots.acquire(blocking=False):
            try:
                deadline = time.monotonic() + wait_s
                while not deliveries and not notifier.closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    await notifier.wait(keys, seen, remaining)
                    keys = q.partition_keys(name)  # the group may read new partitions now
                    seen = notifier.mark(keys)
                    with self.broker.operation():
                        _, deliveries, granted = q.acquire(name, member, [], max_records, lease)
            finally:
                self.broker.waiter_slots.release()
        backlog = members = 0
        if sum(len(d.offsets) for d in deliveries) >= max_records:  # full: more may wait
            backlog, members = q.backlog(name)
        return queue_pb2.QueueFetchResponse(
            results=settle_results(outcomes),
            records=records_pb(q, name, deliveries, runs=request.offset_runs),
            reply_results=replied,
            lease_ms=granted,
            backlog=backlog,
            members=members,
        )

    async def Session(self, requests: AsyncIterator[Any], context: Any) -> Any:
        async for response in serve_session(self.broker, self.queues, requests):
            yield response

    # ---- admin ---------------------------------------------------------------------------

    def CreateQueueGroup(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.broker.operation():
            s = self.queues.create(
                request.group, list(request.topics), settings_values(request.settings)
            )
        return queue_pb2.CreateQueueGroupResponse(settings=settings_pb(s))

    def AlterQueueGroup(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.broker.operation():
            s = self.queues.alter(request.group, settings_values(request.settings))
        return queue_pb2.AlterQueueGroupResponse(settings=settings_pb(s))

    def DescribeQueueGroup(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.broker.operation():
            d, client_ids, invalid = self.queues.describe(request.group)
        return queue_pb2.DescribeQueueGroupResponse(
            group=d.group,
            settings=settings_pb(d.settings),
            dead_letter_topic=d.dead_letter_topic,
            partitions=[_depth_pb(p) for p in d.partitions],
            total=_depth_pb(d.total),
            members=[
                queue_pb2.QueueMember(member_id=m, held=n, client_id=client_ids.get(m, ""))
                for m, n in sorted(d.members.items())
            ],
            invalid_schedule=invalid,
        )

    def ListQueueGroups(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.broker.operation():
            groups = self.queues.list_groups()
        return queue_pb2.ListQueueGroupsResponse(
            groups=[
                queue_pb2.QueueGroupSummary(
                    group=d.group,
                    topics=topics,
                    members=members,
                    depth=d.total.depth,
                    acquired=d.total.acquired,
                    oldest_unfinished_age_ms=-1
                    if d.total.oldest_unfinished_age_ms is None
                    else d.total.oldest_unfinished_age_ms,
                )
                for d, topics, members in sorted(groups, key=lambda g: g[0].group)
            ]
        )

    def DeleteQueueGroup(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.broker.operation():
            self.queues.delete(request.group, force=request.force)
        return queue_pb2.DeleteQueueGroupResponse()

    def Peek(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.broker.operation():
            found = self.queues.peek(request.group, request.max_records or 10)
            records = [
                queue_pb2.QueueRecords(
                    topic=t,
                    partition=p,
                    batches=self.queues.read(t, p, offsets),
                    offsets=offsets.tolist(),
                    delivery_counts=counts.tolist(),
                )
                for t, p, offsets, counts in found
            ]
        return queue_pb2.PeekResponse(records=records)

    def Redrive(self, request: Any, context: grpc.ServicerContext) -> Any:
        if request.max_records < 0:
            raise InvalidRequestError("max_records must be >= 0")
        with self.broker.operation():
            items = self.queues.redrive(
                request.group,
                execute=request.execute,
                reasons=list(request.reasons),
                to_topic=request.to_topic,
                max_records=request.max_records,
            )
        return queue_pb2.RedriveResponse(
            executed=request.execute,
            items=[
                queue_pb2.RedriveItem(
                    dead_letter_offset=i.dead_letter_offset,
                    source_topic=i.source_topic,
                    source_partition=i.source_partition,
                    source_offset=i.source_offset,
                    reason=i.reason,
                    target_topic=i.target_topic,
                    target_partition=i.target_partition,
                )
                for i in items
            ],
        )
