"""The Requester's way out: one-record requests on a ProduceStream answered only on error.

A request is one record, and its success is its reply (which comes back on the inbox), so
the produce answer only ever carries news when something failed. Each request therefore
goes out as a ``ProduceRequest`` with ``errors_only`` set: the broker appends it and says
nothing unless a partition or batch of it failed (then the whole answer comes, as usual).
Per request that is one gRPC message instead of two, and no thread on this side wakes for
an answer: the stream's reader thread sleeps until an error (or the stream's end) arrives.

Requests are put on a queue by the caller's thread; gRPC's request-iterator thread takes
them and encodes each message (``encode_small_batch``: no numpy). Requests queued
meanwhile that follow on (consecutive numbers, the same topic and partition) share one
batch, so a burst costs one message and one append. Back-pressure: while :data:`WINDOW`
sent requests are unfinished (no reply, error or timeout yet) the broker is falling
behind, and the next message first waits up to :data:`HOLD_S` for room, gathering what
queues meanwhile. The Requester reports each finished request (:meth:`finished`).

Byte format of what a request needs to find its future again: the request ids are a
per-sender random prefix followed by a counter (``<16 hex><16 hex>``, 32 ASCII bytes, as
long as a uuid4 hex), and a message's ``correlation_id`` is ``first << 12 | count`` (its
first request's number and how many follow on in its one batch): an error answer fails
exactly those requests, and nothing is kept per request on this side.

Not kept from the Producer: batching across a linger (a request is sent at once), retries
(a request that failed is failed; the caller may send it again, requests being at least
once anyway) and idempotence (no retries: nothing to deduplicate). A stream that breaks is
opened again on the next send. Requests in flight on a stream that the connection's loss
ended time out (their replies to the old inbox are lost too); on a stream the broker ended
with a refusal (an ACL, a bad request) they fail with it at once.

Threading: ``send`` and ``finished`` from any thread; ``on_error(request_id, exc)`` and
``on_refused`` run on the stream's reader thread.
"""

from __future__ import annotations

import itertools
import queue
import secrets
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

from logstream import errors
from logstream.client import transport as tr
from logstream.client.metadata import Metadata
from logstream.client.wire import produce_request
from logstream.codec import encode_headers, encode_small_batch
from logstream.protocol import common_pb2, log_pb2
from logstream.protocol.status import error_for_code

ERRORS_ONLY = b"\x28\x01"  # ProduceRequest.errors_only = true: field 5, varint
WINDOW = 8
"""Requests sent and not yet finished (replied, failed or timed out) before the next
message waits for room: past it the broker is falling behind, so what queues meanwhile
goes out together (the Producer batches behind an unanswered request the same way)."""
HOLD_S = 0.005
"""Longest a message waits for room in the window (a request nobody answers, e.g. to a
service that is down, holds a place until its timeout: it must not stall the others)."""
MAX_RECORDS = 64
MAX_BYTES = 256 * 1024
"""Most requests (and their bytes) that share one message, i.e. one batch."""
CORRELATION_BITS = 12  # correlation_id = first request number << 12 | request count
OnError = Callable[[bytes, BaseException], None]
OnRefused = Callable[[int, int, BaseException], None]
"""(first, last request number sent on the stream, the broker's error): the stream was
ended by a refusal (an ACL, a bad request), not by a lost connection."""


class _Request(NamedTuple):
    number: int
    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: bytes
    size: int


class _Stream:
    """One ProduceStream: its queue and the request numbers put on it."""

    __slots__ = ("first", "last", "queue")

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self.first = self.last = 0


class RequestSender:
    def __init__(
        self,
        transport: tr.TransportLike,
        on_error: OnError,
        on_refused: OnRefused,
        *,
        request_timeout_s: float = 30.0,
    ) -> None:
        self._transport = transport
        self._on_error = on_error
        self._on_refused = on_refused
        self._timeout_ms = int(request_timeout_s * 1000)
        self._metadata = Metadata(transport, timeout=request_timeout_s)
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count(1)
        self._next_partition = itertools.count()
        self._lock = threading.Lock()
        self._stream: _Stream | None = None
        self._reader: threading.Thread | None = None
        self._closed = False
        self._room = threading.Condition()
        self._outstanding = 0  # requests sent and not finished
        self._waiting = False  # a message waits for room: finished() must wake it
        self.held = 0
        """Messages that waited for room in the window (the broker was falling behind)."""

    def request_id(self, number: int) -> bytes:
        return f"{self._prefix}{number:016x}".encode()

    def number_of(self, request_id: bytes) -> int:
        """The number of one of this sender's request ids (-1 for any other id)."""
        prefix = self._prefix.encode()
        if len(request_id) != 32 or not request_id.startswith(prefix):
            return -1
        return int(request_id[16:], 16)

    def next_id(self) -> tuple[int, bytes]:
        """A fresh request id (its number and its header bytes)."""
        number = next(self._counter)
        return number, self.request_id(number)

    def partition_for(self, topic: str, key: bytes | None) -> int:
        """The partition a request goes to: by the key's crc32 (as the Producer's default
        partitioner), or in turn for requests without a key. Raises the topic's error."""
        count = self._metadata.partitions.get(topic)
        if count is None:
            missing = self._metadata.unknown(topic)
            if missing is not None:
                raise missing
            count = self._metadata.fetch(topic)
        if key is not None:
            return zlib.crc32(key) % count
        return next(self._next_partition) % count

    def send(
        self,
        number: int,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
    ) -> None:
        """Queue request ``number`` (one record) for the stream; returns at once."""
        blob = encode_headers(headers)
        size = len(blob) + (len(key) if key else 0) + (len(value) if value else 0)
        ts = time.time_ns() // 1_000_000
        request = _Request(number, topic, partition, key, value, ts, blob, size)
        with self._lock:
            if self._closed:
                raise errors.ClientClosedError("requester closed")
            stream = self._stream or self._open(number)
            stream.last = max(stream.last, number)
            stream.queue.put(request)

    def finished(self, count: int = 1) -> None:
        """``count`` sent requests ended (a reply, an error, a timeout): room in the window."""
        with self._room:
            self._outstanding -= count
            if self._waiting and self._outstanding < WINDOW:
                self._room.notify()

    def _open(self, first: int) -> _Stream:
        """Lock held: a new stream, its queue and its reader."""
        stream = self._stream = _Stream()
        stream.first = first
        call = self._transport.produce_stream(self._messages(stream.queue))
        self._reader = threading.Thread(
            target=self._read, args=(call, stream), name="logstream-requests", daemon=True
        )
        self._reader.start()
        return stream

    def _wait_for_room(self) -> None:
        with self._room:
            if self._outstanding < WINDOW:
                return
            self.held += 1
            self._waiting = True
            self._room.wait(HOLD_S)
            self._waiting = False

    def _messages(self, q: queue.SimpleQueue[_Request | None]) -> Iterator[bytes]:
        """gRPC's request iterator (its own thread): the requests queued meanwhile that
        follow on from the first (consecutive numbers, one topic and partition) go as one
        message; when the window is full it first waits for room, so more can join."""
        carry: _Request | None = None
        ended = False  # the end marker (None) was taken: send what we have, then stop
        while not ended:
            first = carry if carry is not None else q.get()
            carry = None
            if first is None:
                return
            self._wait_for_room()
            batch = [first]
            size = first.size
            while len(batch) < MAX_RECORDS:
                try:
                    more = q.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    ended = True
                    break
                if (
                    more.number != batch[-1].number + 1
                    or (more.topic, more.partition) != (first.topic, first.partition)
                    or size + more.size > MAX_BYTES
                ):
                    carry = more
                    break
                batch.append(more)
                size += more.size
            with self._room:
                self._outstanding += len(batch)
            yield self._message(batch)

    def _message(self, batch: list[_Request]) -> bytes:
        data = encode_small_batch(
            [r.key for r in batch],
            [r.value for r in batch],
            [r.timestamp for r in batch],
            [r.headers for r in batch],
        ).data
        first = batch[0]
        correlation_id = first.number << CORRELATION_BITS | len(batch)
        parts = [(first.topic, first.partition, [data])]
        return (
            produce_request(common_pb2.ACKS_LEADER, self._timeout_ms, correlation_id, parts)
            + ERRORS_ONLY
        )

    def _read(self, call: tr.StreamCall[log_pb2.ProduceResponse], stream: _Stream) -> None:
        refused: errors.LogstreamError | None = None
        try:
            for answer in call:
                self._failed(answer)
        except errors.LogstreamError as exc:
            # A lost connection: requests in flight time out (their inbox went with it).
            # A refusal: they fail with it now.
            if not exc.retriable and not isinstance(exc, errors.ClientClosedError):
                refused = exc
        with self._lock:
            if self._stream is stream:  # the next send opens a new stream
                self._stream = None
            first, last = stream.first, stream.last
        if refused is not None and last:
            self._on_refused(first, last, refused)

    def _failed(self, answer: log_pb2.ProduceResponse) -> None:
        """Fail the requests of a message the broker refused (its one batch)."""
        first = answer.correlation_id >> CORRELATION_BITS
        count = answer.correlation_id & ((1 << CORRELATION_BITS) - 1)
        for part in answer.partitions:
            code, message = part.error_code, part.error_message
            if not code and part.results:
                code, message = part.results[0].error_code, part.results[0].error_message
            if not code:
                continue
            if code == errors.UnknownTopicOrPartitionError.code:
                self._metadata.partitions.pop(part.topic, None)  # re-read the count next time
            for number in range(first, first + count):
                self._on_error(self.request_id(number), error_for_code(code, message))

    def close(self, timeout: float = 5.0) -> None:
        """End the stream after what is queued (requests in flight get their replies)."""
        with self._lock:
            self._closed = True
            stream, reader = self._stream, self._reader
            self._stream = None
        if stream is not None:
            stream.queue.put(None)
        if reader is not None:
            reader.join(timeout)
