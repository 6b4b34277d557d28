"""Replies of a queue consumer, sent in the background and pipelined.

``QueueMessage.reply`` hands one encoded batch (one record) for partition 0 of an inbox to
:meth:`ReplySender.send` and gets a future at once. One thread sends what is queued as one
unary Produce (every queued reply, across inboxes), then the next: while one request is on
the wire, later replies gather for the next, so a responder answering a burst pays about one
round trip per burst instead of one per reply. No state is kept per inbox (a responder sees
a new inbox for every requester process; none of them may grow its memory).

Futures resolve to None, or fail with the broker's error for that reply (or the whole
request's, e.g. the broker is gone). Threading: ``send`` from any thread.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

from logstream import errors
from logstream.client import transport as tr
from logstream.protocol import common_pb2, log_pb2

_Item = tuple[str, bytes, "Future[None]"]


class ReplySender:
    def __init__(self, transport: tr.TransportLike, *, timeout: float) -> None:
        self._transport = transport
        self._timeout = timeout
        self._lock = threading.Condition()
        self._queue: list[_Item] = []
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def send(self, topic: str, batch: bytes) -> Future[None]:
        future: Future[None] = Future()
        with self._lock:
            if self._closed:
                raise errors.ClientClosedError("queue consumer closed")
            self._queue.append((topic, batch, future))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="logstream-queue-replies", daemon=True
                )
                self._thread.start()
            self._lock.notify()
        return future

    def _loop(self) -> None:
        while True:
            with self._lock:
                self._busy = False
                self._lock.notify_all()
                while not self._queue and not self._closed:
                    self._lock.wait()
                if not self._queue:
                    return
                items, self._queue = self._queue, []
                self._busy = True
            self._send(items)

    def _send(self, items: list[_Item]) -> None:
        by_topic: dict[str, list[_Item]] = {}
        for item in items:
            by_topic.setdefault(item[0], []).append(item)
        request = log_pb2.ProduceRequest(
            acks=common_pb2.ACKS_LEADER,
            partitions=[
                log_pb2.PartitionProduceData(topic=t, partition=0, batches=[i[1] for i in group])
                for t, group in by_topic.items()
            ],
        )
        try:
            resp = self._transport.produce(request, timeout=self._timeout)
        except errors.LogstreamError as exc:
            for _, _, future in items:
                future.set_exception(exc)
            return
        for part in resp.partitions:
            group = by_topic.pop(part.topic, [])
            for n, (_, _, future) in enumerate(group):
                code, text = part.error_code, part.error_message
                if not code and n < len(part.results):
                    code, text = part.results[n].error_code, part.results[n].error_message
                if code:
                    future.set_exception(errors.for_code(code)(text))
                else:
                    future.set_result(None)
        for group in by_topic.values():  # not answered: should not happen
            for _, _, future in group:
                future.set_exception(errors.UnknownServerError("no answer for this reply"))

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued, then stop the thread."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
