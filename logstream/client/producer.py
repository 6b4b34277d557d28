"""The producer: ``send()`` appends to per-partition column lists; a sender thread encodes
whole batches and pipelines them to the broker.

Data flow::

    send() --(lock, list.append)--> ProducerBatch (open, one per partition)
        sealed when batch_bytes is reached or linger_ms has passed since its first record
    sender thread: drain sealed batches (several partitions per request, <= max_request_bytes),
        assign idempotence sequence numbers, encode_batch() each, write the request on the
        ProduceStream (up to max_in_flight requests unanswered)
    reader thread: match answers by correlation id, complete each BatchResult (offsets), or
        put the batch back for a retry (same bytes, same sequence) after a backoff

Ordering and exactly-once per partition: one ProduceStream is answered in order by the
broker, and a partition whose batch needs a retry is *muted* (nothing new is sent for it)
until its in-flight batches are answered; then the failed batches go out again in sequence
order. With idempotence (the default) the broker drops a batch whose sequence it already
wrote and answers ``duplicate`` with the original offsets, so a retry after a lost answer
never writes twice.

Failure story: if the stream breaks (broker killed), every in-flight batch is retriable
(``BrokerNotAvailableError``) and goes back to the head of its partition queue; the sender
reconnects with backoff until ``delivery_timeout_ms`` passes, then fails the futures.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import grpc

from logstream import errors
from logstream.client import transport as tr
from logstream.client.accumulator import (
    RECORD_OVERHEAD,
    BatchResult,
    ProducerBatch,
    RecordFuture,
    _new_future,
    failed_future,
)
from logstream.client.metadata import Metadata
from logstream.client.partitioner import Partitioner
from logstream.client.partitioner import by_name as partitioner_by_name
from logstream.client.wire import produce_request
from logstream.codec import compression
from logstream.codec.batch import HEADER_SIZE, encode_batch, encode_headers
from logstream.protocol import common_pb2, log_pb2
from logstream.protocol.status import error_for_code
from logstream.types import RecordMetadata

log = logging.getLogger("logstream.client.producer")
_crc32 = zlib.crc32

ACKS = {
    "none": common_pb2.ACKS_NONE,
    "leader": common_pb2.ACKS_LEADER,
    "flushed": common_pb2.ACKS_FLUSHED,
    0: common_pb2.ACKS_NONE,
    1: common_pb2.ACKS_LEADER,
    "all": common_pb2.ACKS_FLUSHED,
}

_MAX_DELTA = 2**31 - 1  # the codec stores timestamps as int32 deltas from the first

MAX_BATCH_BYTES = 1024 * 1024
"""The broker's default limit for one encoded batch; ``batch_bytes`` must stay below it."""

PIPELINE_MIN_BYTES = 64 * 1024
"""While a request is unanswered, the next one goes out only once it carries this much;
smaller data waits for an answer (or for more data). A produce request costs the broker and
the client ~0.1-0.3 ms of fixed gRPC work, as much as ~64 KB of payload: pipelining tiny
requests (``linger_ms=0`` at thousands of records/s) only queued them on the stream, 4-5 ms
at 2,000 records/s on 2 cores, where waiting for the answer batches them (docs/performance.md,
Latency). Large requests still pipeline up to ``max_in_flight``."""

TP = tuple[str, int]


class _Topic:
    __slots__ = ("name", "num_partitions", "open", "sticky")

    def __init__(self, name: str, num_partitions: int) -> None:
        self.name = name
        self.num_partitions = num_partitions
        self.open: list[ProducerBatch | None] = [None] * num_partitions
        self.sticky = zlib.crc32(name.encode()) % num_partitions

    def open_ts_conflict(self, timestamps: list[int]) -> bool:
        """True if an open batch's first timestamp is too far from these timestamps."""
        lo, hi = min(timestamps), max(timestamps)
        for b in self.open:
            if b is not None and b.values:
                t0 = b.first_timestamp()
                if hi - t0 > _MAX_DELTA or t0 - lo > _MAX_DELTA:
                    return True
        return False


class _InFlight:
    __slots__ = ("parts", "pipe")

    def __init__(self, pipe: Any, parts: list[tuple[TP, list[ProducerBatch]]]) -> None:
        self.pipe = pipe
        self.parts = parts


class _StreamPipe:
    """One ``ProduceStream`` call: a queue feeding the request iterator and a reader thread."""

    def __init__(self, producer: Producer) -> None:
        self._producer = producer
        self._queue: queue.SimpleQueue[log_pb2.ProduceRequest | bytes | None] = queue.SimpleQueue()
        self.broken = False
        transport = producer._transport
        raw = getattr(transport, "produce_stream_raw", None)
        self.raw = raw is not None  # requests are serialized by logstream.client.wire
        self._call = (raw or transport.log.ProduceStream)(self._requests())
        self._reader = threading.Thread(
            target=self._read, name="logstream-producer-reader", daemon=True
        )
        self._reader.start()

    def _requests(self) -> Iterator[log_pb2.ProduceRequest | bytes]:
        while True:
            req = self._queue.get()
            if req is None:
                return
            yield req

    def send(self, request: log_pb2.ProduceRequest | bytes) -> None:
        self._queue.put(request)

    def close(self) -> None:
        self._queue.put(None)

    def cancel(self) -> None:
        self._queue.put(None)
        cancel = getattr(self._call, "cancel", None)
        if cancel is not None:
            cancel()

    def join(self, timeout: float | None) -> None:
        self._reader.join(timeout)

    def _read(self) -> None:
        err: errors.LogstreamError | None = None
        try:
            for resp in self._call:
                self._producer._on_response(resp.correlation_id, resp)
            err = errors.BrokerNotAvailableError("produce stream closed by the broker")
        except grpc.RpcError as exc:
            err = tr.translate(exc, self._producer._transport.address)
            err.__cause__ = exc
        except errors.LogstreamError as exc:
            err = exc
        except Exception as exc:  # never let the reader die silently
            log.exception("produce stream reader failed")
            err = errors.UnknownServerError(f"produce stream reader failed: {exc!r}")
        self.broken = True
        self._producer._on_pipe_broken(self, err)


class _UnaryPipe:
    """Fallback for brokers without ``ProduceStream``: concurrent unary ``Produce`` futures."""

    broken = False
    raw = False

    def __init__(self, producer: Producer) -> None:
        self._producer = producer

    def send(self, request: log_pb2.ProduceRequest | bytes) -> None:
        assert isinstance(request, log_pb2.ProduceRequest)
        corr = request.correlation_id
        fut = self._producer._transport.log.Produce.future(
            request, timeout=self._producer._request_timeout
        )

        def done(f: Any) -> None:
            try:
                resp = f.result()
            except grpc.RpcError as exc:
                err = tr.translate(exc, self._producer._transport.address)
                self._producer._on_request_failed(corr, err)
                return
            except Exception as exc:
                self._producer._on_request_failed(corr, errors.UnknownServerError(repr(exc)))
                return
            self._producer._on_response(corr, resp)

        fut.add_done_callback(done)

    def close(self) -> None:
        pass

    cancel = close

    def join(self, timeout: float | None) -> None:
        pass


class BulkFuture:
    """The result of ``send_batch``: one completion for many records (no per-record object)."""

    __slots__ = ("_segments", "count")

    def __init__(self, segments: list[tuple[BatchResult, int, int, list[int] | None]], count: int):
        self._segments = segments  # (batch, first index in batch, n, input positions or None)
        self.count = count

    def done(self) -> bool:
        return all(seg[0].is_done for seg in self._segments)

    def _wait(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        for seg in self._segments:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not seg[0].wait(remaining):
                raise errors.RequestTimedOutError(f"send_batch not acknowledged in {timeout} s")

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._wait(timeout)
        for seg in self._segments:
            if seg[0].error is not None:
                return seg[0].error
        return None

    def result(self, timeout: float | None = None) -> list[RecordMetadata]:
        """Metadata for every record, in input order; raises the first failure."""
        exc = self.exception(timeout)
        if exc is not None:
            raise exc
        out: list[RecordMetadata | None] = [None] * self.count
        pos = 0
        for batch, start, n, positions in self._segments:
            metas = [batch.metadata(start + i) for i in range(n)]
            if positions is None:
                out[pos : pos + n] = metas
                pos += n
            else:
                for p, m in zip(positions, metas, strict=True):
                    out[p] = m
        return out  # type: ignore[return-value]


class Producer:
    """Send records to topics. **Thread-safe**: any number of threads may call ``send``,
    ``send_batch`` and ``flush`` concurrently; one background sender thread (plus one stream
    reader thread) does all network I/O.

    ``send()`` never blocks on the network: it appends to an in-memory batch and returns a
    :class:`RecordFuture`. It blocks only when the bounded buffer (``buffer_bytes``) is full,
    for at most ``max_block_ms``, and then raises :class:`BufferExhaustedError`; and the first
    time it sees a topic, to fetch its partition count.
    """

    def __init__(
        self,
        bootstrap: str | tr.TransportLike,
        *,
        linger_ms: float = 5.0,
        batch_bytes: int = 512 * 1024,
        acks: str | int = "leader",
        compression: str | None = None,
        idempotence: bool | None = None,
        retries: int = 2**31 - 1,
        retry_backoff_ms: float = 100.0,
        retry_backoff_max_ms: float = 1000.0,
        delivery_timeout_ms: float = 120_000.0,
        request_timeout_ms: float = 30_000.0,
        buffer_bytes: int = 32 * 1024 * 1024,
        max_block_ms: float = 60_000.0,
        max_in_flight: int = 5,
        max_request_bytes: int = 2 * 1024 * 1024,
        partitioner: str | Partitioner = "crc32",
        producer_name: str = "",
        client_id: str = "",
    ) -> None:
        if acks not in ACKS:
            raise errors.InvalidRequiredAcksError(f"acks must be none|leader|flushed, got {acks!r}")
        if not 0 < batch_bytes <= MAX_BATCH_BYTES - HEADER_SIZE:
            raise errors.InvalidConfigError(
                f"batch_bytes must be in (0, {MAX_BATCH_BYTES - HEADER_SIZE}], got {batch_bytes}"
            )
        self._acks = ACKS[acks]
        if idempotence is None:
            idempotence = self._acks != common_pb2.ACKS_NONE
        elif idempotence and self._acks == common_pb2.ACKS_NONE:
            raise errors.InvalidConfigError("idempotence needs acks 'leader' or 'flushed'")
        self._idempotent = idempotence
        self._compression = compression_by_name(compression)
        self._linger = linger_ms / 1000.0
        self._batch_bytes = batch_bytes
        self._max_record_bytes = MAX_BATCH_BYTES - HEADER_SIZE - RECORD_OVERHEAD
        self._retries = retries
        self._backoff = retry_backoff_ms / 1000.0
        self._backoff_max = retry_backoff_max_ms / 1000.0
        self._delivery_timeout = delivery_timeout_ms / 1000.0
        self._request_timeout = request_timeout_ms / 1000.0
        self._buffer_bytes = buffer_bytes
        self._limit = buffer_bytes  # -1 once closing: every send takes the slow path
        self._max_block = max_block_ms / 1000.0
        self._max_in_flight = max(1, max_in_flight)
        self._max_request_bytes = max_request_bytes
        self._partitioner = partitioner_by_name(partitioner)
        self._hash_crc32 = self._partitioner is partitioner_by_name("crc32")
        self._producer_name = producer_name
        self.client_id = client_id

        self._owns_transport = isinstance(bootstrap, str)
        self._transport = tr.connect(bootstrap)
        self._metadata = Metadata(self._transport, timeout=self._request_timeout)

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the sender waits here
        self._space = threading.Condition(self._lock)  # send() waits here for buffer room
        self._space_waiters = 0
        self._topics: dict[str, _Topic] = {}
        self._buffered = 0
        self._ready: dict[TP, deque[ProducerBatch]] = {}
        self._pending: set[ProducerBatch] = set()
        self._inflight: dict[int, _InFlight] = {}
        self._inflight_by_tp: dict[TP, int] = {}
        self._muted: set[TP] = set()
        self._next_seq: dict[TP, int] = {}
        self._refresh: set[str] = set()
        self._flush_all = 0
        self._corr = itertools.count(1)
        self._pipe: _StreamPipe | _UnaryPipe | None = None
        self._use_stream = True
        self._producer_id = -1
        self._producer_epoch = -1
        self._closing = False
        self._closed = False
        self._sender = threading.Thread(target=self._run, name="logstream-producer", daemon=True)
        self._sender.start()

    # -- public API ---------------------------------------------------------------------------

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        headers: Mapping[str, bytes] | Sequence[tuple[str, bytes]] | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> RecordFuture:
        """Queue one record; return a future of its :class:`RecordMetadata`.

        Same key -> same partition (``partitioner``); no key -> the topic's sticky partition.
        Errors of the record (unknown topic, too large, delivery timeout) arrive through the
        future; ``send`` itself raises only ``ClientClosedError`` and ``BufferExhaustedError``.
        """
        # The hot path: every line here runs once per record (see docs/performance.md).
        t = self._topics.get(topic)
        if t is None:
            t_or_err = self._topic(topic)
            if isinstance(t_or_err, BaseException):
                return failed_future(topic, -1 if partition is None else partition, t_or_err)
            t = t_or_err
        if partition is None:
            if key is None:
                partition = t.sticky
            elif self._hash_crc32:
                partition = _crc32(key) % t.num_partitions
            else:
                partition = self._partitioner(key, t.num_partitions)
        elif not 0 <= partition < t.num_partitions:
            return self._bad_partition(t, partition)
        size = RECORD_OVERHEAD if value is None else RECORD_OVERHEAD + len(value)
        if key is not None:
            size += len(key)
        if headers or timestamp_ms is not None:
            return self._send_rich(t, partition, value, key, headers, timestamp_ms, size)
        # acquire/release instead of ``with``: the context-manager protocol costs ~2x the
        # lock itself here (docs/performance.md, Client).
        lock = self._lock
        lock.acquire()
        try:
            if self._buffered + size > self._limit:
                self._wait_for_space(size)
            b = t.open[partition]
            if b is None or b.size + size > b.fast_limit:  # no batch, full, or rich
                b = self._batch_for(t, partition, b, size, None)
                if b is None:
                    return failed_future(topic, partition, _too_large(size))
                if b.rich:
                    return self._append(b, value, key, None, None, size)
            index = len(b.values)
            b.values.append(value)
            if key is not None:
                if b.keys is None:
                    b.keys = [None] * index
                b.keys.append(key)
            elif b.keys is not None:
                b.keys.append(None)
            b.size += size
            self._buffered += size
        finally:
            lock.release()
        return _new_future(RecordFuture, (b.result, index))  # type: ignore[no-any-return]

    def _send_rich(
        self,
        t: _Topic,
        partition: int,
        value: bytes | None,
        key: bytes | None,
        headers: Mapping[str, bytes] | Sequence[tuple[str, bytes]] | None,
        timestamp_ms: int | None,
        size: int,
    ) -> RecordFuture:
        """``send`` of a record with headers and/or an explicit timestamp."""
        hblob = None
        if headers:
            hblob = encode_headers(
                list(headers.items()) if isinstance(headers, Mapping) else headers
            )
            size += len(hblob)
        with self._lock:
            if self._buffered + size > self._limit:
                self._wait_for_space(size)
            b = self._batch_for(t, partition, t.open[partition], size, timestamp_ms)
            if b is None:
                return failed_future(t.name, partition, _too_large(size))
            return self._append(b, value, key, timestamp_ms, hblob, size)

    def _append(
        self,
        b: ProducerBatch,
        value: bytes | None,
        key: bytes | None,
        timestamp_ms: int | None,
        hblob: bytes | None,
        size: int,
    ) -> RecordFuture:
        """Lock held. Append one record to ``b``, filling the optional columns (the slow
        path: rich batches, explicit timestamps, headers)."""
        index = len(b.values)
        b.values.append(value)
        if key is not None or b.keys is not None:
            b.add_keys(index, [key])
        if timestamp_ms is not None:
            b.add_timestamp(index, timestamp_ms)
        elif b.timestamps is not None:
            b.timestamps.append(b.ts0)
        if hblob is not None:
            b.add_headers(index, hblob)
        elif b.headers is not None:
            b.headers.append(b"")
        b.size += size
        self._buffered += size
        return _new_future(RecordFuture, (b.result, index))  # type: ignore[no-any-return]

    def send_batch(
        self,
        topic: str,
        values: Sequence[bytes | None],
        keys: Sequence[bytes | None] | None = None,
        *,
        partition: int | None = None,
        timestamps: Sequence[int] | int | None = None,
    ) -> BulkFuture:
        """Queue many records at once (columnar); one :class:`BulkFuture` for all of them.

        Without keys the records are appended in chunks (sticky partition, or ``partition``),
        with no per-record Python work except computing their sizes.
        """
        if self._closing:
            raise errors.ClientClosedError("producer is closed")
        n = len(values)
        if keys is not None and len(keys) != n:
            raise errors.InvalidRequestError(f"{len(keys)} keys for {n} values")
        t_or_err = self._topics.get(topic) or self._topic(topic)
        if isinstance(t_or_err, BaseException):
            raise t_or_err
        t = t_or_err
        if partition is not None and not 0 <= partition < t.num_partitions:
            raise errors.UnknownTopicOrPartitionError(
                f"partition {partition} of {topic!r} does not exist ({t.num_partitions} partitions)"
            )
        explicit = timestamps is not None
        if timestamps is None:
            ts_list: list[int] = []
        else:
            ts_list = [timestamps] * n if isinstance(timestamps, int) else list(timestamps)
            if len(ts_list) != n:
                raise errors.InvalidRequestError(f"{len(ts_list)} timestamps for {n} values")
            if n and (max(ts_list) - min(ts_list) > _MAX_DELTA or t.open_ts_conflict(ts_list)):
                # Timestamps too far apart for one batch: take the per-record path.
                futs = [
                    self.send(
                        topic,
                        values[i],
                        None if keys is None else keys[i],
                        partition=partition,
                        timestamp_ms=ts_list[i],
                    )
                    for i in range(n)
                ]
                return BulkFuture([(f[0], f[1], 1, [i]) for i, f in enumerate(futs)], n)
        sizes = [RECORD_OVERHEAD + (0 if v is None else len(v)) for v in values]
        if keys is not None:
            sizes = [s + (0 if k is None else len(k)) for s, k in zip(sizes, keys, strict=True)]
        if n and max(sizes) > self._max_record_bytes:
            raise _too_large(max(sizes))
        segments: list[tuple[BatchResult, int, int, list[int] | None]] = []
        if keys is None or partition is not None:
            self._bulk_append(t, partition, values, keys, ts_list, sizes, None, segments, explicit)
        else:
            by_part: dict[int, list[int]] = {}
            nparts = t.num_partitions
            hash_fn = self._partitioner
            for i, k in enumerate(keys):
                p = t.sticky if k is None else hash_fn(k, nparts)
                by_part.setdefault(p, []).append(i)
            for p, idx in by_part.items():
                self._bulk_append(
                    t,
                    p,
                    [values[i] for i in idx],
                    [keys[i] for i in idx],
                    [ts_list[i] for i in idx] if explicit else ts_list,
                    [sizes[i] for i in idx],
                    idx,
                    segments,
                    explicit,
                )
        return BulkFuture(segments, n)

    def flush(self, timeout: float | None = None) -> None:
        """Send everything queued so far and wait until it is acknowledged (or failed).

        Raises ``RequestTimedOutError`` if ``timeout`` (seconds) passes first. Failures of
        individual records are reported through their futures, not here.
        """
        with self._lock:
            for t in self._topics.values():
                for p, b in enumerate(t.open):
                    if b is not None:
                        self._seal(t, p, b)
            waiting = [b.result for b in self._pending]
            self._wake.notify()
        deadline = None if timeout is None else time.monotonic() + timeout
        for result in waiting:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not result.wait(remaining):
                raise errors.RequestTimedOutError(f"flush did not finish within {timeout} s")

    def partitions_for(self, topic: str) -> int:
        """The number of partitions of ``topic`` (cached; fetched on first use)."""
        t = self._topics.get(topic) or self._topic(topic)
        if isinstance(t, BaseException):
            raise t
        return t.num_partitions

    def close(self, timeout: float | None = None) -> None:
        """Flush (up to ``timeout`` seconds), stop the I/O threads, close the connection.

        Records still unacknowledged when the timeout passes fail with ``ClientClosedError``.
        Idempotent.
        """
        if self._closed:
            return
        try:
            self.flush(timeout)
        except errors.LogstreamError:
            pass
        with self._lock:
            self._closing = True
            self._limit = -1
            leftovers = list(self._pending)
            self._pending.clear()
            for dq in self._ready.values():
                dq.clear()
            self._wake.notify_all()
            self._space.notify_all()
            pipe = self._pipe
            self._pipe = None
        for b in leftovers:
            b.result.complete(-1, -1, errors.ClientClosedError("producer closed before delivery"))
        self._sender.join(5.0)
        if pipe is not None:
            pipe.close()  # end the request stream: the broker finishes and hangs up
            pipe.join(2.0)
            pipe.cancel()
            pipe.join(2.0)
        self._closed = True
        if self._owns_transport:
            self._transport.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- send() helpers (slow paths) ------------------------------------------------------------

    def _topic(self, topic: str) -> _Topic | BaseException:
        if self._closing:
            raise errors.ClientClosedError("producer is closed")
        err: BaseException | None = None
        deadline = time.monotonic() + self._max_block
        attempt = 0
        while True:
            try:
                count = self._metadata.fetch(topic)
                break
            except errors.LogstreamError as exc:
                err = exc
                if not exc.retriable or attempt >= min(self._retries, 3):
                    return exc
                delay = self._backoff_delay(attempt)
                if time.monotonic() + delay > deadline:
                    return exc
                time.sleep(delay)
                attempt += 1
        with self._lock:
            t = self._topics.get(topic)
            if t is None:
                t = self._topics[topic] = _Topic(topic, count)
            return t
        return err  # pragma: no cover

    def _bad_partition(self, t: _Topic, partition: int) -> RecordFuture:
        try:
            count = self._metadata.fetch(t.name)
        except errors.LogstreamError as exc:
            return failed_future(t.name, partition, exc)
        if count != t.num_partitions:
            with self._lock:
                self._grow(t, count)
            if 0 <= partition < count:
                return self.send(t.name, partition=partition)  # pragma: no cover - rare path
        return failed_future(
            t.name,
            partition,
            errors.UnknownTopicOrPartitionError(
                f"partition {partition} of {t.name!r} does not exist ({count} partitions)"
            ),
        )

    def _grow(self, t: _Topic, count: int) -> None:
        if count > t.num_partitions:
            t.open.extend([None] * (count - t.num_partitions))
            t.num_partitions = count

    def _wait_for_space(self, size: int) -> None:
        """Called with the lock held when the buffer is full."""
        if self._closing:
            raise errors.ClientClosedError("producer is closed")
        deadline = time.monotonic() + self._max_block
        self._space_waiters += 1
        try:
            while self._buffered + size > self._buffer_bytes and self._buffered > 0:
                # Make sure everything buffered is on its way: nothing else frees space.
                if self._flush_all == 0:
                    self._flush_all = 1
                    self._wake.notify()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise errors.BufferExhaustedError(
                        f"producer buffer full ({self._buffered} of {self._buffer_bytes} bytes) "
                        f"for max_block_ms={self._max_block * 1000:.0f}"
                    )
                self._space.wait(remaining)
                if self._closing:
                    raise errors.ClientClosedError("producer is closed")
        finally:
            self._space_waiters -= 1
            if self._space_waiters == 0:
                self._flush_all = 0

    def _batch_for(
        self, t: _Topic, partition: int, b: ProducerBatch | None, size: int, ts: int | None
    ) -> ProducerBatch | None:
        """Lock held. The open batch that can take a record of ``size`` bytes with timestamp
        ``ts`` (None = the batch's own time), opening a new one if needed; None if the record
        is too large for any batch."""
        if size > self._max_record_bytes:
            return None
        if b is not None and b.values:
            if b.size + size > self._batch_bytes:
                return self._new_batch(t, partition, b)
            if ts is not None or b.timestamps is not None:
                # every timestamp must stay within an int32 delta of the batch's first one
                # (also when the batch so far holds only plain records, all at ts0)
                delta = (b.ts0 if ts is None else ts) - b.first_timestamp()
                if not -_MAX_DELTA <= delta <= _MAX_DELTA:
                    return self._new_batch(t, partition, b)
            return b
        if b is None or b.size + size > self._batch_bytes:
            return self._new_batch(t, partition, b)
        return b

    def _new_batch(self, t: _Topic, partition: int, full: ProducerBatch | None) -> ProducerBatch:
        """Lock held. Seal the full batch (if any) and open a new one."""
        if full is not None:
            self._seal(t, partition, full)
        now = time.monotonic()
        b = ProducerBatch(t.name, partition, now, time.time_ns() // 1_000_000, self._batch_bytes)
        b.deadline = now + self._delivery_timeout
        t.open[partition] = b
        self._pending.add(b)
        if not self._inflight or self._linger > 0:
            # At linger_ms=0 with a request unanswered, its answer wakes the sender, which
            # then seals this batch: waking it now (once per record at low rates) only
            # costs a thread switch on the latency path. With a linger, the sender times
            # it (a sealed batch may still pipeline once enough is ready).
            self._wake.notify()
        return b

    def _seal(self, t: _Topic, partition: int, b: ProducerBatch) -> None:
        """Lock held. Move an open batch to its partition's ready queue."""
        t.open[partition] = None
        if not b.values:
            self._pending.discard(b)
            return
        tp = (t.name, partition)
        dq = self._ready.get(tp)
        if dq is None:
            dq = self._ready[tp] = deque()
        dq.append(b)
        if partition == t.sticky and t.num_partitions > 1:
            t.sticky = (t.sticky + 1) % t.num_partitions
        self._wake.notify()

    def _bulk_append(
        self,
        t: _Topic,
        partition: int | None,
        values: Sequence[bytes | None],
        keys: Sequence[bytes | None] | None,
        timestamps: list[int],
        sizes: list[int],
        positions: list[int] | None,
        segments: list[tuple[BatchResult, int, int, list[int] | None]],
        explicit_ts: bool = False,
    ) -> None:
        n = len(values)
        i = 0
        limit = self._batch_bytes
        with self._lock:
            while i < n:
                p = t.sticky if partition is None else partition
                b = t.open[p]
                room = limit - (b.size if b is not None else 0)
                # how many of the next records fit in the open batch
                j = i
                acc = 0
                while j < n and acc + sizes[j] <= room:
                    acc += sizes[j]
                    j += 1
                if j == i:
                    if b is not None and b.values:
                        self._seal(t, p, b)
                    b = self._new_batch(t, p, None)
                    j = i + 1
                    acc = sizes[i]
                elif b is None:
                    b = self._new_batch(t, p, None)
                if self._buffered + acc > self._limit and self._buffered > 0:
                    # Waiting releases the lock: the sender may seal ``b`` meanwhile, so
                    # choose the batch again afterwards.
                    self._wait_for_space(acc)
                    continue
                start = len(b.values)
                b.values.extend(values[i:j])
                if keys is None:
                    if b.keys is not None:
                        b.keys.extend([None] * (j - i))
                else:
                    b.add_keys(start, list(keys[i:j]))
                if b.headers is not None:
                    b.headers.extend([b""] * (j - i))
                if explicit_ts:
                    if b.timestamps is None:
                        b.add_timestamp(start, timestamps[i])
                        stamps = b.timestamps
                        assert stamps is not None  # add_timestamp created the column
                        stamps.extend(timestamps[i + 1 : j])
                    else:
                        b.timestamps.extend(timestamps[i:j])
                elif b.timestamps is not None:
                    b.timestamps.extend([b.ts0] * (j - i))
                b.size += acc
                self._buffered += acc
                segments.append(
                    (b.result, start, j - i, None if positions is None else positions[i:j])
                )
                if b.size >= limit:
                    self._seal(t, p, b)
                i = j

    # -- sender thread --------------------------------------------------------------------------

    def _backoff_delay(self, attempt: int) -> float:
        return float(min(self._backoff * (2 ** min(attempt, 20)), self._backoff_max))

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:
            log.exception("producer sender thread crashed")
            with self._lock:
                doomed = list(self._pending)
                self._pending.clear()
            for b in doomed:
                b.result.complete(-1, -1, errors.UnknownServerError("producer sender crashed"))

    def _loop(self) -> None:
        while True:
            refresh: list[str] = []
            with self._lock:
                while True:
                    if self._closing:
                        return
                    now = time.monotonic()
                    parts, wake_at, expired = self._drain(now)
                    if parts or expired or self._refresh:
                        refresh = list(self._refresh)
                        self._refresh.clear()
                        break
                    timeout = None if wake_at is None else max(wake_at - now, 0.0005)
                    self._wake.wait(timeout)
            for b, err in expired:
                self._finish(b, -1, -1, err)
            for topic in refresh:
                self._refresh_topic(topic)
            if parts:
                self._send(parts)

    def _drain(
        self, now: float
    ) -> tuple[
        list[tuple[TP, list[ProducerBatch]]],
        float | None,
        list[tuple[ProducerBatch, BaseException]],
    ]:
        """Lock held. Seal lingered batches; pick what goes into the next request."""
        wake_at: float | None = None
        linger = self._linger
        flush_all = self._flush_all
        for t in self._topics.values():
            for p, b in enumerate(t.open):
                if b is None:
                    continue
                due = b.created + linger
                if flush_all or due <= now:
                    self._seal(t, p, b)
                elif wake_at is None or due < wake_at:
                    wake_at = due
        expired: list[tuple[ProducerBatch, BaseException]] = []
        max_in_flight = self._max_in_flight if self._use_stream or not self._idempotent else 1
        if len(self._inflight) >= max_in_flight:
            return [], wake_at, expired
        if self._inflight and not self._ready_at_least(PIPELINE_MIN_BYTES):
            return [], wake_at, expired  # an answer (which wakes us) is due; batch until then
        parts: list[tuple[TP, list[ProducerBatch]]] = []
        total = 0
        budget = self._max_request_bytes
        for tp, dq in self._ready.items():
            if not dq:
                continue
            if tp in self._muted and self._inflight_by_tp.get(tp, 0) > 0:
                continue
            head = dq[0]
            if head.retry_at > now:
                if wake_at is None or head.retry_at < wake_at:
                    wake_at = head.retry_at
                continue
            taken: list[ProducerBatch] = []
            while dq and (not taken or tp not in self._muted):
                b = dq[0]
                if b.deadline <= now:
                    dq.popleft()
                    expired.append(
                        (
                            b,
                            errors.RequestTimedOutError(
                                f"delivery_timeout_ms passed for a batch to {tp[0]}-{tp[1]}"
                            ),
                        )
                    )
                    continue
                if b.retry_at > now or (total and total + b.size > budget):
                    break
                dq.popleft()
                taken.append(b)
                total += b.size
                if self._idempotent and b.base_sequence < 0:
                    b.base_sequence = self._next_seq.get(tp, 0)
                    self._next_seq[tp] = (b.base_sequence + len(b.values)) & 0x7FFFFFFF
            if taken:
                parts.append((tp, taken))
                self._inflight_by_tp[tp] = self._inflight_by_tp.get(tp, 0) + len(taken)
            if total >= budget:
                break
        if parts and len(self._ready) > 1:
            # rotate so that a full request does not always favour the same partitions
            first = next(iter(self._ready))
            self._ready[first] = self._ready.pop(first)
        return parts, wake_at, expired

    def _ready_at_least(self, size: int) -> bool:
        """Lock held. Do the sealed batches waiting to be sent add up to ``size`` bytes?"""
        total = 0
        for dq in self._ready.values():
            for b in dq:
                total += b.size
                if total >= size:
                    return True
        return False

    def _encode(self, b: ProducerBatch) -> bytes:
        if b.encoded is None:
            b.encoded = encode_batch(
                b.values,
                keys=b.keys,
                timestamps=b.ts0 if b.timestamps is None else b.timestamps,
                headers=b.headers,
                compression_type=self._compression,
                producer_id=self._producer_id if self._idempotent else -1,
                producer_epoch=self._producer_epoch if self._idempotent else -1,
                base_sequence=b.base_sequence if self._idempotent else -1,
            )
            b.release_columns()
        return b.encoded

    def _send(self, parts: list[tuple[TP, list[ProducerBatch]]]) -> None:
        corr = next(self._corr)
        try:
            if self._idempotent and self._producer_id < 0:
                self._init_producer_id()
            pipe = self._ensure_pipe()
            request: log_pb2.ProduceRequest | bytes
            if pipe.raw:
                request = produce_request(
                    self._acks,
                    int(self._request_timeout * 1000),
                    corr,
                    [(tp[0], tp[1], [self._encode(b) for b in batches]) for tp, batches in parts],
                )
            else:
                request = log_pb2.ProduceRequest(
                    acks=self._acks,
                    timeout_ms=int(self._request_timeout * 1000),
                    correlation_id=corr,
                    partitions=[
                        log_pb2.PartitionProduceData(
                            topic=tp[0], partition=tp[1], batches=[self._encode(b) for b in batches]
                        )
                        for tp, batches in parts
                    ],
                )
        except errors.LogstreamError as exc:
            self._fail_parts(parts, exc)
            return
        # The request is registered under the lock and sent after it (this thread is the
        # only sender, so requests still leave in order): a unary pipe runs the callback of
        # an answer that is already there inside pipe.send, and that callback takes the lock.
        if self._acks == common_pb2.ACKS_NONE:
            # Nothing to wait for: complete now; the (ignored) answer only paces the sender.
            with self._lock:
                for tp, batches in parts:
                    self._inflight_by_tp[tp] -= len(batches)
                alive = not pipe.broken
                if alive:
                    self._inflight[corr] = _InFlight(pipe, [])
            if alive:
                pipe.send(request)
            for _, batches in parts:
                for b in batches:
                    self._finish(b, -1, -1, None)
            return
        with self._lock:
            # A stream that died between _ensure_pipe and now has had its requests requeued
            # by its reader already, so this one goes back by itself.
            alive = not pipe.broken
            if alive:
                self._inflight[corr] = _InFlight(pipe, parts)
        if alive:
            pipe.send(request)
        else:
            self._fail_parts(parts, errors.BrokerNotAvailableError("produce stream broke"))

    def _ensure_pipe(self) -> _StreamPipe | _UnaryPipe:
        pipe = self._pipe
        if pipe is not None and not pipe.broken:
            return pipe
        if self._use_stream:
            try:
                pipe = _StreamPipe(self)
            except grpc.RpcError as exc:
                raise tr.translate(exc, self._transport.address) from exc
        else:
            pipe = _UnaryPipe(self)
        self._pipe = pipe
        return pipe

    def _init_producer_id(self) -> None:
        resp = tr.call(
            self._transport.log.InitProducerId,
            log_pb2.InitProducerIdRequest(producer_name=self._producer_name),
            timeout=self._request_timeout,
            address=self._transport.address,
        )
        if resp.error_code:
            raise error_for_code(resp.error_code, resp.error_message)
        self._producer_id = resp.producer_id
        self._producer_epoch = resp.producer_epoch

    def _refresh_topic(self, topic: str) -> None:
        try:
            count = self._metadata.fetch(topic)
        except errors.LogstreamError:
            return
        with self._lock:
            t = self._topics.get(topic)
            if t is not None:
                self._grow(t, count)

    # -- answers (reader thread / grpc callback threads) -----------------------------------------

    def _on_response(self, corr: int, resp: log_pb2.ProduceResponse) -> None:
        done: list[tuple[ProducerBatch, int, int, BaseException | None]] = []
        with self._lock:
            entry = self._inflight.pop(corr, None)
            if entry is None:
                return
            by_tp = {(p.topic, p.partition): p for p in resp.partitions}
            now = time.monotonic()
            for tp, batches in entry.parts:
                self._inflight_by_tp[tp] -= len(batches)
                pr = by_tp.get(tp)
                if pr is None:
                    err: errors.LogstreamError = errors.UnknownServerError(
                        f"no answer for {tp[0]}-{tp[1]} in produce response"
                    )
                    for b in batches:
                        self._retry_or_fail(tp, b, err, now, done)
                    continue
                if pr.error_code:
                    err = error_for_code(pr.error_code, pr.error_message)
                    for b in batches:
                        self._retry_or_fail(tp, b, err, now, done)
                    continue
                ok = True
                for i, b in enumerate(batches):
                    r = pr.results[i] if i < len(pr.results) else None
                    if r is None:
                        ok = False
                        self._retry_or_fail(
                            tp, b, errors.UnknownServerError("missing batch result"), now, done
                        )
                    elif (
                        r.error_code == 0
                        or r.duplicate
                        or (r.error_code == errors.DuplicateSequenceError.code)
                    ):
                        done.append((b, r.base_offset, r.log_append_time_ms, None))
                    else:
                        ok = False
                        self._retry_or_fail(
                            tp, b, error_for_code(r.error_code, r.error_message), now, done
                        )
                if ok and tp in self._muted and self._inflight_by_tp.get(tp, 0) == 0:
                    self._muted.discard(tp)
            self._wake.notify()
        for b, base, ts, failure in done:
            self._finish(b, base, ts, failure)

    def _on_request_failed(self, corr: int, err: errors.LogstreamError) -> None:
        done: list[tuple[ProducerBatch, int, int, BaseException | None]] = []
        with self._lock:
            entry = self._inflight.pop(corr, None)
            if entry is None:
                return
            self._requeue_entry(entry, err, done)
            self._wake.notify()
        for b, base, ts, e in done:
            self._finish(b, base, ts, e)

    def _on_pipe_broken(self, pipe: Any, err: errors.LogstreamError) -> None:
        done: list[tuple[ProducerBatch, int, int, BaseException | None]] = []
        with self._lock:
            if self._pipe is pipe:
                self._pipe = None
            if self._closing:
                return
            if tr.is_unimplemented(err):
                self._use_stream = False
                err = errors.BrokerNotAvailableError("ProduceStream unimplemented; using Produce")
            # Fail (retriably) every request of this pipe, oldest first so that the
            # requeue keeps sequence order.
            for corr in sorted(c for c, e in self._inflight.items() if e.pipe is pipe):
                self._requeue_entry(self._inflight.pop(corr), err, done)
            self._wake.notify()
        for b, base, ts, e in done:
            self._finish(b, base, ts, e)

    def _requeue_entry(
        self,
        entry: _InFlight,
        err: errors.LogstreamError,
        done: list[tuple[ProducerBatch, int, int, BaseException | None]],
    ) -> None:
        now = time.monotonic()
        for tp, batches in entry.parts:
            self._inflight_by_tp[tp] -= len(batches)
            for b in batches:
                self._retry_or_fail(tp, b, err, now, done)

    def _retry_or_fail(
        self,
        tp: TP,
        b: ProducerBatch,
        err: BaseException,
        now: float,
        done: list[tuple[ProducerBatch, int, int, BaseException | None]],
    ) -> None:
        """Lock held. Put ``b`` back (in sequence order, after a backoff) or fail it."""
        retriable = getattr(err, "retriable", False) or (
            isinstance(err, errors.OutOfOrderSequenceError) and tp in self._muted
        )
        if isinstance(err, errors.UnknownTopicOrPartitionError):
            self._refresh.add(tp[0])
        if not retriable or b.attempts >= self._retries or now >= b.deadline or self._closing:
            done.append((b, -1, -1, err))
            return
        b.attempts += 1
        b.retry_at = now + self._backoff_delay(b.attempts - 1)
        self._muted.add(tp)
        dq = self._ready.get(tp)
        if dq is None:
            dq = self._ready[tp] = deque()
        # Insert keeping retried batches in sequence (then creation) order at the head.
        items = [x for x in dq if x.attempts > 0] + [b]
        rest = [x for x in dq if x.attempts == 0]
        items.sort(key=lambda x: (x.base_sequence, x.created))
        dq.clear()
        dq.extend(items)
        dq.extend(rest)

    def _fail_parts(self, parts: list[tuple[TP, list[ProducerBatch]]], err: BaseException) -> None:
        done: list[tuple[ProducerBatch, int, int, BaseException | None]] = []
        with self._lock:
            now = time.monotonic()
            for tp, batches in parts:
                self._inflight_by_tp[tp] -= len(batches)
                for b in batches:
                    self._retry_or_fail(tp, b, err, now, done)
            self._wake.notify()
        for b, base, ts, e in done:
            self._finish(b, base, ts, e)

    def _finish(self, b: ProducerBatch, base: int, ts: int, err: BaseException | None) -> None:
        with self._lock:
            self._pending.discard(b)
            self._buffered -= b.size
            b.size = 0
            b.release_columns()
            b.encoded = None
            if self._space_waiters:
                self._space.notify_all()
        b.result.complete(base, ts, err)


def compression_by_name(name: str | None) -> int:
    try:
        return compression.by_name(name)
    except errors.InvalidBatchError as exc:
        raise errors.InvalidConfigError(str(exc)) from None


def _too_large(size: int) -> errors.MessageTooLargeError:
    return errors.MessageTooLargeError(
        f"record of {size} bytes is larger than the largest batch the broker accepts "
        f"({MAX_BATCH_BYTES - HEADER_SIZE} bytes)"
    )
