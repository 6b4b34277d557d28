"""``Requester``: request/reply over a topic and a queue group (docs/queues.md, Request / reply).

A request is a record produced to the service's topic with two headers
(logstream/protocol/request_reply.py): ``logstream-reply-to`` names this requester's inbox,
``logstream-correlation-id`` a fresh id. Responders (``QueueMessage.reply``, or any producer)
send the answer to partition 0 of the inbox with the same correlation id.

Requests go out through a :class:`~logstream.client.request_sender.RequestSender`: one
ProduceStream that the broker answers only when a request failed (its reply is its
success; decision 0039), so a request is one message and wakes no thread for an answer.

The inbox is opened in the constructor: a Subscribe stream on an inbox that the broker keeps
in memory and pushes replies into (docs/decisions/0028-request-reply.md). The reader thread
matches each reply to its pending future by correlation id; an unknown id (a reply after its
request timed out, or a duplicate after a redelivery) is dropped and counted in
``late_replies``. When the stream breaks (broker restart, network) the reader opens a new
inbox with backoff (the broker refuses a second stream on an inbox, so a broker that has not
yet noticed the old connection is gone cannot stand in the way): requests in flight
meanwhile time out, new ones wait (within their timeout) until an inbox is open again.

Timeouts: one timer thread holds the deadlines in a heap and fails each pending future with
:class:`~logstream.errors.RequestTimeoutError` at its deadline, removing it from the pending
table: nothing about a request outlives its timeout but a heap entry of (deadline, id),
and the thread drops the entries of answered requests before it sleeps, so it wakes only
for the earliest request still waiting.

Threading: ``request`` and ``request_async`` may be called from any number of threads.
Future callbacks run on the inbox reader, the timer or the requests' stream reader thread:
keep them short. Every request that leaves the pending table (reply, timeout, error) tells
the sender, whose window of unfinished requests paces its messages.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, InvalidStateError
from pathlib import Path

from logstream import errors
from logstream.client import transport as tr
from logstream.client.request_sender import RequestSender
from logstream.codec import (
    SMALL_BATCH_RECORDS,
    BatchRows,
    DecodedBatch,
    batch_positions,
    decode_batch,
    decode_headers,
    decode_rows,
    read_header,
)
from logstream.protocol import log_pb2
from logstream.protocol.request_reply import CORRELATION_ID_HEADER, REPLY_TO_HEADER, new_inbox
from logstream.types import Record

HeadersIn = Mapping[str, bytes] | Sequence[tuple[str, bytes]] | None

INBOX_HEARTBEAT_MS = 5_000
"""The broker sends an empty message this often on an idle inbox stream."""
REOPEN_BACKOFF_S = (0.05, 1.0)
"""First and largest wait before re-opening a broken inbox stream."""


def _spans(batch: DecodedBatch) -> list[tuple[int, int]]:
    return list(zip(batch.header_starts.tolist(), batch.header_lengths.tolist(), strict=True))


def _set(future: Future[Record], result: Record | None, exc: BaseException | None) -> None:
    try:
        if exc is None:
            future.set_result(result)  # type: ignore[arg-type]
        else:
            future.set_exception(exc)
    except InvalidStateError:  # cancelled by its owner meanwhile
        pass


class Requester:
    """Send requests and wait for their replies. See the module docstring."""

    def __init__(
        self,
        bootstrap: str | tr.TransportLike,
        *,
        open_timeout: float = 10.0,
        client_id: str = "",
        tls: bool = False,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        token: str | None = None,
    ) -> None:
        self._owns_transport = isinstance(bootstrap, str)
        self._transport = tr.connect(
            bootstrap, tr.ChannelSecurity.of(tls=tls, ca=ca, cert=cert, key=key, token=token)
        )
        self.inbox = new_inbox()
        self._inbox_header = self.inbox.encode()
        self._lock = threading.Condition()
        self._pending: dict[bytes, Future[Record]] = {}
        self._deadlines: list[tuple[float, bytes, str, float]] = []  # + topic, timeout
        self._ready = threading.Event()
        self._closed = threading.Event()
        self._call: tr.StreamCall[log_pb2.FetchResponse] | None = None
        self.late_replies = 0
        """Replies that matched no pending request (late, duplicate, or not ours)."""
        self.reopened = 0
        """How often the inbox stream was opened again after it broke."""
        self.timer_wakeups = 0
        """How often the timeout thread woke and found no request to fail."""
        self._last_error: errors.LogstreamError | None = None
        self._sender: RequestSender | None = None
        self.client_id = client_id
        try:
            self._sender = RequestSender(self._transport, self._send_failed, self._refused)
            self._reader = threading.Thread(
                target=self._read_loop, name="logstream-requester-inbox", daemon=True
            )
            self._timer = threading.Thread(
                target=self._expire_loop, name="logstream-requester-timer", daemon=True
            )
            self._reader.start()
            self._timer.start()
            if not self._ready.wait(open_timeout):
                raise errors.BrokerNotAvailableError(
                    f"could not open a reply inbox within {open_timeout} s: {self._last_error}"
                )
        except BaseException:
            self.close()
            raise

    # ---- sending ---------------------------------------------------------------------------

    def request_async(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: HeadersIn = None,
        timeout: float = 2.0,
    ) -> Future[Record]:
        """Send a request; the future gets the reply :class:`Record`, or
        :class:`RequestTimeoutError` after ``timeout`` seconds, or the send's error."""
        sender = self._sender
        if self._closed.is_set() or sender is None:
            raise errors.ClientClosedError("requester closed")
        for name, data in (("value", value), ("key", key)):
            # a str broke the request stream: "Exception iterating requests!"
            if data is not None and not isinstance(data, bytes | bytearray | memoryview):
                raise TypeError(
                    f"request {name} must be bytes or None, not {type(data).__name__} "
                    "(encode text first: 'hello'.encode())"
                )
        if timeout <= 0:
            raise errors.InvalidRequestError(f"timeout must be > 0 s, got {timeout}")
        deadline = time.monotonic() + timeout
        if not self._ready.is_set():  # the inbox is being re-opened: a reply would be lost
            self._ready.wait(timeout)
        future: Future[Record] = Future()
        try:
            partition = sender.partition_for(topic, key)
        except errors.LogstreamError as exc:
            future.set_exception(exc)
            return future
        number, correlation_id = sender.next_id()
        items = list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())
        items.append((REPLY_TO_HEADER, self._inbox_header))
        items.append((CORRELATION_ID_HEADER, correlation_id))
        with self._lock:
            self._pending[correlation_id] = future
            heapq.heappush(self._deadlines, (deadline, correlation_id, topic, timeout))
            if self._deadlines[0][1] == correlation_id:
                self._lock.notify()
        try:
            sender.send(number, topic, partition, key, value, items)
        except errors.LogstreamError as exc:
            self._send_failed(correlation_id, exc)
        return future

    def request(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: HeadersIn = None,
        timeout: float = 2.0,
    ) -> Record:
        """Send a request and wait for its reply (a :class:`Record` whose ``value`` is the
        answer); raises :class:`RequestTimeoutError` after ``timeout`` seconds."""
        return self.request_async(topic, value, key=key, headers=headers, timeout=timeout).result()

    def _send_failed(self, correlation_id: bytes, exc: BaseException) -> None:
        with self._lock:
            future = self._pending.pop(correlation_id, None)
        if future is not None:
            self._finished(1)
            _set(future, None, exc)

    def _finished(self, count: int) -> None:
        """``count`` requests left the pending table: room in the sender's window."""
        if count and self._sender is not None:
            self._sender.finished(count)

    def _refused(self, first: int, last: int, exc: BaseException) -> None:
        """The broker ended the requests' stream with ``exc``: fail the requests sent on it."""
        sender = self._sender
        if sender is None:
            return
        with self._lock:
            sent = [c for c in self._pending if first <= sender.number_of(c) <= last]
            failed = [self._pending.pop(c) for c in sent]
        self._finished(len(failed))
        for future in failed:
            _set(future, None, exc)

    @property
    def pending(self) -> int:
        """Requests waiting for a reply (each leaves at its reply or its deadline)."""
        return len(self._pending)

    # ---- receiving -------------------------------------------------------------------------

    def _read_loop(self) -> None:
        backoff = REOPEN_BACKOFF_S[0]
        request = log_pb2.SubscribeRequest(
            partitions=[log_pb2.FetchPartition(topic=self.inbox, partition=0)],
            heartbeat_ms=INBOX_HEARTBEAT_MS,
        )
        opened = False
        while not self._closed.is_set():
            if opened or self._last_error is not None:  # never reuse an inbox
                self.inbox = new_inbox()
                self._inbox_header = self.inbox.encode()
                request.partitions[0].topic = self.inbox
            try:
                call = self._transport.subscribe(request)
                with self._lock:
                    self._call = call
                if self._closed.is_set():
                    call.cancel()
                    return
                for response in call:
                    if not self._ready.is_set():
                        self.reopened += opened
                        opened = True
                        backoff = REOPEN_BACKOFF_S[0]
                        self._ready.set()
                    for part in response.partitions:
                        if part.error_code:
                            raise errors.for_code(part.error_code)(part.error_message)
                        if part.records:
                            self._dispatch(part.records)
            except errors.LogstreamError as exc:
                self._last_error = exc
            self._ready.clear()
            if self._closed.wait(backoff):
                return
            backoff = min(backoff * 2, REOPEN_BACKOFF_S[1])

    def _dispatch(self, records: bytes) -> None:
        for pos in batch_positions(records):
            if read_header(records, pos).record_count <= SMALL_BATCH_RECORDS:
                rows = decode_rows(records, pos, verify=False)  # a reply: no numpy calls
            else:
                batch = decode_batch(records, pos, verify=False)
                rows = BatchRows(
                    batch.header,
                    batch.timestamps.tolist(),
                    batch.key_list(),
                    batch.value_list(),
                    [bytes(batch.headers_blob[s : s + n]) for s, n in _spans(batch)],
                )
            base = rows.header.base_offset
            for i, blob in enumerate(rows.header_blobs):
                headers = decode_headers(blob)
                correlation_id = None
                for name, value in headers:
                    if name == CORRELATION_ID_HEADER:
                        correlation_id = value
                with self._lock:
                    future = self._pending.pop(correlation_id, None)  # type: ignore[arg-type]
                    if future is None:
                        self.late_replies += 1
                        continue
                self._finished(1)
                record = Record(
                    self.inbox,
                    0,
                    base + i,
                    rows.timestamps[i],
                    rows.keys[i],
                    rows.values[i],
                    headers,
                )
                _set(future, record, None)

    def _expire_loop(self) -> None:
        heap = self._deadlines
        pending = self._pending
        while True:
            expired: list[tuple[Future[Record], str, float]] = []
            with self._lock:
                if self._closed.is_set():
                    return
                now = time.monotonic()
                while heap and heap[0][0] <= now:
                    _, correlation_id, topic, timeout = heapq.heappop(heap)
                    future = pending.pop(correlation_id, None)
                    if future is not None:
                        expired.append((future, topic, timeout))
                if not expired:
                    # Entries of answered requests go now, not at their deadlines: the
                    # thread then wakes only for a request still waiting (not once per
                    # request, long after its reply).
                    while heap and heap[0][1] not in pending:
                        heapq.heappop(heap)
                    self._lock.wait(heap[0][0] - now if heap else None)
                    self.timer_wakeups += 1
                    continue
            self._finished(len(expired))
            for future, topic, timeout in expired:
                error = errors.RequestTimeoutError(
                    f"no reply to a request on {topic} within {timeout:g} s"
                )
                _set(future, None, error)

    # ---- life cycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Stop: pending requests fail with ClientClosedError; the inbox closes."""
        if self._closed.is_set():
            return
        with self._lock:
            self._closed.set()
            self._lock.notify_all()
            call, self._call = self._call, None
            pending, self._pending = self._pending, {}
            self._deadlines.clear()
        if call is not None:
            call.cancel()
        for future in pending.values():
            _set(future, None, errors.ClientClosedError("requester closed"))
        if self._sender is not None:
            self._sender.close()
        for thread in (getattr(self, "_reader", None), getattr(self, "_timer", None)):
            if thread is not None and thread.is_alive():
                thread.join(5)
        if self._owns_transport:
            self._transport.close()

    def __enter__(self) -> Requester:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
