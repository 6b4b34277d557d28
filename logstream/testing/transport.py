"""An in-memory stand-in for a broker connection, for testing code that uses the client
without sockets or a broker process (like ``httpx.MockTransport``).

    transport = InMemoryTransport()
    transport.create_topic("orders", partitions=3)
    with Producer(transport) as p: ...
    transport.fail("Produce", errors.RequestTimedOutError, times=2)   # inject failures
    transport.break_stream_after(3)   # the next ProduceStream dies after 3 answers

It implements the subset of the wire protocol the client uses (Log: Produce, ProduceStream,
Fetch, ListOffsets, InitProducerId; Admin: CreateTopics, DeleteTopics, ListTopics,
DescribeTopics), with idempotent-producer de-duplication like the real broker: a batch whose
(producer id, sequence) was already written is answered ``duplicate`` with its offsets.
Failures are raised as ``grpc.RpcError`` objects carrying the ``logstream-error-code``
trailer, so the client's real translation path is exercised.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from logstream import errors
from logstream.client.transport import translate
from logstream.codec import read_header, stamp_base_offset, validate_batch
from logstream.protocol import admin_pb2, log_pb2
from logstream.protocol.status import ERROR_CODE_KEY, grpc_code_for
from logstream.types import EARLIEST, LATEST


class FakeRpcError(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    """A failed call as gRPC would raise it."""

    def __init__(self, exc: errors.LogstreamError | None, status: grpc.StatusCode | None = None):
        super().__init__()
        self._exc = exc
        self._status = status or (grpc_code_for(exc) if exc else grpc.StatusCode.UNKNOWN)

    def code(self) -> grpc.StatusCode:
        return self._status

    def details(self) -> str:
        return f"{self._exc.name}: {self._exc.message}" if self._exc else str(self._status)

    def trailing_metadata(self) -> Any:
        return ((ERROR_CODE_KEY, str(self._exc.code)),) if self._exc else ()

    def initial_metadata(self) -> Any:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False


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


class _Method:
    """A stub method: callable, with ``.future`` like a generated gRPC stub."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn

    def __call__(self, request: Any, timeout: float | None = None, **_: Any) -> Any:
        return self._fn(request, timeout)

    def future(self, request: Any, timeout: float | None = None, **_: Any) -> _Future:
        return _Future(lambda: self._fn(request, timeout))


class _Future:
    """A finished-on-a-thread call, like ``stub.X.future(...)``."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._done = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[Any], None]] = []
        self._cancelled = False
        threading.Thread(target=self._run, args=(fn,), daemon=True).start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self._result = fn()
        except BaseException as exc:
            self._error = exc
        self._done.set()
        for cb in self._callbacks:
            cb(self)

    def result(self, timeout: float | None = None) -> Any:
        if not self._done.wait(timeout):
            raise FakeRpcError(None, grpc.StatusCode.DEADLINE_EXCEEDED)
        if self._cancelled:
            raise grpc.FutureCancelledError()
        if self._error is not None:
            raise self._error
        return self._result

    def cancel(self) -> bool:
        self._cancelled = True
        self._done.set()
        return True

    def add_done_callback(self, cb: Callable[[Any], None]) -> None:
        self._callbacks.append(cb)
        if self._done.is_set():
            cb(self)


class _ProduceStreamCall:
    """The fake ProduceStream's answers, with failures raised as ``LogstreamError``."""

    def __init__(self, answers: Iterator[Any], address: str) -> None:
        self._answers = answers
        self._address = address

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self._answers
        except FakeRpcError as exc:
            raise translate(exc, self._address) from exc

    def cancel(self) -> None:
        pass


class _Namespace:
    """Attribute bag standing in for a generated stub (methods are set per instance)."""


class InMemoryTransport:
    """A fake broker connection holding topics in memory. Thread-safe."""

    def __init__(self, address: str = "in-memory:0") -> None:
        self.address = address
        self.topics: dict[str, list[FakePartition]] = {}
        self.calls: dict[str, int] = {}
        self._lock = threading.Condition()
        self._failures: dict[str, list[errors.LogstreamError]] = {}
        self._break_after: int | None = None
        self._next_pid = 1000
        self.closed = False
        self.log = _Namespace()
        self.admin = _Namespace()
        self.group = _Namespace()
        for name in ("Produce", "Fetch", "ListOffsets", "InitProducerId"):
            setattr(self.log, name, _Method(self._wrap(name, getattr(self, f"_{name}"))))
        setattr(self.log, "ProduceStream", self._produce_stream)  # noqa: B010 (no stub type)
        for name in ("CreateTopics", "DeleteTopics", "ListTopics", "DescribeTopics"):
            setattr(self.admin, name, _Method(self._wrap(name, getattr(self, f"_{name}"))))

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

    # -- the typed transport methods (logstream.client.transport.TransportLike) ----------------

    def produce_stream(self, requests: Iterator[bytes]) -> _ProduceStreamCall:
        parsed = (log_pb2.ProduceRequest.FromString(raw) for raw in requests)
        return _ProduceStreamCall(self._produce_stream(parsed), self.address)

    def init_producer_id(
        self, request: log_pb2.InitProducerIdRequest, *, timeout: float | None
    ) -> log_pb2.InitProducerIdResponse:
        return self._typed("InitProducerId", self._InitProducerId, request, timeout)  # type: ignore[no-any-return]

    def describe_topics(
        self, request: admin_pb2.DescribeTopicsRequest, *, timeout: float | None
    ) -> admin_pb2.DescribeTopicsResponse:
        return self._typed("DescribeTopics", self._DescribeTopics, request, timeout)  # type: ignore[no-any-return]

    def _typed(self, name: str, fn: Callable[..., Any], request: Any, timeout: float | None) -> Any:
        try:
            return self._wrap(name, fn)(request, timeout)
        except FakeRpcError as exc:
            raise translate(exc, self.address) from exc

    # -- plumbing -------------------------------------------------------------------------------

    def _wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(request: Any, timeout: float | None) -> Any:
            self._maybe_fail(name)
            return fn(request, timeout)

        return call

    def _maybe_fail(self, name: str) -> None:
        with self._lock:
            self.calls[name] = self.calls.get(name, 0) + 1
            if self.closed:
                raise FakeRpcError(
                    errors.BrokerNotAvailableError("transport closed"), grpc.StatusCode.UNAVAILABLE
                )
            pending = self._failures.get(name)
            if pending:
                raise FakeRpcError(pending.pop(0))

    def _partition(self, topic: str, partition: int) -> FakePartition:
        parts = self.topics.get(topic)
        if parts is None or not 0 <= partition < len(parts):
            raise errors.UnknownTopicOrPartitionError(f"{topic}-{partition}")
        return parts[partition]

    # -- Log ------------------------------------------------------------------------------------

    def _Produce(self, request: Any, timeout: float | None) -> Any:
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

    def _produce_stream(self, requests: Iterator[Any], timeout: float | None = None) -> Any:
        def answers() -> Iterator[Any]:
            for request in requests:
                self._maybe_fail("ProduceStream")
                resp = self._Produce(request, timeout)
                with self._lock:
                    if self._break_after is not None:
                        if self._break_after == 0:
                            self._break_after = None
                            raise FakeRpcError(
                                errors.BrokerNotAvailableError("stream broken"),
                                grpc.StatusCode.UNAVAILABLE,
                            )
                        self._break_after -= 1
                yield resp

        return answers()

    def _Fetch(self, request: Any, timeout: float | None) -> Any:
        deadline = time.monotonic() + request.max_wait_ms / 1000.0
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
                if total >= max(request.min_bytes, 1) or time.monotonic() >= deadline:
                    return resp
                self._lock.wait(max(0.0, deadline - time.monotonic()))

    def _ListOffsets(self, request: Any, timeout: float | None) -> Any:
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

    def _InitProducerId(self, request: Any, timeout: float | None) -> Any:
        with self._lock:
            self._next_pid += 1
            return log_pb2.InitProducerIdResponse(producer_id=self._next_pid, producer_epoch=0)

    # -- Admin ----------------------------------------------------------------------------------

    def _CreateTopics(self, request: Any, timeout: float | None) -> Any:
        resp = admin_pb2.CreateTopicsResponse()
        for spec in request.topics:
            r = resp.topics.add(name=spec.name)
            if spec.name in self.topics:
                err = errors.TopicAlreadyExistsError(spec.name)
                r.error_code, r.error_message = err.code, err.message
            else:
                self.create_topic(spec.name, spec.partitions or 1)
        return resp

    def _DeleteTopics(self, request: Any, timeout: float | None) -> Any:
        resp = admin_pb2.DeleteTopicsResponse()
        with self._lock:
            for name in request.names:
                r = resp.topics.add(name=name)
                if self.topics.pop(name, None) is None:
                    err = errors.UnknownTopicOrPartitionError(name)
                    r.error_code, r.error_message = err.code, err.message
        return resp

    def _ListTopics(self, request: Any, timeout: float | None) -> Any:
        with self._lock:
            return admin_pb2.ListTopicsResponse(
                topics=[
                    admin_pb2.TopicSummary(name=n, partitions=len(p))
                    for n, p in sorted(self.topics.items())
                ]
            )

    def _DescribeTopics(self, request: Any, timeout: float | None) -> Any:
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
