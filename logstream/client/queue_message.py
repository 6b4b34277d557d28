"""A queue group's records on the client: :class:`QueueMessage` (one acquired record and
its settlement calls), :class:`SettleError` (a refused settlement), and
:func:`decode_records`, which turns a fetch answer's ``QueueRecords`` into messages.

A message's ``ack``/``nack``/``reject``/``extend`` queue the settlement on its
:class:`~logstream.client.queue_consumer.QueueConsumer` (thread-safe there); the message
itself is not locked and is meant for the thread that works on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Protocol

import numpy as np

from logstream import errors
from logstream.codec import DecodedBatch, iter_batches
from logstream.protocol import queue_pb2
from logstream.protocol.request_reply import CORRELATION_ID_HEADER, REPLY_TO_HEADER, header
from logstream.types import Headers

ACK, NACK, REJECT, EXTEND = (
    queue_pb2.SETTLE_ACK,
    queue_pb2.SETTLE_NACK,
    queue_pb2.SETTLE_REJECT,
    queue_pb2.SETTLE_EXTEND,
)
KIND_NAMES: dict[int, str] = {ACK: "ack", NACK: "nack", REJECT: "reject", EXTEND: "extend"}


class MessageOwner(Protocol):
    """What a message needs from the consumer that acquired it (``QueueConsumer``)."""

    def _queue_ack(self, msg: QueueMessage) -> None: ...

    def _queue_settle(self, msg: QueueMessage, kind: int, **extra: Any) -> None: ...

    def send_reply(self, reply_to: str, value: bytes | None, headers: Headers) -> Future[None]:
        ...


class Reject(Exception):
    """Raise from a ``QueueConsumer.run`` handler to dead-letter the record at once."""


@dataclass(eq=False, slots=True)
class QueueMessage:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    delivery_count: int
    _consumer: MessageOwner | None = field(default=None, repr=False)
    settled: str = ""
    """"" until settled, then "ack", "nack", "reject" (an extend does not settle)."""
    error: errors.LogstreamError | None = None
    """Set when the broker refused this message's last settlement (after a commit)."""
    replied: Future[None] | None = field(default=None, repr=False)
    """The reply sent with :meth:`reply`: done once the broker has it."""

    def _settle(self, kind: int, **extra: Any) -> None:
        if self._consumer is None:
            raise errors.InvalidRequestError("this message was peeked, not acquired")
        if self.settled and kind != EXTEND:
            raise errors.InvalidRequestError(f"message already settled ({self.settled})")
        if kind != EXTEND:
            self.settled = KIND_NAMES[kind]
        self._consumer._queue_settle(self, kind, **extra)

    def ack(self) -> None:
        consumer = self._consumer
        if consumer is None or self.settled:
            self._settle(ACK)  # raises the named error
            return
        self.settled = "ack"
        consumer._queue_ack(self)

    def nack(self, delay_ms: int | None = None, reason: str = "") -> None:
        """Retry later: after ``delay_ms``, or the group's backoff for the delivery count."""
        if delay_ms is not None and delay_ms < 0:
            raise errors.InvalidQueueDelayError(f"nack delay_ms must be >= 0, got {delay_ms}")
        self._settle(NACK, delay_ms=delay_ms, reason=reason)

    def reject(self, reason: str = "") -> None:
        """Dead-letter at once."""
        self._settle(REJECT, reason=reason)

    def reply(self, value: bytes | None, headers: Headers | None = None) -> Future[None]:
        """Answer this request (a record sent by a ``Requester``, or any record with the
        ``logstream-reply-to`` and ``logstream-correlation-id`` headers): produce ``value``
        to the reply address, carrying the correlation id. Returns at once; the reply rides
        the consumer's next fetch, or is sent in the background when no poll fetches
        within ``reply_linger_ms`` (the future is done once the broker has it). An
        ``ack()`` after ``reply()`` is held back until the reply is sent (or goes in the
        same fetch, behind it), so a responder that dies in between gets the request
        redelivered (the requester drops a second reply)."""
        if self._consumer is None:
            raise errors.InvalidRequestError("this message was peeked, not acquired")
        reply_to = header(self.headers, REPLY_TO_HEADER)
        correlation_id = header(self.headers, CORRELATION_ID_HEADER)
        if reply_to is None or correlation_id is None:
            raise errors.InvalidRequestError(
                f"{self.topic}-{self.partition}@{self.offset} is not a request: it has no "
                f"{REPLY_TO_HEADER!r} and {CORRELATION_ID_HEADER!r} headers"
            )
        out = (*(headers or ()), (CORRELATION_ID_HEADER, correlation_id))
        self.replied = self._consumer.send_reply(reply_to.decode(errors="replace"), value, out)
        return self.replied

    def extend(self, lease_ms: int = 0) -> None:
        """Renew the lease (``lease_ms`` from now; 0: the group's lease)."""
        if lease_ms < 0:
            raise errors.InvalidQueueDelayError(f"lease_ms must be >= 0, got {lease_ms}")
        self._settle(EXTEND, lease_ms=lease_ms)


@dataclass(frozen=True)
class SettleError:
    """A settlement the broker refused."""

    topic: str
    partition: int
    offset: int
    action: str
    error: errors.LogstreamError


def decode_records(items: Sequence[Any], consumer: MessageOwner | None) -> list[QueueMessage]:
    """``QueueRecords`` messages as :class:`QueueMessage` objects, in the broker's order.
    Whole columns are turned into lists once per batch; batches holding exactly the
    offsets asked for (what the broker sends) need no lookup per record."""
    out: list[QueueMessage] = []
    for qr in items:
        offsets = list(qr.offsets)
        if not offsets:
            continue
        batches = list(iter_batches(qr.batches, verify=False))
        stored = [b.offsets for b in batches]
        if stored and np.array_equal(np.concatenate(stored), offsets):
            out.extend(_exact(qr.topic, qr.partition, batches, list(qr.delivery_counts), consumer))
        else:
            out.extend(_matched(qr.topic, qr.partition, batches, offsets, qr, consumer))
    return out


def _columns(batch: DecodedBatch) -> tuple[list[Any], ...]:
    """offsets, timestamps, keys and values of a batch as lists."""
    return batch.offsets.tolist(), batch.timestamps.tolist(), batch.key_list(), batch.value_list()


def _headers(batch: DecodedBatch, i: int) -> Headers:
    return () if batch.header.headers_length == 0 else tuple(batch.record_headers(i))


def _exact(
    topic: str,
    partition: int,
    batches: list[DecodedBatch],
    counts: list[int],
    consumer: MessageOwner | None,
) -> list[QueueMessage]:
    """Every record of ``batches``, which hold exactly the offsets handed out."""
    out: list[QueueMessage] = []
    at = 0
    for batch in batches:
        offs, stamps, keys, values = _columns(batch)
        n = len(offs)
        headers = (
            repeat((), n)
            if batch.header.headers_length == 0
            else map(_headers, repeat(batch, n), range(n))
        )
        out.extend(
            map(
                QueueMessage,
                repeat(topic, n),
                repeat(partition, n),
                offs,
                stamps,
                keys,
                values,
                headers,
                counts[at : at + n],
                repeat(consumer, n),
            )
        )
        at += n
    return out


def _matched(
    topic: str,
    partition: int,
    batches: list[DecodedBatch],
    offsets: list[int],
    qr: Any,
    consumer: MessageOwner | None,
) -> list[QueueMessage]:
    """The records of ``batches`` at ``offsets`` (whole stored batches may hold more)."""
    counts = dict(zip(offsets, qr.delivery_counts, strict=True))
    found: dict[int, QueueMessage] = {}
    for batch in batches:
        offs, stamps, keys, values = _columns(batch)
        for i, off in enumerate(offs):
            count = counts.get(off)
            if count is None:
                continue  # a record of the batch this fetch did not acquire
            found[off] = QueueMessage(
                topic,
                partition,
                off,
                stamps[i],
                keys[i],
                values[i],
                _headers(batch, i),
                count,
                consumer,
            )
    return [found[o] for o in offsets if o in found]
