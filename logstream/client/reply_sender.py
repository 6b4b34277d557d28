"""Replies of a queue consumer: riding the member's next fetch, or sent in the background.

``QueueMessage.reply`` hands one encoded batch (one record) for partition 0 of an inbox to
:meth:`ReplySender.send` and gets a future at once. Two ways out, whichever comes first
(docs/decisions/0035-replies-ride-the-queue-fetch.md):

- the member's next ``poll()`` takes every queued reply (:meth:`ReplySender.take`) into its
  QueueFetch, ahead of the settlements it carries: a responder that answers and polls again
  pays no RPC and no thread hand-off for the reply;
- when no poll has taken a reply ``linger_s`` after it was queued (the application is busy
  with other messages, or replies from another thread during a long poll), one background
  thread sends what is queued as one unary Produce (every queued reply, across inboxes),
  then the next: while one request is on the wire, later replies gather for the next.

No state is kept per inbox (a responder sees a new inbox for every requester process; none
of them may grow its memory). Futures resolve to None, or fail with the broker's error for
that reply (or the whole request's, e.g. the broker is gone). Threading: ``send`` and
``take`` from any thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from logstream import errors
from logstream.client import transport as tr
from logstream.protocol import common_pb2, log_pb2

_Item = tuple[str, bytes, "Future[None]"]


def settle_replies(items: Sequence[_Item], results: Any) -> None:
    """Resolve the futures of replies that rode a QueueFetch from its ``reply_results``."""
    for n, (_, _, future) in enumerate(items):
        if n >= len(results):
            future.set_exception(errors.UnknownServerError("no answer for this reply"))
        elif results[n].error_code:
            code, text = results[n].error_code, results[n].error_message
            future.set_exception(errors.for_code(code)(text))
        else:
            future.set_result(None)


def fail_replies(items: Sequence[_Item], exc: BaseException) -> None:
    for _, _, future in items:
        future.set_exception(exc)


class ReplySender:
    def __init__(self, transport: tr.TransportLike, *, timeout: float, linger_s: float) -> None:
        self._transport = transport
        self._timeout = timeout
        self._linger_s = linger_s
        self._lock = threading.Condition()
        self._queue: list[_Item] = []
        self._since = 0.0  # when the oldest queued reply was queued
        self._idle = False  # the thread waits with no deadline: a first reply must wake it
        self._closed = False
        self._thread: threading.Thread | None = None

    def send(self, topic: str, batch: bytes) -> Future[None]:
        future: Future[None] = Future()
        with self._lock:
            if self._closed:
                raise errors.ClientClosedError("queue consumer closed")
            if not self._queue:
                self._since = time.monotonic()
            self._queue.append((topic, batch, future))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="logstream-queue-replies", daemon=True
                )
                self._thread.start()
            elif self._idle:
                self._lock.notify()
        return future

    def take(self) -> list[_Item]:
        """Every queued reply, for the caller to send (see :func:`settle_replies`)."""
        with self._lock:
            items, self._queue = self._queue, []
        return items

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._idle = True
                    self._lock.wait()
                self._idle = False
                if not self._queue:
                    return
                wait = self._since + self._linger_s - time.monotonic()
                if wait > 0 and not self._closed:
                    self._lock.wait(wait)  # a poll may take them meanwhile
                    continue
                items, self._queue = self._queue, []
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
            fail_replies(items, exc)
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
