"""Thin gRPC servicers: protobuf request -> handler call -> protobuf response.

Per-item failures (a partition, a batch, a topic) become ``error_code`` / ``error_message``
fields. Whole-request failures (invalid acks, a negative max_wait, shutdown) leave through
``logstream.protocol.status.abort_with`` with the matching gRPC status. An unexpected
exception is logged with its traceback and answered as UNKNOWN_SERVER_ERROR; the broker
keeps serving. ``_guard`` is the one place that does this translation.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from logstream.broker.admin import AdminHandler
from logstream.broker.broker import Broker
from logstream.broker.fetch import FetchHandler, FetchOutcome, FetchSpec
from logstream.broker.produce import ProduceHandler
from logstream.errors import (
    InvalidRequiredAcksError,
    LogstreamError,
    OffsetOutOfRangeError,
    UnknownServerError,
)
from logstream.protocol import admin_pb2, admin_pb2_grpc, common_pb2, log_pb2, log_pb2_grpc
from logstream.protocol.status import abort_with, client_message
from logstream.storage.config import is_internal_topic

log = logging.getLogger("logstream.broker.rpc")

F = TypeVar("F", bound=Callable[..., Any])

_ACKS = {
    common_pb2.ACKS_UNSPECIFIED: "leader",
    common_pb2.ACKS_NONE: "none",
    common_pb2.ACKS_LEADER: "leader",
    common_pb2.ACKS_FLUSHED: "flushed",
}


def _translate(exc: BaseException, method: str) -> LogstreamError:
    if isinstance(exc, LogstreamError):
        return exc
    log.error("%s failed unexpectedly", method, exc_info=exc)
    return UnknownServerError(f"{type(exc).__name__}: {exc}")


def _guard(fn: F) -> F:
    """Unary methods: a raised error becomes a gRPC status (never an unhandled crash)."""

    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(self, request, context)
        except Exception as exc:
            err = _translate(exc, fn.__name__)
        abort_with(context, err)

    return wrapper  # type: ignore[return-value]


def _guard_stream(fn: F) -> F:
    """Streaming methods: the same, around the generator."""

    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from fn(self, request, context)
            return
        except Exception as exc:
            err = _translate(exc, fn.__name__)
        abort_with(context, err)

    return wrapper  # type: ignore[return-value]


def _err(exc: LogstreamError | None) -> tuple[int, str]:
    if exc is None:
        return 0, ""
    return exc.code, client_message(exc)


def _fetch_pb(o: FetchOutcome) -> log_pb2.FetchPartitionResponse:
    code, message = _err(o.error)
    if isinstance(o.error, OffsetOutOfRangeError):
        message = f"{message} (earliest={o.error.earliest}, latest={o.error.latest})"
    return log_pb2.FetchPartitionResponse(
        topic=o.topic,
        partition=o.partition,
        error_code=code,
        error_message=message,
        high_watermark=o.high_watermark,
        log_start_offset=o.log_start_offset,
        records=o.records,
    )


_END = object()


class _Failed:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


MIN_HEARTBEAT_MS = 10
"""A Subscribe heartbeat is never more frequent than this (a tiny value would spin)."""


def _heartbeat_s(heartbeat_ms: int) -> float:
    return max(heartbeat_ms, MIN_HEARTBEAT_MS) / 1000.0 if heartbeat_ms > 0 else 0.0


def _specs(partitions: Any) -> list[FetchSpec]:
    return [FetchSpec(p.topic, p.partition, p.offset, p.max_bytes) for p in partitions]


class LogServicer(log_pb2_grpc.LogServicer):
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
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
            out = self.produce_handler.produce(
                data.topic,
                data.partition,
                data.batches,
                acks=acks,
                timeout_ms=request.timeout_ms,
            )
            code, message = _err(out.error)
            part = response.partitions.add(
                topic=data.topic, partition=data.partition, error_code=code, error_message=message
            )
            for b in out.batches:
                bcode, bmessage = _err(b.error)
                part.results.add(
                    error_code=bcode,
                    error_message=bmessage,
                    base_offset=b.base_offset,
                    log_append_time_ms=b.log_append_time_ms,
                    log_start_offset=b.log_start_offset,
                    duplicate=b.duplicate,
                )
        return response

    @_guard
    def Produce(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._produce(request)

    @_guard_stream
    def ProduceStream(self, request_iterator: Any, context: grpc.ServicerContext) -> Any:
        # gRPC's threaded server makes every message read and every answer sent a wait on its
        # polling thread; done in turn on one thread they capped a stream at ~1,000 small
        # requests/s on 2 cores, and a pipelining producer's requests queued behind each other
        # (docs/performance.md, Latency). So a helper thread reads and appends (in request
        # order, as before) while this one sends the answers (in the same order).
        answers: queue.SimpleQueue[Any] = queue.SimpleQueue()

        def pump() -> None:
            try:
                for request in request_iterator:
                    answers.put(self._produce(request))
            except BaseException as exc:  # re-raised below, on the RPC's own thread
                answers.put(_Failed(exc))
            answers.put(_END)

        threading.Thread(target=pump, name="logstream-produce-stream", daemon=True).start()
        while (item := answers.get()) is not _END:
            if isinstance(item, _Failed):
                raise item.exc
            yield item

    @_guard
    def Fetch(self, request: Any, context: grpc.ServicerContext) -> Any:
        outcomes = self.fetch_handler.fetch(
            _specs(request.partitions),
            max_wait_ms=request.max_wait_ms,
            min_bytes=request.min_bytes,
            max_bytes=request.max_bytes,
            cancelled=lambda: not context.is_active(),
        )
        return log_pb2.FetchResponse(partitions=[_fetch_pb(o) for o in outcomes])

    @_guard_stream
    def Subscribe(self, request: Any, context: grpc.ServicerContext) -> Any:
        context.add_callback(self.broker.notifier.notify)  # wake the wait on cancellation
        for outcomes in self.fetch_handler.subscribe(
            _specs(request.partitions),
            max_bytes=request.max_bytes,
            cancelled=lambda: not context.is_active(),
            heartbeat_s=_heartbeat_s(request.heartbeat_ms),
        ):
            yield log_pb2.FetchResponse(partitions=[_fetch_pb(o) for o in outcomes])

    @_guard
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
                code, message = _err(_translate(exc, "ListOffsets"))
                response.partitions.add(
                    topic=p.topic,
                    partition=p.partition,
                    error_code=code,
                    error_message=message,
                    offset=-1,
                    timestamp=-1,
                )
        return response

    @_guard
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
            code, message = _err(_translate(exc, "admin"))
            return admin_pb2.TopicResult(name=name, error_code=code, error_message=message)

    @_guard
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

    @_guard
    def DeleteTopics(self, request: Any, context: grpc.ServicerContext) -> Any:
        return admin_pb2.DeleteTopicsResponse(
            topics=[
                self._result(name, functools.partial(self.handler.delete_topic, name))
                for name in request.names
            ]
        )

    @_guard
    def ListTopics(self, request: Any, context: grpc.ServicerContext) -> Any:
        topics = self.handler.list_topics(include_internal=request.include_internal)
        return admin_pb2.ListTopicsResponse(
            topics=[
                admin_pb2.TopicSummary(name=n, partitions=c, internal=is_internal_topic(n))
                for n, c in topics
            ]
        )

    @_guard
    def DescribeTopics(self, request: Any, context: grpc.ServicerContext) -> Any:
        response = admin_pb2.DescribeTopicsResponse()
        for info in self.handler.describe_topics(list(request.names)):
            code, message = _err(info.error)
            t = response.topics.add(
                name=info.name, error_code=code, error_message=message, internal=info.internal
            )
            t.config.update(info.config)
            for p in info.partitions:
                pcode, pmessage = _err(p.error)
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

    @_guard
    def AlterTopicConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        response = admin_pb2.AlterTopicConfigResponse()
        try:
            config = self.handler.alter_topic_config(
                request.name, dict(request.set), list(request.reset)
            )
            response.result.name = request.name
            response.config.update(config)
        except Exception as exc:
            code, message = _err(_translate(exc, "AlterTopicConfig"))
            response.result.CopyFrom(
                admin_pb2.TopicResult(name=request.name, error_code=code, error_message=message)
            )
        return response

    @_guard
    def CreatePartitions(self, request: Any, context: grpc.ServicerContext) -> Any:
        return admin_pb2.CreatePartitionsResponse(
            result=self._result(
                request.name,
                functools.partial(
                    self.handler.create_partitions, request.name, request.total_count
                ),
            )
        )
