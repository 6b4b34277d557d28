"""Thin gRPC servicers: protobuf request -> handler call -> protobuf response.

Per-item failures (a partition, a batch, a topic) become ``error_code`` / ``error_message``
fields. Whole-request failures (invalid acks, a negative max_wait, shutdown) are raised as
``LogstreamError``; ``logstream.broker.rpc`` turns them into the matching gRPC status (and
an unexpected exception into a logged UNKNOWN_SERVER_ERROR) for every method. Fetch and
Subscribe answer with the ``FetchResponse``'s bytes, written around the stored batches
(``logstream.broker.fetch_bytes``).

Where each method runs (docs/decisions/0019-server-model.md): ``async def`` methods on the
server's event loop (produce, fetch and subscribe: short mmap copies, and waits that must
not hold a thread); plain methods in the server's thread pool (admin, list-offsets,
producer ids: file creation, fsync'ed metadata). A produce that may block (acks=flushed,
an ``every_batch`` topic, a topic that may be auto-created) is sent to the pool too.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from typing import Any

import grpc

from logstream.broker.admin import AdminHandler
from logstream.broker.broker import Broker
from logstream.broker.fetch import FetchHandler, FetchSpec
from logstream.broker.fetch_bytes import fetch_response_bytes
from logstream.broker.produce import BatchOutcome, PartitionOutcome, ProduceHandler
from logstream.broker.rpc import error_fields, translate
from logstream.errors import (
    InvalidRequestError,
    InvalidRequiredAcksError,
    LogstreamError,
    RequestTimedOutError,
)
from logstream.protocol import admin_pb2, admin_pb2_grpc, common_pb2, log_pb2, log_pb2_grpc
from logstream.protocol.request_reply import is_inbox
from logstream.storage.config import is_internal_topic

log = logging.getLogger("logstream.broker.rpc")

_ACKS = {
    common_pb2.ACKS_UNSPECIFIED: "leader",
    common_pb2.ACKS_NONE: "none",
    common_pb2.ACKS_LEADER: "leader",
    common_pb2.ACKS_FLUSHED: "flushed",
}

PRODUCE_STREAM_READ_AHEAD = 16
"""Answers a ProduceStream may hold unsent while it reads and appends the next requests.
Beyond it the stream stops reading, so a producer that does not read its answers is held
back by gRPC flow control instead of growing a buffer here."""


_END = object()


class _Failed:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


MIN_HEARTBEAT_MS = 10
"""A Subscribe heartbeat is never more frequent than this (a tiny value would spin)."""


def _heartbeat_s(heartbeat_ms: int) -> float:
    if heartbeat_ms < 0:
        raise InvalidRequestError(f"heartbeat_ms must be >= 0, got {heartbeat_ms}")
    return max(heartbeat_ms, MIN_HEARTBEAT_MS) / 1000.0 if heartbeat_ms > 0 else 0.0


def _specs(partitions: Any) -> list[FetchSpec]:
    return [FetchSpec(p.topic, p.partition, p.offset, p.max_bytes) for p in partitions]


def _all_stored(answer: log_pb2.ProduceResponse) -> bool:
    """No partition and no batch of a produce answer failed."""
    for part in answer.partitions:
        if part.error_code or any(r.error_code for r in part.results):
            return False
    return True


class LogServicer(log_pb2_grpc.LogServicer):
    def __init__(self, broker: Broker, pool: Executor | None = None) -> None:
        self.broker = broker
        self.pool = pool
        self.produce_handler = ProduceHandler(broker)
        self.fetch_handler = FetchHandler(broker)

    def _produce(self, request: log_pb2.ProduceRequest) -> log_pb2.ProduceResponse:
        acks = _ACKS.get(request.acks)
        if acks is None:
            raise InvalidRequiredAcksError(
                f"unknown acks value {request.acks}; use ACKS_NONE, ACKS_LEADER or ACKS_FLUSHED"
            )
        response = log_pb2.ProduceResponse(correlation_id=request.correlation_id)
        for data in request.partitions:
            if is_inbox(data.topic):
                out = self._deliver(data.topic, data.partition, data.batches)
            else:
                out = self.produce_handler.produce(
                    data.topic,
                    data.partition,
                    data.batches,
                    acks=acks,
                    timeout_ms=request.timeout_ms,
                )
            code, message = error_fields(out.error)
            part = response.partitions.add(
                topic=data.topic, partition=data.partition, error_code=code, error_message=message
            )
            for b in out.batches:
                bcode, bmessage = error_fields(b.error)
                part.results.add(
                    error_code=bcode,
                    error_message=bmessage,
                    base_offset=b.base_offset,
                    log_append_time_ms=b.log_append_time_ms,
                    log_start_offset=b.log_start_offset,
                    duplicate=b.duplicate,
                )
        return response

    def _deliver(self, topic: str, partition: int, batches: Any) -> PartitionOutcome:
        """A produce to a reply inbox: handed to its open stream, never stored."""
        out = PartitionOutcome(topic, partition)
        try:
            self.broker.inboxes.deliver(topic, partition, batches)
        except LogstreamError as exc:
            out.error = exc
            return out
        out.batches = [BatchOutcome(base_offset=0) for _ in batches]
        return out

    def _may_block(self, request: log_pb2.ProduceRequest) -> bool:
        """Whether appending ``request`` may wait on the disk (then: not on the loop)."""
        if request.acks == common_pb2.ACKS_FLUSHED:
            return True
        manager = self.broker.manager
        for data in request.partitions:
            if is_inbox(data.topic):
                continue
            try:
                plog = manager.get_log(data.topic, data.partition)
            except Exception:  # may auto-create the topic; the handler reports any error
                return True
            if plog.config.flush_policy == "every_batch":
                return True
        return False

    async def _produce_async(self, request: log_pb2.ProduceRequest) -> log_pb2.ProduceResponse:
        if self._may_block(request):
            return await self._produce_in_pool(request)
        return self._produce(request)

    async def _produce_in_pool(self, request: log_pb2.ProduceRequest) -> log_pb2.ProduceResponse:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, self._produce, request)

    async def Produce(self, request: Any, context: Any) -> Any:
        return await self._produce_async(request)

    async def ProduceStream(self, requests: AsyncIterator[Any], context: Any) -> Any:
        # Reading and appending the next requests overlaps sending the previous answers
        # (a pipelining producer keeps several requests in flight); answers keep request
        # order because one task appends them in turn. The queue bound is the back-pressure.
        answers: asyncio.Queue[Any] = asyncio.Queue(PRODUCE_STREAM_READ_AHEAD)

        # Per message, the common case makes no coroutine of ours beyond gRPC's read and
        # write: an inline append, and queue calls that cannot wait (room, or an answer).
        async def pump() -> None:
            try:
                async for request in requests:
                    if self._may_block(request):
                        answer = await self._produce_in_pool(request)
                    else:
                        answer = self._produce(request)
                    quiet = request.errors_only and _all_stored(answer)
                    del request  # its bytes are not kept alive while the next one waits
                    if quiet:
                        continue  # the requester learns of success from elsewhere (a reply)
                    if answers.full():
                        await answers.put(answer)
                    else:
                        answers.put_nowait(answer)
            except Exception as exc:  # re-raised below, after the answers before it
                await answers.put(_Failed(exc))
            await answers.put(_END)

        task = asyncio.create_task(pump(), name="logstream-produce-stream")
        try:
            while True:
                item = answers.get_nowait() if answers.qsize() else await answers.get()
                if item is _END:
                    break
                if isinstance(item, _Failed):
                    raise item.exc
                yield item
        finally:
            task.cancel()

    async def Fetch(self, request: Any, context: Any) -> Any:
        outcomes = await self.fetch_handler.fetch(
            _specs(request.partitions),
            max_wait_ms=request.max_wait_ms,
            min_bytes=request.min_bytes,
            max_bytes=request.max_bytes,
        )
        return fetch_response_bytes(outcomes)

    async def Subscribe(self, request: Any, context: Any) -> Any:
        if any(is_inbox(p.topic) for p in request.partitions):
            async for data in self._inbox_stream(request):
                yield data
            return
        async for outcomes in self.fetch_handler.subscribe(
            _specs(request.partitions),
            max_bytes=request.max_bytes,
            heartbeat_s=_heartbeat_s(request.heartbeat_ms),
        ):
            yield fetch_response_bytes(outcomes)

    async def _inbox_stream(self, request: Any) -> AsyncIterator[log_pb2.FetchResponse]:
        if len(request.partitions) != 1 or request.partitions[0].partition != 0:
            raise InvalidRequestError("an inbox is subscribed to alone, as partition 0")
        topic = request.partitions[0].topic
        if not self.broker.waiter_slots.acquire(blocking=False):
            raise RequestTimedOutError("too many concurrent subscriptions; retry later")
        try:
            async for data in self.broker.inboxes.stream(
                topic, heartbeat_s=_heartbeat_s(request.heartbeat_ms)
            ):
                if not data:
                    yield log_pb2.FetchResponse()
                    continue
                part = log_pb2.FetchPartitionResponse(
                    topic=topic, partition=0, high_watermark=-1, log_start_offset=-1, records=data
                )
                yield log_pb2.FetchResponse(partitions=[part])
        finally:
            self.broker.waiter_slots.release()

    def ListOffsets(self, request: Any, context: grpc.ServicerContext) -> Any:
        response = log_pb2.ListOffsetsResponse()
        for p in request.partitions:
            try:
                offset, timestamp = self.fetch_handler.list_offset(
                    p.topic, p.partition, p.timestamp
                )
                response.partitions.add(
                    topic=p.topic, partition=p.partition, offset=offset, timestamp=timestamp
                )
            except Exception as exc:
                code, message = error_fields(translate(exc, "ListOffsets"))
                response.partitions.add(
                    topic=p.topic,
                    partition=p.partition,
                    error_code=code,
                    error_message=message,
                    offset=-1,
                    timestamp=-1,
                )
        return response

    def InitProducerId(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.broker.operation():
            producer_id, epoch = self.broker.producer_ids.allocate(request.producer_name)
        log.debug("producer id %d epoch %d for %r", producer_id, epoch, request.producer_name)
        return log_pb2.InitProducerIdResponse(producer_id=producer_id, producer_epoch=epoch)


class AdminServicer(admin_pb2_grpc.AdminServicer):
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.handler = AdminHandler(broker)

    def _result(self, name: str, call: Callable[[], object]) -> admin_pb2.TopicResult:
        try:
            call()
            return admin_pb2.TopicResult(name=name)
        except Exception as exc:
            code, message = error_fields(translate(exc, "admin"))
            return admin_pb2.TopicResult(name=name, error_code=code, error_message=message)

    def CreateTopics(self, request: Any, context: grpc.ServicerContext) -> Any:
        return admin_pb2.CreateTopicsResponse(
            topics=[
                self._result(
                    t.name,
                    functools.partial(
                        self.handler.create_topic,
                        t.name,
                        t.partitions,
                        dict(t.config),
                        validate_only=request.validate_only,
                    ),
                )
                for t in request.topics
            ]
        )

    def DeleteTopics(self, request: Any, context: grpc.ServicerContext) -> Any:
        return admin_pb2.DeleteTopicsResponse(
            topics=[
                self._result(name, functools.partial(self.handler.delete_topic, name))
                for name in request.names
            ]
        )

    def ListTopics(self, request: Any, context: grpc.ServicerContext) -> Any:
        topics = self.handler.list_topics(include_internal=request.include_internal)
        return admin_pb2.ListTopicsResponse(
            topics=[
                admin_pb2.TopicSummary(name=n, partitions=c, internal=is_internal_topic(n))
                for n, c in topics
            ]
        )

    def DescribeTopics(self, request: Any, context: grpc.ServicerContext) -> Any:
        response = admin_pb2.DescribeTopicsResponse()
        for info in self.handler.describe_topics(list(request.names)):
            code, message = error_fields(info.error)
            t = response.topics.add(
                name=info.name, error_code=code, error_message=message, internal=info.internal
            )
            t.config.update(info.config)
            for p in info.partitions:
                pcode, pmessage = error_fields(p.error)
                t.partitions.add(
                    partition=p.partition,
                    log_start_offset=p.log_start_offset,
                    log_end_offset=p.log_end_offset,
                    flushed_offset=p.flushed_offset,
                    size_bytes=p.size_bytes,
                    segment_count=p.segment_count,
                    error_code=pcode,
                    error_message=pmessage,
                )
        return response

    def AlterTopicConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        response = admin_pb2.AlterTopicConfigResponse()
        try:
            config = self.handler.alter_topic_config(
                request.name, dict(request.set), list(request.reset)
            )
            response.result.name = request.name
            response.config.update(config)
        except Exception as exc:
            code, message = error_fields(translate(exc, "AlterTopicConfig"))
            response.result.CopyFrom(
                admin_pb2.TopicResult(name=request.name, error_code=code, error_message=message)
            )
        return response

    def CreatePartitions(self, request: Any, context: grpc.ServicerContext) -> Any:
        return admin_pb2.CreatePartitionsResponse(
            result=self._result(
                request.name,
                functools.partial(
                    self.handler.create_partitions, request.name, request.total_count
                ),
            )
        )
