"""The Sender: one thread that drains sealed batches into produce requests and a reader
thread per ProduceStream that matches the answers.

    Sender thread: seal lingered batches, pick what goes into the next request (several
        partitions, <= max_request_bytes), assign idempotence sequence numbers, encode each
        batch once, write the request on the ProduceStream (up to max_in_flight unanswered)
    stream reader: match answers by correlation id, complete each BatchResult (offsets), or
        put the batch back for a retry (same bytes, same sequence) after a backoff

Ordering and exactly-once per partition: one ProduceStream is answered in order by the
broker, and a partition whose batch needs a retry is *muted* (nothing new is sent for it)
until its in-flight batches are answered; then the failed batches go out again in sequence
order. With idempotence the broker drops a batch whose sequence it already wrote and
answers ``duplicate`` with the original offsets, so a retry after a lost answer never
writes twice.

A batch that fails for good after it got a sequence (a full disk, delivery_timeout_ms)
leaves a gap in its partition's sequence that no later batch could pass (the broker would
answer OutOfOrderSequenceError for ever). As Kafka does, the sender then waits until
nothing is in flight, bumps the epoch (InitProducerId again) and restarts every
partition's sequence at 0; batches answered out of order meanwhile are retried under it.

Quotas: an answer with ``throttle_time_ms`` > 0 means the principal is over a broker
quota; nothing more is sent to that broker until that time has passed (as Kafka's client
does), and while answers carry a throttle only one request is in flight, so the broker
does not have to hold requests back.

Failure story: if the stream breaks (broker killed), every in-flight batch is retriable
(``BrokerNotAvailableError``) and goes back to the head of its partition queue; the sender
reconnects with backoff until ``delivery_timeout_ms`` passes, then fails the futures.

Concurrency: the Sender's own state (in-flight requests, mutes, sequences) is guarded by
the accumulator's lock, like the batches; answers arrive on the reader thread.
"""

from __future__ import annotations

import itertools
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from logstream import errors
from logstream.client.metadata import Metadata
from logstream.client.producer.accumulator import ProducerBatch, RecordAccumulator
from logstream.client.transport_api import TransportLike
from logstream.client.wire import produce_request
from logstream.codec import encode_batch, read_header, stamp_producer
from logstream.protocol import common_pb2, log_pb2
from logstream.protocol.status import error_for_code
from logstream.types import TopicPartition

log = logging.getLogger("logstream.client.producer")

PIPELINE_MIN_BYTES = 64 * 1024
"""While a request is unanswered, the next one goes out only once it carries this much;
smaller data waits for an answer (or for more data). A produce request costs the broker and
the client ~0.1-0.3 ms of fixed gRPC work, as much as ~64 KB of payload: pipelining tiny
requests only queues them on the stream, where waiting for the answer batches them
(docs/decisions, latency). Large requests still pipeline up to ``max_in_flight``."""

RETRY_JITTER = 0.2
"""Each retry backoff is spread by +/-20 % (KIP-580), so producers do not retry in lockstep."""


def backoff_delay(attempt: int, base_s: float, max_s: float) -> float:
    """The wait before retry ``attempt`` (0-based): exponential, capped, with jitter."""
    delay = min(base_s * (2 ** min(attempt, 20)), max_s)
    return float(delay * random.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER))


Parts = list[tuple[TopicPartition, list[ProducerBatch]]]
Finished = list[tuple[ProducerBatch, int, int, BaseException | None]]


@dataclass(frozen=True)
class SenderSettings:
    acks: int
    idempotent: bool
    compression: int
    retries: int
    backoff_s: float
    backoff_max_s: float
    request_timeout_s: float
    max_in_flight: int
    max_request_bytes: int
    producer_name: str


class ProduceStreamPipe:
    """One ProduceStream call: a queue feeding the request iterator and a reader thread that
    hands each answer to ``on_response`` and the end of the stream to ``on_broken``."""

    def __init__(
        self,
        transport: TransportLike,
        on_response: Callable[[int, log_pb2.ProduceResponse], None],
        on_broken: Callable[[ProduceStreamPipe, errors.LogstreamError], None],
    ) -> None:
        self._on_response = on_response
        self._on_broken = on_broken
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.broken = False
        self._call = transport.produce_stream(self._requests())
        self._reader = threading.Thread(
            target=self._read, name="logstream-producer-reader", daemon=True
        )
        self._reader.start()

    def _requests(self) -> Iterator[bytes]:
        while True:
            req = self._queue.get()
            if req is None:
                return
            yield req

    def send(self, request: bytes) -> None:
        self._queue.put(request)

    def close(self) -> None:
        self._queue.put(None)

    def cancel(self) -> None:
        self._queue.put(None)
        self._call.cancel()

    def join(self, timeout: float | None) -> None:
        self._reader.join(timeout)

    def _read(self) -> None:
        err: errors.LogstreamError
        try:
            for resp in self._call:
                self._on_response(resp.correlation_id, resp)
            err = errors.BrokerNotAvailableError("produce stream closed by the broker")
        except errors.LogstreamError as exc:
            err = exc
        except Exception as exc:  # never let the reader die silently
            log.exception("produce stream reader failed")
            err = errors.UnknownServerError(f"produce stream reader failed: {exc!r}")
        self.broken = True
        self._on_broken(self, err)


class _InFlight:
    __slots__ = ("parts", "pipe")

    def __init__(self, pipe: ProduceStreamPipe, parts: Parts) -> None:
        self.pipe = pipe
        self.parts = parts


def encoded(b: ProducerBatch, s: SenderSettings, producer_id: int, producer_epoch: int) -> bytes:
    """``b``'s bytes for a request: encoded on its first send (its columns are released
    then), and restamped when it is sent again under another producer id, epoch or
    sequence (a retry after an epoch bump). Caller: the sender thread, which owns ``b``
    while it is in a request."""
    if b.encoded is not None and s.idempotent:
        header = read_header(b.encoded)
        identity = (producer_id, producer_epoch, b.base_sequence)
        if (header.producer_id, header.producer_epoch, header.base_sequence) != identity:
            restamped = bytearray(b.encoded)
            stamp_producer(restamped, *identity)
            b.encoded = bytes(restamped)
    if b.encoded is None:
        b.encoded = encode_batch(
            b.values,
            keys=b.keys,
            timestamps=b.ts0 if b.timestamps is None else b.timestamps,
            headers=b.headers,
            compression_type=s.compression,
            producer_id=producer_id if s.idempotent else -1,
            producer_epoch=producer_epoch if s.idempotent else -1,
            base_sequence=b.base_sequence if s.idempotent else -1,
        )
        b.release_columns()
    return b.encoded


def encode_parts(
    parts: Parts, s: SenderSettings, pid: int, epoch: int
) -> tuple[
    Parts, list[tuple[str, int, list[bytes]]], list[tuple[TopicPartition, ProducerBatch, TypeError]]
]:
    """The batches of ``parts`` that encode, their bytes, and those that do not with the
    error to fail them with: a key, value or header value that is not bytes
    (``send("t", "text")``) fails its own batch with a TypeError, and the sender thread
    lives on (it used to die there, and every later send of the producer timed out)."""
    good: Parts = []
    payload = []
    bad: list[tuple[TopicPartition, ProducerBatch, TypeError]] = []
    for tp, bs in parts:
        ok_batches, blobs = [], []
        for b in bs:
            try:
                blobs.append(encoded(b, s, pid, epoch))
            except (TypeError, ValueError, AttributeError) as exc:
                why = TypeError(
                    f"cannot encode a record for {tp.topic}-{tp.partition}: keys, values "
                    f"and header values must be bytes or None ({exc})"
                )
                bad.append((tp, b, why))
                continue
            ok_batches.append(b)
        if ok_batches:
            good.append((tp, ok_batches))
            payload.append((tp.topic, tp.partition, blobs))
    return good, payload, bad


class SenderStats:
    """Counters of one producer's sender thread (``Producer.stats``). Written by that
    thread only; reading them from another thread gives a recent value."""

    __slots__ = ("wakeups",)

    def __init__(self) -> None:
        self.wakeups = 0  # times the thread woke from waiting and looked for work again


class Sender:
    """The producer's I/O: drains the accumulator onto a ProduceStream, retries, fails.

    Caller: ``Producer`` starts it (``start``) and stops it (``stop``); everything else runs
    on its own thread or the stream reader's.
    """

    def __init__(
        self,
        accumulator: RecordAccumulator,
        transport: TransportLike,
        metadata: Metadata,
        settings: SenderSettings,
    ) -> None:
        self._acc = accumulator
        self._transport = transport
        self._metadata = metadata
        self._s = settings
        self._inflight: dict[int, _InFlight] = {}
        self._inflight_by_tp: dict[TopicPartition, int] = {}
        self._muted: set[TopicPartition] = set()
        self._next_seq: dict[TopicPartition, int] = {}
        self._refresh: set[str] = set()
        self._corr = itertools.count(1)
        self._pipe: ProduceStreamPipe | None = None
        self._throttled_until = 0.0  # monotonic time before which nothing is sent (quota)
        self._single_flight = False  # the last answer carried a throttle (quotas)
        self._producer_id = -1
        self._producer_epoch = -1
        # A batch with a sequence failed for good: the partition's sequence has a gap the
        # broker will never fill, so every later batch would be out of order. Set here,
        # cleared by the epoch bump in _drain (see _restart_sequences).
        self._sequence_gap = False
        accumulator.answer_due = self._answer_due
        self.stats = SenderStats()
        self._thread = threading.Thread(target=self._run, name="logstream-producer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """After ``accumulator.close()``: join the thread, end and join the stream."""
        self._thread.join(5.0)
        with self._acc.lock:
            pipe = self._pipe
            self._pipe = None
        if pipe is not None:
            pipe.close()  # end the request stream: the broker finishes and hangs up
            pipe.join(2.0)
            pipe.cancel()
            pipe.join(2.0)

    def _answer_due(self) -> bool:
        return bool(self._inflight)

    # -- the thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:
            log.exception("producer sender thread crashed")
            for b in self._acc.abandon():
                b.result.complete(-1, -1, errors.UnknownServerError("producer sender crashed"))

    def _loop(self) -> None:
        acc = self._acc
        while True:
            refresh: list[str] = []
            with acc.lock:
                while True:
                    if acc.closing:
                        return
                    now = time.monotonic()
                    wake_at = acc.seal_due(now)
                    parts, retry_at, expired = self._drain(now)
                    if retry_at is not None and (wake_at is None or retry_at < wake_at):
                        wake_at = retry_at
                    if parts or expired or self._refresh:
                        refresh = list(self._refresh)
                        self._refresh.clear()
                        break
                    timeout = None if wake_at is None else max(wake_at - now, 0.0005)
                    acc.wake.wait(timeout)
                    self.stats.wakeups += 1
            for b, err in expired:
                self._finish(b, -1, -1, err)
            for topic in refresh:
                self._refresh_topic(topic)
            if parts:
                self._send(parts)

    def _drain(
        self, now: float
    ) -> tuple[Parts, float | None, list[tuple[ProducerBatch, BaseException]]]:
        """Lock held. Pick the sealed batches that go into the next request; also the
        earliest retry time of a batch held back, and the batches whose delivery expired."""
        acc = self._acc
        wake_at: float | None = None
        expired: list[tuple[ProducerBatch, BaseException]] = []
        if self._sequence_gap:
            if self._inflight:
                return [], wake_at, expired  # the bump waits for every answer
            self._restart_sequences()
        if now < self._throttled_until:  # the broker said we are over a quota: wait
            return [], self._throttled_until, expired
        if self._single_flight and self._inflight:
            # one request at a time while over a quota: a request pipelined behind a
            # throttled one would only wait on the broker (its hold) instead of here
            return [], wake_at, expired
        if len(self._inflight) >= self._s.max_in_flight:
            return [], wake_at, expired
        if self._inflight and not acc.ready_at_least(PIPELINE_MIN_BYTES):
            return [], wake_at, expired  # an answer (which wakes us) is due; batch until then
        parts: Parts = []
        total = 0
        budget = self._s.max_request_bytes
        for tp, dq in acc.ready.items():
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
                    if b.base_sequence >= 0:  # sent before: its sequence is lost with it
                        self._sequence_gap = True
                    expired.append(
                        (b, errors.RequestTimedOutError(f"delivery_timeout_ms passed for {tp}"))
                    )
                    continue
                if b.retry_at > now or (total and total + b.size > budget):
                    break
                dq.popleft()
                taken.append(b)
                total += b.size
                if self._s.idempotent and b.base_sequence < 0:
                    b.base_sequence = self._next_seq.get(tp, 0)
                    self._next_seq[tp] = (b.base_sequence + len(b.values)) & 0x7FFFFFFF
            if taken:
                parts.append((tp, taken))
                self._inflight_by_tp[tp] = self._inflight_by_tp.get(tp, 0) + len(taken)
            if total >= budget:
                break
        if parts and len(acc.ready) > 1:
            # rotate so that a full request does not always favour the same partitions
            first = next(iter(acc.ready))
            acc.ready[first] = acc.ready.pop(first)
        return parts, wake_at, expired

    def _restart_sequences(self) -> None:
        """Lock held, nothing in flight. After a batch failed for good, start again as
        Kafka does (KIP-360): a new epoch (InitProducerId again, before the next send) and
        every partition's sequence from 0. Queued batches lose their old sequence and get a
        new one when drained (their bytes are restamped by :func:`encoded`)."""
        self._sequence_gap = False
        self._producer_id = self._producer_epoch = -1
        self._next_seq.clear()
        self._muted.clear()
        for dq in self._acc.ready.values():
            for b in dq:
                b.base_sequence = -1
        log.info("producer: a batch failed for good; bumping the epoch, sequences restart")

    def _send(self, parts: Parts) -> None:
        s = self._s
        corr = next(self._corr)
        try:
            if s.idempotent and self._producer_id < 0:
                self._init_producer_id()
            pipe = self._ensure_pipe()
            pid, epoch = self._producer_id, self._producer_epoch
            parts, payload, unencodable = encode_parts(parts, s, pid, epoch)
            for tp, b, bad in unencodable:
                self._fail_parts([(tp, [b])], bad)
            if not parts:
                return
            request = produce_request(s.acks, int(s.request_timeout_s * 1000), corr, payload)
        except errors.LogstreamError as exc:
            self._fail_parts(parts, exc)
            return
        acc = self._acc
        if s.acks == common_pb2.ACKS_NONE:
            # Nothing to wait for: complete now; the (ignored) answer only paces the sender.
            with acc.lock:
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
        with acc.lock:
            # A stream that died between _ensure_pipe and now has had its requests requeued
            # by its reader already, so this one goes back by itself.
            alive = not pipe.broken
            if alive:
                self._inflight[corr] = _InFlight(pipe, parts)
        if alive:
            pipe.send(request)
        else:
            self._fail_parts(parts, errors.BrokerNotAvailableError("produce stream broke"))

    def _ensure_pipe(self) -> ProduceStreamPipe:
        pipe = self._pipe
        if pipe is not None and not pipe.broken:
            return pipe
        pipe = ProduceStreamPipe(self._transport, self._on_response, self._on_pipe_broken)
        self._pipe = pipe
        return pipe

    def _init_producer_id(self) -> None:
        resp = self._transport.init_producer_id(
            log_pb2.InitProducerIdRequest(producer_name=self._s.producer_name),
            timeout=self._s.request_timeout_s,
        )
        if resp.error_code:
            raise error_for_code(resp.error_code, resp.error_message)
        self._producer_id = resp.producer_id
        self._producer_epoch = resp.producer_epoch

    def _refresh_topic(self, topic: str) -> None:
        try:
            count = self._metadata.fetch(topic)
        except errors.UnknownTopicOrPartitionError as exc:
            self._fail_topic(topic, exc)
            return
        except errors.LogstreamError:
            return
        with self._acc.lock:
            t = self._acc.topics.get(topic)
            if t is not None:
                t.grow(count)

    def _fail_topic(self, topic: str, err: errors.LogstreamError) -> None:
        """The topic is gone: fail every record queued for it now rather than retrying each
        batch until its delivery timeout. A topic created again later starts its sequences
        afresh."""
        with self._acc.lock:
            doomed = self._acc.take_topic(topic)
            for tp in [tp for tp in self._next_seq if tp.topic == topic]:
                if not self._inflight_by_tp.get(tp):
                    del self._next_seq[tp]
                    self._muted.discard(tp)
        for b in doomed:
            self._finish(b, -1, -1, err)

    # -- answers (stream reader thread) ---------------------------------------------------------

    def _on_response(self, corr: int, resp: log_pb2.ProduceResponse) -> None:
        done: Finished = []
        with self._acc.lock:
            entry = self._inflight.pop(corr, None)
            if entry is None:
                return
            by_tp = {(p.topic, p.partition): p for p in resp.partitions}
            now = time.monotonic()
            self._single_flight = resp.throttle_time_ms > 0
            if self._single_flight:
                until = now + resp.throttle_time_ms / 1000.0
                self._throttled_until = max(self._throttled_until, until)
            for tp, batches in entry.parts:
                self._inflight_by_tp[tp] -= len(batches)
                pr = by_tp.get(tp)
                if pr is None:
                    err: errors.LogstreamError = errors.UnknownServerError(
                        f"no answer for {tp} in produce response"
                    )
                    for b in batches:
                        self._retry_or_fail(tp, b, err, now, done)
                    continue
                if pr.error_code:
                    err = error_for_code(pr.error_code, pr.error_message)
                    for b in batches:
                        self._retry_or_fail(tp, b, err, now, done)
                    continue
                all_ok = self._take_results(tp, batches, pr, now, done)
                if all_ok and tp in self._muted and self._inflight_by_tp.get(tp, 0) == 0:
                    self._muted.discard(tp)
            self._acc.wake.notify()
        for b, base, ts, failure in done:
            self._finish(b, base, ts, failure)

    def _take_results(
        self,
        tp: TopicPartition,
        batches: list[ProducerBatch],
        pr: log_pb2.PartitionProduceResponse,
        now: float,
        done: Finished,
    ) -> bool:
        """Lock held. Complete or retry each batch of one partition; True if all succeeded."""
        ok = True
        for i, b in enumerate(batches):
            r = pr.results[i] if i < len(pr.results) else None
            if r is None:
                ok = False
                err: BaseException = errors.UnknownServerError("missing batch result")
                self._retry_or_fail(tp, b, err, now, done)
            elif (
                r.error_code == 0
                or r.duplicate
                or r.error_code == errors.DuplicateSequenceError.code
            ):
                done.append((b, r.base_offset, r.log_append_time_ms, None))
            else:
                ok = False
                self._retry_or_fail(tp, b, error_for_code(r.error_code, r.error_message), now, done)
        return ok

    def _on_pipe_broken(self, pipe: ProduceStreamPipe, err: errors.LogstreamError) -> None:
        done: Finished = []
        with self._acc.lock:
            if self._pipe is pipe:
                self._pipe = None
            if self._acc.closing:
                return
            # Fail (retriably) every request of this pipe, oldest first so that the
            # requeue keeps sequence order.
            now = time.monotonic()
            for corr in sorted(c for c, e in self._inflight.items() if e.pipe is pipe):
                for tp, batches in self._inflight.pop(corr).parts:
                    self._inflight_by_tp[tp] -= len(batches)
                    for b in batches:
                        self._retry_or_fail(tp, b, err, now, done)
            self._acc.wake.notify()
        for b, base, ts, e in done:
            self._finish(b, base, ts, e)

    def _retry_or_fail(
        self, tp: TopicPartition, b: ProducerBatch, err: BaseException, now: float, done: Finished
    ) -> None:
        """Lock held. Put ``b`` back (in sequence order, after a backoff) or fail it."""
        out_of_order = isinstance(err, errors.OutOfOrderSequenceError)
        retriable = getattr(err, "retriable", False) or (
            out_of_order and (tp in self._muted or self._sequence_gap)
        )
        if isinstance(err, errors.UnknownTopicOrPartitionError):
            self._refresh.add(tp.topic)
        if not retriable or b.attempts >= self._s.retries or now >= b.deadline or self._acc.closing:
            if self._s.idempotent and b.base_sequence >= 0:
                self._sequence_gap = True
            done.append((b, -1, -1, err))
            return
        b.attempts += 1
        b.retry_at = now + backoff_delay(b.attempts - 1, self._s.backoff_s, self._s.backoff_max_s)
        self._muted.add(tp)
        self._acc.requeue(tp, b)

    def _fail_parts(self, parts: Parts, err: BaseException) -> None:
        done: Finished = []
        with self._acc.lock:
            now = time.monotonic()
            for tp, batches in parts:
                self._inflight_by_tp[tp] -= len(batches)
                for b in batches:
                    self._retry_or_fail(tp, b, err, now, done)
            self._acc.wake.notify()
        for b, base, ts, e in done:
            self._finish(b, base, ts, e)

    def _finish(self, b: ProducerBatch, base: int, ts: int, err: BaseException | None) -> None:
        self._acc.release(b)
        b.result.complete(base, ts, err)
