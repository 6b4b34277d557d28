"""ApiVersions, Metadata, Produce, Fetch, ListOffsets and InitProducerId over the broker.

Each handler takes a decoded :class:`~logstream.kafka.wire.Request` and returns the kio
response body for the request's version (Produce and Fetch, the hot path: the plain answer
classes of ``fast_encode.py``, which only its encoders read); the work is the same broker
call the gRPC servicers make (``ProduceHandler``, ``FetchHandler``, ``AdminHandler``,
``ProducerIdManager``). The listener is one broker: node id 0, leader of every partition,
its own advertised address.

Concurrency: the synchronous handlers run on the listener's thread pool (they block on
storage and on acks). :meth:`LogApis.fetch` awaits the broker's fetch coroutine on the
listener's loop, so a long-poll holds no thread at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from kio.schema.errors import ErrorCode

from logstream.broker.admin import AdminHandler, refuse_internal
from logstream.broker.broker import Broker
from logstream.broker.fetch import FetchHandler, FetchOutcome, FetchSpec
from logstream.broker.produce import ProduceHandler
from logstream.codec import BuiltBatch
from logstream.errors import (
    CorruptRecordError,
    InvalidRequestError,
    LogstreamError,
    UnknownTopicOrPartitionError,
)
from logstream.kafka import wire
from logstream.kafka.access import Access
from logstream.kafka.batch_in import (
    KafkaColumns,
    read_kafka_batch,
    read_tiny,
    to_logstream_batches,
)
from logstream.kafka.fast_encode import (
    FetchAnswer,
    FetchPartitionAnswer,
    FetchTopicAnswer,
    ProduceAnswer,
    ProducePartitionAnswer,
    ProduceTopicAnswer,
)
from logstream.kafka.handoff import Handoff
from logstream.kafka.records import logstream_to_kafka_pieces, split_kafka_batches
from logstream.kafka.sent_batches import SentBatches
from logstream.kafka.wire import Request, build, ms
from logstream.storage.config import is_internal_topic

log = logging.getLogger("logstream.kafka")

NODE_ID = 0
CLUSTER_ID = "logstream"
INLINE_FETCH_BYTES = 64 * 1024
"""Fetched bytes up to which the Kafka batches are built on the loop itself: a few records
convert in tens of microseconds, less than the two thread hand-offs of the pool (the
latency path: one record per fetch)."""


def _partition_answer(
    partition: int,
    error: LogstreamError | None,
    high_watermark: int,
    log_start_offset: int,
    records: bytes | list[bytes | memoryview],
) -> FetchPartitionAnswer:
    return FetchPartitionAnswer(
        partition,
        error_code(error),
        high_watermark,
        high_watermark,  # last stable offset: no transactions
        log_start_offset,
        records,
    )


def error_code(exc: BaseException | None) -> ErrorCode:
    """Kafka's error code for a logstream error (the numbers are Kafka's below 1000)."""
    if exc is None:
        return ErrorCode.none
    code = exc.code if isinstance(exc, LogstreamError) else -1
    try:
        return ErrorCode(code)
    except ValueError:
        return ErrorCode.unknown_server_error


class LogApis:
    def __init__(
        self,
        broker: Broker,
        advertised: Callable[[], tuple[str, int]],
        access: Access | None = None,
    ) -> None:
        self.broker = broker
        self.advertised = advertised
        self.access = access or Access()
        self.produce_handler = ProduceHandler(broker)
        self.fetch_handler = FetchHandler(broker)
        self.admin = AdminHandler(broker)
        self.sent = SentBatches()
        self.handoff = Handoff()

    # -- ApiVersions ---------------------------------------------------------------------

    def api_versions(self, req: Request) -> Any:
        mod = wire.response_module(wire.API_VERSIONS, req.api_version)
        keys = tuple(
            build(mod.ApiVersion, api_key=k, min_version=lo, max_version=hi)
            for k, (lo, hi) in sorted(wire.SUPPORTED.items())
        )
        return build(mod.ApiVersionsResponse, error_code=ErrorCode.none, api_keys=keys)

    # -- Metadata ------------------------------------------------------------------------

    def metadata(self, req: Request) -> Any:
        mod = wire.response_module(wire.METADATA, req.api_version)
        body = req.body
        host, port = self.advertised()
        who = req.principal
        if body.topics is None or (req.api_version == 0 and not body.topics):
            names = [
                name
                for name, _ in self.admin.list_topics()
                if self.access.allowed(who, "topic", name, "describe")
            ]
        else:
            # v10+ may name a topic by id only; logstream topics have no ids
            names = [t.name for t in body.topics if t.name is not None]
        auto_create = bool(getattr(body, "allow_auto_topic_creation", True))
        topics = tuple(
            self._topic_metadata(
                mod,
                name,
                auto_create and self.access.allowed(who, "topic", name, "create"),
                self.access.refused(who, "topic", name, "describe"),
            )
            for name in names
        )
        broker = build(mod.MetadataResponseBroker, node_id=NODE_ID, host=host, port=port)
        return build(
            mod.MetadataResponse,
            brokers=(broker,),
            cluster_id=CLUSTER_ID,
            controller_id=NODE_ID,
            topics=topics,
            topic_authorized_operations=-(2**31),
            cluster_authorized_operations=-(2**31),
        )

    def _topic_metadata(
        self, mod: Any, name: str, auto_create: bool, refused: LogstreamError | None
    ) -> Any:
        try:
            if refused is not None:
                raise refused
            with self.broker.operation():
                try:
                    count = len(self.broker.manager.topic(name).partitions)
                except UnknownTopicOrPartitionError:
                    if not auto_create:
                        raise
                    self.broker.get_log(name, 0, create=True)
                    count = len(self.broker.manager.topic(name).partitions)
        except LogstreamError as exc:
            return build(
                mod.MetadataResponseTopic, error_code=error_code(exc), name=name, partitions=()
            )
        partitions = tuple(
            build(
                mod.MetadataResponsePartition,
                error_code=ErrorCode.none,
                partition_index=i,
                leader_id=NODE_ID,
                leader_epoch=0,
                replica_nodes=(NODE_ID,),
                isr_nodes=(NODE_ID,),
                offline_replicas=(),
            )
            for i in range(count)
        )
        return build(
            mod.MetadataResponseTopic,
            error_code=ErrorCode.none,
            name=name,
            is_internal=is_internal_topic(name),
            partitions=partitions,
            topic_authorized_operations=-(2**31),
        )

    # -- Produce -------------------------------------------------------------------------

    def produce(self, req: Request) -> ProduceAnswer:
        """The response body; the listener sends none for acks=0."""
        body = req.body
        acks = {0: "none", 1: "leader", -1: "leader"}.get(int(body.acks))
        topics = []
        for topic in body.topic_data:
            refused = self.access.refused(req.principal, "topic", topic.name, "write")
            answers = tuple(
                self._produce_partition(topic.name, part, acks, body, refused)
                for part in topic.partition_data
            )
            topics.append(ProduceTopicAnswer(topic.name, answers))
        return ProduceAnswer(tuple(topics))

    def _produce_partition(
        self,
        topic: str,
        part: Any,
        acks: str | None,
        body: Any,
        refused: LogstreamError | None,
    ) -> ProducePartitionAnswer:
        def answer(
            exc: LogstreamError | None, base_offset: int = -1, start: int = -1
        ) -> ProducePartitionAnswer:
            if exc is None:
                return ProducePartitionAnswer(part.index, ErrorCode.none, base_offset, start)
            return ProducePartitionAnswer(part.index, error_code(exc), error_message=str(exc))

        if refused is not None:
            return answer(refused)
        if acks is None:
            return answer(InvalidRequestError(f"acks must be -1, 0 or 1, got {body.acks}"))
        if body.transactional_id is not None:
            return answer(InvalidRequestError("transactional produce is not supported"))
        try:
            pieces = list(split_kafka_batches(part.records or b""))
            # Every batch is checked before get_log could create the topic.
            tiny = [read_tiny(b) for b in pieces]
            read = [t[0] if t else read_kafka_batch(b) for b, t in zip(pieces, tiny, strict=True)]
            if not read:
                return answer(CorruptRecordError("no record batch in the request"))
            refuse_internal(topic, "produce to")
            with self.broker.operation():  # one bracket and lookup for convert and append
                plog = self.broker.get_log(topic, part.index, create=True)
                limit = plog.config.max_batch_bytes
                batches: list[bytes | BuiltBatch] = []
                for piece, got in zip(pieces, read, strict=True):
                    if isinstance(got, BuiltBatch) and got.header.batch_length <= limit:
                        batches.append(got)
                    else:
                        cols = got if isinstance(got, KafkaColumns) else read_kafka_batch(piece)
                        batches += to_logstream_batches(cols, limit)
                out = self.produce_handler.append(
                    plog, topic, part.index, batches, acks=acks, timeout_ms=ms(body.timeout)
                )
                failed = out.error or next((b.error for b in out.batches if b.error), None)
                if failed is not None:
                    return answer(failed)
                first = out.batches[0]
                kept = tiny[0] if len(tiny) == 1 else None
                if (
                    kept is not None
                    and kept[1]
                    and len(batches) == 1
                    and not first.duplicate
                    and first.log_append_time_ms == -1
                ):
                    stored = kept[0]
                    kafka = self.sent.remember(
                        topic, part.index, pieces[0], stored.header, first.base_offset
                    )
                    if kafka is not None and self.handoff.waiting(topic, part.index):
                        self._hand_over(topic, part.index, first.base_offset, stored, kafka, plog)
        except LogstreamError as exc:
            return answer(exc)
        return answer(None, first.base_offset, out.batches[-1].log_start_offset)

    def _hand_over(
        self,
        topic: str,
        partition: int,
        base_offset: int,
        stored: BuiltBatch,
        kafka: bytes,
        plog: Any,
    ) -> None:
        """Answer the Fetches parked at ``base_offset`` with the batch just appended
        (``handoff.py``), counted in the fetch metrics as the normal read is. The batch is
        stored by now: whatever goes wrong here must not turn the Produce's answer into an
        error (a retry would store it twice), so it is logged, and a Fetch not answered
        here is answered by its own task as before."""
        header = stored.header
        try:
            handed = self.handoff.appended(
                topic,
                partition,
                base_offset,
                header.record_count,
                header.batch_length,
                kafka,
                plog,
                self.fetch_frame,
            )
        except Exception:
            log.exception(
                "kafka: handing %s/%d@%d to a parked Fetch", topic, partition, base_offset
            )
            return
        for _ in range(handed):
            self.broker.metrics.fetched(topic, partition, stored.data)

    # -- Fetch ---------------------------------------------------------------------------

    async def fetch(self, req: Request, pool: Executor) -> FetchAnswer:
        """The broker's fetch coroutine runs on the listener's loop (its long-poll parks a
        coroutine, woken by the broker's per-partition notifier); converting the records
        to Kafka batches runs on ``pool`` unless they are few (INLINE_FETCH_BYTES)."""
        body = req.body
        if int(getattr(body, "session_id", 0)) != 0:
            # KIP-227 sessions: this listener never creates one (it answers session id 0,
            # so clients send full fetches), so any other id is unknown to it.
            return FetchAnswer((), error_code=ErrorCode.fetch_session_id_not_found)
        specs, refusals = [], []
        for t in body.topics:
            refused = self.access.refused(req.principal, "topic", t.topic, "read")
            for p in t.partitions:
                if refused is not None:
                    refusals.append(FetchOutcome(t.topic, p.partition, error=refused))
                else:
                    specs.append(
                        FetchSpec(
                            t.topic, p.partition, p.fetch_offset, max(p.partition_max_bytes, 0)
                        )
                    )
        outcomes = refusals
        if specs:
            outcomes += await self.fetch_handler.fetch(
                specs,
                max_wait_ms=max(ms(body.max_wait), 0),
                min_bytes=max(int(body.min_bytes), 0),
                max_bytes=max(int(body.max_bytes), 0),
            )
        if sum(len(o.records) for o in outcomes if o.records) <= INLINE_FETCH_BYTES:
            return self.fetch_response(outcomes)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, self.fetch_response, outcomes)

    def fetch_response(self, outcomes: list[FetchOutcome]) -> FetchAnswer:
        by_topic: dict[str, list[FetchPartitionAnswer]] = {}
        for o in outcomes:
            records: bytes | list[bytes | memoryview] = b""
            if o.records:
                kept = self.sent.lookup(o.topic, o.partition, o.records)
                records = kept if kept is not None else logstream_to_kafka_pieces(o.records)
            by_topic.setdefault(o.topic, []).append(
                _partition_answer(
                    o.partition, o.error, o.high_watermark, o.log_start_offset, records
                )
            )
        return FetchAnswer(
            tuple(FetchTopicAnswer(name, tuple(parts)) for name, parts in by_topic.items())
        )

    @staticmethod
    def fetch_frame(
        req: Request, high_watermark: int, log_start_offset: int, records: bytes
    ) -> tuple[bytes, bool]:
        """The answer frame of the one-partition Fetch ``req`` with ``records`` read at
        its offset: what the normal path sends for the same values (``handoff.py``)."""
        topic = req.body.topics[0]
        part = _partition_answer(
            topic.partitions[0].partition, None, high_watermark, log_start_offset, records
        )
        body = FetchAnswer((FetchTopicAnswer(topic.topic, (part,)),))
        frame = wire.encode_response(req.api_key, req.api_version, req.correlation_id, body)
        return frame, True

    # -- ListOffsets ---------------------------------------------------------------------

    def list_offsets(self, req: Request) -> Any:
        mod = wire.response_module(wire.LIST_OFFSETS, req.api_version)
        topics = []
        for t in req.body.topics:
            parts = []
            refused = self.access.refused(req.principal, "topic", t.name, "describe")
            for p in t.partitions:
                try:
                    if refused is not None:
                        raise refused
                    offset, ts = self.fetch_handler.list_offset(
                        t.name, p.partition_index, int(p.timestamp)
                    )
                    exc: LogstreamError | None = None
                except LogstreamError as err:
                    offset, ts, exc = -1, -1, err
                parts.append(
                    build(
                        mod.ListOffsetsPartitionResponse,
                        partition_index=p.partition_index,
                        error_code=error_code(exc),
                        timestamp=ts,
                        offset=offset,
                        leader_epoch=0,
                    )
                )
            topics.append(build(mod.ListOffsetsTopicResponse, name=t.name, partitions=tuple(parts)))
        return build(mod.ListOffsetsResponse, topics=tuple(topics))

    # -- InitProducerId ------------------------------------------------------------------

    def init_producer_id(self, req: Request) -> Any:
        mod = wire.response_module(wire.INIT_PRODUCER_ID, req.api_version)
        if req.body.transactional_id is not None:
            return build(
                mod.InitProducerIdResponse,
                error_code=ErrorCode.invalid_request,
                producer_id=-1,
                producer_epoch=-1,
            )
        with self.broker.operation():
            producer_id, epoch = self.broker.producer_ids.allocate()
        return build(
            mod.InitProducerIdResponse,
            error_code=ErrorCode.none,
            producer_id=producer_id,
            producer_epoch=epoch,
        )
