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
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any

from logstream import errors
from logstream.client.queue_records import (
    ACKED,
    NACKED,
    REJECTED,
    STATE_NAMES,
    MessageOwner,
    PartitionRecords,
)
from logstream.codec import iter_batches
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
_STATE_OF_KIND: dict[int, int] = {ACK: ACKED, NACK: NACKED, REJECT: REJECTED}


class Reject(Exception):
    """Raise from a ``QueueConsumer.run`` handler to dead-letter the record at once."""


class QueueMessage:
    """One acquired record: ``topic``, ``partition``, ``offset``, ``timestamp_ms``, ``key``,
    ``value``, ``headers``, ``delivery_count`` (1 on the first delivery), and its outcome:
    ``settled`` ("" until settled, then "ack", "nack" or "reject"; an extend does not
    settle), ``error`` (set when the broker refused its last settlement, after a commit)
    and ``replied`` (the future of the reply sent with :meth:`reply`).

    A row of a :class:`~logstream.client.queue_records.PartitionRecords` (the fields are
    read from its columns), so a message is cheap to make and holds no per-field data."""

    __slots__ = ("__weakref__", "_records", "_row", "offset")

    def __init__(self, records: PartitionRecords, row: int, offset: int) -> None:
        self._records = records
        self._row = row
        self.offset = offset

    @property
    def topic(self) -> str:
        return self._records.topic

    @property
    def partition(self) -> int:
        return self._records.partition

    @property
    def timestamp_ms(self) -> int:
        return self._records.timestamps()[self._row]

    @property
    def key(self) -> bytes | None:
        return self._records.keys()[self._row]

    @property
    def value(self) -> bytes | None:
        return self._records.values()[self._row]

    @property
    def headers(self) -> Headers:
        return self._records.headers()[self._row]

    @property
    def delivery_count(self) -> int:
        return self._records.counts[self._row]

    @property
    def settled(self) -> str:
        return STATE_NAMES[self._records.state[self._row]]

    @property
    def error(self) -> errors.LogstreamError | None:
        return self._records.refused.get(self._row)

    @error.setter
    def error(self, err: errors.LogstreamError | None) -> None:
        if err is None:
            self._records.refused.pop(self._row, None)
        else:
            self._records.refused[self._row] = err

    @property
    def replied(self) -> Future[None] | None:
        return self._records.replies.get(self._row)

    def __repr__(self) -> str:
        return (
            f"QueueMessage(topic={self.topic!r}, partition={self.partition}, "
            f"offset={self.offset}, timestamp_ms={self.timestamp_ms}, key={self.key!r}, "
            f"value={self.value!r}, headers={self.headers!r}, "
            f"delivery_count={self.delivery_count}, settled={self.settled!r})"
        )

    def _settle(self, kind: int, **extra: Any) -> None:
        records = self._records
        if records.owner is None:
            raise errors.InvalidRequestError("this message was peeked, not acquired")
        state = records.state[self._row]
        if state and kind != EXTEND:
            raise errors.InvalidRequestError(f"message already settled ({STATE_NAMES[state]})")
        if kind != EXTEND:
            records.state[self._row] = _STATE_OF_KIND[kind]
        records.owner._queue_settle(self, kind, **extra)

    def ack(self) -> None:
        records = self._records
        owner = records.owner
        row = self._row
        if owner is None or records.state[row] or owner._closed:
            self._settle(ACK)  # raises the named error
            return
        records.state[row] = ACKED  # the byte first, then the flag (queue_records.py)
        if not records.ack_queued:
            owner._queue_acks(records)

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
        owner = self._records.owner
        if owner is None:
            raise errors.InvalidRequestError("this message was peeked, not acquired")
        reply_to = header(self.headers, REPLY_TO_HEADER)
        correlation_id = header(self.headers, CORRELATION_ID_HEADER)
        if reply_to is None or correlation_id is None:
            raise errors.InvalidRequestError(
                f"{self.topic}-{self.partition}@{self.offset} is not a request: it has no "
                f"{REPLY_TO_HEADER!r} and {CORRELATION_ID_HEADER!r} headers"
            )
        out = (*(headers or ()), (CORRELATION_ID_HEADER, correlation_id))
        replied = owner.send_reply(reply_to.decode(errors="replace"), value, out)
        self._records.replies[self._row] = replied
        return replied

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


def decode_partitions(
    items: Sequence[Any], consumer: MessageOwner | None
) -> list[PartitionRecords]:
    """``QueueRecords`` messages as :class:`PartitionRecords`, in the broker's order
    (offsets and delivery counts as lists, or as runs when the fetch asked for them)."""
    out = []
    for qr in items:
        if qr.offset_runs:
            offsets, counts = _from_runs(list(qr.offset_runs), list(qr.delivery_count_runs))
        elif qr.offsets:
            offsets, counts = list(qr.offsets), list(qr.delivery_counts)
        else:
            continue
        data = qr.batches  # each read of a bytes field copies it: once
        records = PartitionRecords(
            qr.topic,
            qr.partition,
            consumer,
            list(iter_batches(data, verify=False)),
            offsets,
            counts,
        )
        records.nbytes = len(data)
        out.append(records)
    return out


def _from_runs(offset_runs: list[int], count_runs: list[int]) -> tuple[Sequence[int], list[int]]:
    """Offsets from (first offset, count) pairs (a ``range`` for one run: slicing it costs
    nothing), delivery counts from (count, records) pairs."""
    if len(offset_runs) % 2 or len(count_runs) % 2:
        raise errors.CorruptRecordError("queue answer: runs must be pairs")
    firsts, lengths = offset_runs[::2], offset_runs[1::2]
    if len(firsts) == 1:
        offsets: Sequence[int] = range(firsts[0], firsts[0] + lengths[0])
    else:
        ends = [a + n for a, n in zip(firsts, lengths, strict=True)]
        offsets = list(chain.from_iterable(map(range, firsts, ends)))
    if len(count_runs) == 2:
        counts = [count_runs[0]] * count_runs[1]
    else:
        counts = list(chain.from_iterable(map(repeat, count_runs[::2], count_runs[1::2])))
    if len(counts) != len(offsets):
        raise errors.CorruptRecordError(
            f"queue answer: {len(offsets)} offsets but {len(counts)} delivery counts"
        )
    return offsets, counts


def decode_records(items: Sequence[Any], consumer: MessageOwner | None) -> list[QueueMessage]:
    """``QueueRecords`` messages as :class:`QueueMessage` objects, in the broker's order:
    one :class:`PartitionRecords` per item, one small object per record."""
    out: list[QueueMessage] = []
    for records in decode_partitions(items, consumer):
        n = len(records)
        out.extend(map(QueueMessage, repeat(records, n), range(n), records.offsets))
    return out
