"""An in-memory stand-in for a broker connection, for testing code that uses the client
without sockets or a broker process (like ``httpx.MockTransport``).

    transport = InMemoryTransport()
    transport.create_topic("orders", partitions=3)
    with Producer(transport) as p: ...
    transport.fail("Produce", errors.RequestTimedOutError, times=2)   # inject failures
    transport.break_stream_after(3)   # the next ProduceStream dies after 3 answers

It implements :class:`logstream.client.transport_api.TransportLike` for the subset of the protocol
the producer, the consumer (without groups) and ``Admin`` use (ProduceStream, Fetch,
Subscribe, ListOffsets, InitProducerId; CreateTopics, DeleteTopics, ListTopics,
DescribeTopics), with idempotent-producer de-duplication like the real broker: a batch whose
(producer id, sequence) was already written is answered ``duplicate`` with its offsets.
Failures are raised as the ``LogstreamError`` the real transport would raise; there is no
gRPC here. Group calls and the rarer admin calls raise ``NotImplementedError`` (test
those against a real broker: ``logstream.testing.broker``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from logstream import errors
from logstream.codec import next_offset_after, read_header, stamp_base_offset, validate_batch
from logstream.protocol import admin_pb2, log_pb2
from logstream.testing.unmodelled import UnmodelledCalls
from logstream.types import EARLIEST, LATEST

T = TypeVar("T")


@dataclass
class FakePartition:
    batches: list[bytearray] = field(default_factory=list)
    bases: list[int] = field(default_factory=list)
    end: int = 0
    # producer id -> list of (base_sequence, record_count, base_offset)
    producers: dict[int, list[tuple[int, int, int]]] = field(default_factory=dict)

    def append(self, raw: bytes) -> tuple[int, bool, errors.LogstreamError | None]:
        header = validate_batch(raw)
        if header.producer_id >= 0 and header.base_sequence >= 0:
            seen = self.producers.setdefault(header.producer_id, [])
            for seq, count, base in seen:
                if seq == header.base_sequence and count == header.record_count:
                    return base, True, None
            expected = seen[-1][0] + seen[-1][1] if seen else 0
            if header.base_sequence != expected:
                return (
                    -1,
                    False,
                    errors.OutOfOrderSequenceError(
                        f"sequence {header.base_sequence}, expected {expected}"
                    ),
                )
            seen.append((header.base_sequence, header.record_count, self.end))
            del seen[:-5]
        buf = bytearray(raw)
        stamp_base_offset(buf, self.end)
        base = self.end
        self.batches.append(buf)
        self.bases.append(base)
        self.end += header.record_count
        return base, False, None


class _PendingFetch:
    """A Fetch answered on its own thread, like a gRPC future."""

    def __init__(self, fn: Callable[[], log_pb2.FetchResponse]) -> None:
        self._done = threading.Event()
        self._result: log_pb2.FetchResponse | None = None
        self._error: BaseException | None = None
        self._cancelled = False
        threading.Thread(target=self._run, args=(fn,), daemon=True).start()

    def _run(self, fn: Callable[[], log_pb2.FetchResponse]) -> None:
        try:
            self._result = fn()
        except BaseException as exc:
            self._error = exc
        self._done.set()

    def result(self) -> log_pb2.FetchResponse:
        self._done.wait()
        if self._cancelled:
            raise errors.ClientClosedError("request cancelled")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def cancel(self) -> None:
        self._cancelled = True
        self._done.set()


class _Stream(Generic[T]):
    """A stream of fake answers; ``cancel`` ends it at the next answer (when
    ``cancellable``: the fake ProduceStream answers every request it took, as before)."""

    def __init__(self, answers: Iterator[T], *, cancellable: bool = True) -> None:
        self._answers = answers
        self._cancellable = cancellable
        self.cancelled = threading.Event()

    def __iter__(self) -> Iterator[T]:
        for answer in self._answers:
            if self._cancellable and self.cancelled.is_set():
                raise errors.ClientClosedError("stream cancelled")
            yield answer

    def cancel(self) -> None:
        self.cancelled.set()


class InMemoryTransport(UnmodelledCalls):
    """A fake broker connection holding topics in memory. Thread-safe. The calls it does not
    model come from :class:`~logstream.testing.unmodelled.UnmodelledCalls`."""

    def __init__(self, address: str = "in-memory:0") -> None:
        self.address = address
        self.topics: dict[str, list[FakePartition]] = {}
        self.calls: dict[str, int] = {}
        self._lock = threading.Condition()
        self._failures: dict[str, list[errors.LogstreamError]] = {}
        self._break_after: int | None = None
        self._answer_gate: threading.Event | None = None
        self._next_pid = 1000
        self.closed = False

    # -- test controls ------------------------------------------------------------------------

    def create_topic(self, name: str, partitions: int = 1) -> None:
        with self._lock:
            self.topics[name] = [FakePartition() for _ in range(partitions)]

    def fail(self, method: str, error: type[errors.LogstreamError], times: int = 1) -> None:
        """The next ``times`` calls of ``method`` (e.g. "Produce", "ProduceStream" per
        request, "Fetch") fail with ``error``."""
        with self._lock:
            self._failures.setdefault(method, []).extend(
                error(f"injected {error.__name__}") for _ in range(times)
            )

    def break_stream_after(self, answers: int) -> None:
        """The current/next ProduceStream writes ``answers`` more requests, then the next
        request is written but its answer is lost and the stream fails (a broker crash)."""
        with self._lock:
            self._break_after = answers

    def hold_produce_answers(self) -> threading.Event:
        """A slow broker: from now on the ProduceStream answers each request it took only
        once the returned event is set (and takes the next request after answering, as
        before). Set the event to let every answer through."""
        gate = threading.Event()
        with self._lock:
            self._answer_gate = gate
        return gate

    def records(self, topic: str, partition: int) -> list[tuple[int, bytes | None, bytes | None]]:
        """(offset, key, value) of everything stored, for assertions."""
        from logstream.codec import decode_batch

        out: list[tuple[int, bytes | None, bytes | None]] = []
        for raw in self.topics[topic][partition].batches:
            d = decode_batch(raw)
            out.extend(zip(d.offsets.tolist(), d.key_list(), d.value_list(), strict=True))
        return out

    def close(self) -> None:
        self.closed = True

    def connection_drops(self) -> int:
        return 0  # an in-memory connection never drops

    # -- the typed transport methods (logstream.client.transport_api.TransportLike) ----------------

    def produce_stream(self, requests: Iterator[bytes]) -> _Stream[log_pb2.ProduceResponse]:
        parsed = (log_pb2.ProduceRequest.FromString(raw) for raw in requests)
        return _Stream(self._produce_stream(parsed), cancellable=False)

    def produce(
        self, request: log_pb2.ProduceRequest, *, timeout: float | None
    ) -> log_pb2.ProduceResponse:
        self._maybe_fail("Produce")
        return self._produce(request)  # type: ignore[no-any-return]

    def init_producer_id(
        self, request: log_pb2.InitProducerIdRequest, *, timeout: float | None
    ) -> log_pb2.InitProducerIdResponse:
        self._maybe_fail("InitProducerId")
        with self._lock:
            self._next_pid += 1
            return log_pb2.InitProducerIdResponse(producer_id=self._next_pid, producer_epoch=0)

    def fetch(self, request: log_pb2.FetchRequest, *, timeout: float | None) -> _PendingFetch:
        def answer() -> log_pb2.FetchResponse:
            self._maybe_fail("Fetch")
            return self._fetch(request, request.max_wait_ms / 1000.0, request.min_bytes)

        return _PendingFetch(answer)

    def subscribe(self, request: log_pb2.SubscribeRequest) -> _Stream[log_pb2.FetchResponse]:
        self._maybe_fail("Subscribe")
        stream: _Stream[log_pb2.FetchResponse]
        offsets = {(fp.topic, fp.partition): fp.offset for fp in request.partitions}
        heartbeat = (request.heartbeat_ms or 500) / 1000.0

        def answers() -> Iterator[log_pb2.FetchResponse]:
            while not self.closed:
                req = log_pb2.FetchRequest(
                    partitions=[
                        log_pb2.FetchPartition(topic=t, partition=p, offset=o, max_bytes=1 << 20)
                        for (t, p), o in offsets.items()
                    ]
                )
                resp = self._fetch(req, heartbeat, 1, stop=stream.cancelled)
                for part in resp.partitions:
                    key = (part.topic, part.partition)
                    nxt = next_offset_after(part.records) if part.records else None
                    if nxt is not None:
                        offsets[key] = nxt
                    elif part.error_code:
                        offsets.pop(key, None)
                yield resp
                if not offsets:
                    return

        stream = _Stream(answers())
        return stream

    def list_offsets(
        self, request: log_pb2.ListOffsetsRequest, *, timeout: float | None
    ) -> log_pb2.ListOffsetsResponse:
        self._maybe_fail("ListOffsets")
        return self._list_offsets(request)

    def create_topics(
        self, request: admin_pb2.CreateTopicsRequest, *, timeout: float | None
    ) -> admin_pb2.CreateTopicsResponse:
        self._maybe_fail("CreateTopics")
        resp = admin_pb2.CreateTopicsResponse()
        for spec in request.topics:
            r = resp.topics.add(name=spec.name)
            if spec.name in self.topics:
                err = errors.TopicAlreadyExistsError(spec.name)
                r.error_code, r.error_message = err.code, err.message
            else:
                self.create_topic(spec.name, spec.partitions or 1)
        return resp

    def delete_topics(
        self, request: admin_pb2.DeleteTopicsRequest, *, timeout: float | None
    ) -> admin_pb2.DeleteTopicsResponse:
        self._maybe_fail("DeleteTopics")
        resp = admin_pb2.DeleteTopicsResponse()
        with self._lock:
            for name in request.names:
                r = resp.topics.add(name=name)
                if self.topics.pop(name, None) is None:
                    err = errors.UnknownTopicOrPartitionError(name)
                    r.error_code, r.error_message = err.code, err.message
        return resp

    def list_topics(
        self, request: admin_pb2.ListTopicsRequest, *, timeout: float | None
    ) -> admin_pb2.ListTopicsResponse:
        self._maybe_fail("ListTopics")
        with self._lock:
            return admin_pb2.ListTopicsResponse(
                topics=[
                    admin_pb2.TopicSummary(name=n, partitions=len(p))
                    for n, p in sorted(self.topics.items())
                ]
            )

    def describe_topics(
        self, request: admin_pb2.DescribeTopicsRequest, *, timeout: float | None
    ) -> admin_pb2.DescribeTopicsResponse:
        self._maybe_fail("DescribeTopics")
        resp = admin_pb2.DescribeTopicsResponse()
        with self._lock:
            for name in request.names or sorted(self.topics):
                t = resp.topics.add(name=name)
                parts = self.topics.get(name)
                if parts is None:
                    err = errors.UnknownTopicOrPartitionError(f"unknown topic {name!r}")
                    t.error_code, t.error_message = err.code, err.message
                    continue
                for i, p in enumerate(parts):
                    t.partitions.add(
                        partition=i,
                        log_start_offset=0,
                        log_end_offset=p.end,
                        size_bytes=sum(len(b) for b in p.batches),
                        segment_count=1,
                    )
        return resp

    # -- plumbing -------------------------------------------------------------------------------

    def _maybe_fail(self, name: str) -> None:
        with self._lock:
            self.calls[name] = self.calls.get(name, 0) + 1
            if self.closed:
                raise errors.BrokerNotAvailableError(
                    f"broker at {self.address} not available: transport closed"
                )
            pending = self._failures.get(name)
            if pending:
                raise pending.pop(0)

    def _partition(self, topic: str, partition: int) -> FakePartition:
        parts = self.topics.get(topic)
        if parts is None or not 0 <= partition < len(parts):
            raise errors.UnknownTopicOrPartitionError(f"{topic}-{partition}")
        return parts[partition]

    # -- Log ------------------------------------------------------------------------------------

    def _produce(self, request: Any) -> Any:
        resp = log_pb2.ProduceResponse(correlation_id=request.correlation_id)
        with self._lock:
            for data in request.partitions:
                part = resp.partitions.add(topic=data.topic, partition=data.partition)
                try:
                    p = self._partition(data.topic, data.partition)
                except errors.LogstreamError as exc:
                    part.error_code, part.error_message = exc.code, exc.message
                    continue
                for raw in data.batches:
                    try:
                        base, dup, err = p.append(raw)
                    except errors.LogstreamError as exc:
                        base, dup, err = -1, False, exc
                    part.results.add(
                        error_code=err.code if err else 0,
                        error_message=err.message if err else "",
                        base_offset=base,
                        log_append_time_ms=-1,
                        duplicate=dup,
                    )
            self._lock.notify_all()
        return resp

    def _produce_stream(self, requests: Iterator[Any]) -> Any:
        def answers() -> Iterator[Any]:
            for request in requests:
                gate = self._answer_gate
                if gate is not None:
                    gate.wait(10)
                self._maybe_fail("ProduceStream")
                resp = self._produce(request)
                with self._lock:
                    if self._break_after is not None:
                        if self._break_after == 0:
                            self._break_after = None
                            raise errors.BrokerNotAvailableError(
                                f"broker at {self.address} not available: stream broken"
                            )
                        self._break_after -= 1
                yield resp

        return answers()

    def _fetch(
        self,
        request: log_pb2.FetchRequest,
        max_wait: float,
        min_bytes: int,
        stop: threading.Event | None = None,
    ) -> log_pb2.FetchResponse:
        """One Fetch answer: waits up to ``max_wait`` for ``min_bytes`` (or ``stop``)."""
        deadline = time.monotonic() + max_wait
        with self._lock:
            while True:
                resp = log_pb2.FetchResponse()
                total = 0
                for fp in request.partitions:
                    out = resp.partitions.add(topic=fp.topic, partition=fp.partition)
                    try:
                        p = self._partition(fp.topic, fp.partition)
                    except errors.LogstreamError as exc:
                        out.error_code, out.error_message = exc.code, exc.message
                        continue
                    out.high_watermark = p.end
                    if fp.offset > p.end or fp.offset < 0:
                        err = errors.OffsetOutOfRangeError(f"offset {fp.offset}")
                        out.error_code, out.error_message = err.code, err.message
                        continue
                    chunks: list[bytes] = []
                    size = 0
                    for raw, base in zip(p.batches, p.bases, strict=True):
                        count = read_header(raw).record_count
                        if base + count <= fp.offset:
                            continue
                        if chunks and size + len(raw) > (fp.max_bytes or 1 << 20):
                            break
                        chunks.append(bytes(raw))
                        size += len(raw)
                    out.records = b"".join(chunks)
                    total += size
                if total >= max(min_bytes, 1) or time.monotonic() >= deadline or self.closed:
                    return resp
                if stop is not None and stop.is_set():
                    return resp
                # Short waits when a stream may be cancelled: the cancel sets no condition.
                left = max(0.0, deadline - time.monotonic())
                self._lock.wait(left if stop is None else min(left, 0.05))

    def _list_offsets(self, request: log_pb2.ListOffsetsRequest) -> log_pb2.ListOffsetsResponse:
        resp = log_pb2.ListOffsetsResponse()
        with self._lock:
            for lp in request.partitions:
                out = resp.partitions.add(topic=lp.topic, partition=lp.partition, timestamp=-1)
                try:
                    p = self._partition(lp.topic, lp.partition)
                except errors.LogstreamError as exc:
                    out.error_code, out.error_message = exc.code, exc.message
                    continue
                if lp.timestamp == EARLIEST:
                    out.offset = 0
                elif lp.timestamp == LATEST:
                    out.offset = p.end
                else:
                    out.offset = p.end
                    for raw, base in zip(p.batches, p.bases, strict=True):
                        max_ts = read_header(raw).max_timestamp
                        if max_ts >= lp.timestamp:
                            out.offset = base
                            break
        return resp
