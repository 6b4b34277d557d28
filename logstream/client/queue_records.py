"""One partition's records of one queue fetch answer, kept as columns:
:class:`PartitionRecords`. Each :class:`~logstream.client.queue_message.QueueMessage` is a
row of one of these (the records object and a row number), so handing out a message
costs one small object and nothing per field.

A ``QueueRecords`` answer holds whole record batches and the offsets handed out (with
their delivery counts). The offsets and counts are turned into lists once; the other
columns (timestamps, keys, values, headers) are built from the decoded batches the first
time any message of the run asks for one, a whole column at a time (one slice of the
value buffer per record, once), so a worker that never reads keys or headers never pays
for them. When the batches hold more records than were handed out (a broker may send
whole stored batches), ``rows`` maps each handed-out record to its row in the batches.

Per-row outcome state lives here too: ``state`` (one byte per row: not settled, acked
and not yet taken into a request, acked and taken, nacked, rejected), whether the
consumer has these records in its list of acks to send (``ack_queued``), the errors of
refused settlements (``refused``) and the futures of replies (``replies``), so a message
object holds no mutable fields of its own.

An ack is one byte written (``ACKED``), no lock and no list: the request that carries
acks takes every ``ACKED`` row of each queued records object in one numpy pass
(:func:`take_acked`), in row (offset) order. The consumer learns of the records the first
time one of its rows is acked after a take (``ack_queued`` false: one locked call per
records object and request, not per message).

Thread-safety: the columns are built lazily without a lock; two threads building the same
column at once build equal lists and one of them is kept. ``state`` is written by the
thread settling a message (a message is meant for one thread, see queue_message.py) and
by :func:`take_acked` (under the consumer's lock), which rewrites only ``ACKED`` bytes,
which no settling thread writes again. :func:`take_acked` clears ``ack_queued`` before it
reads the rows and an ack writes its byte before it reads ``ack_queued``, so (under the
GIL's ordering) every ack is either taken by this pass or queues the records again.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any, Protocol

import numpy as np

from logstream import errors
from logstream.codec import DecodedBatch
from logstream.types import Headers

NOT_SETTLED, ACKED, NACKED, REJECTED, ACK_TAKEN = 0, 1, 2, 3, 4
STATE_NAMES = ("", "ack", "nack", "reject", "ack")
"""``QueueMessage.settled`` for each ``state`` byte (``ACK_TAKEN``: an ack a request
carries or carried)."""


class MessageOwner(Protocol):
    """What a message needs from the consumer that acquired it (``QueueConsumer``)."""

    _closed: bool

    def _queue_acks(self, records: PartitionRecords) -> None:
        """``records`` has ``ACKED`` rows to send (called when ``ack_queued`` is false)."""

    def _queue_settle(self, msg: Any, kind: int, **extra: Any) -> None:
        """Queue settlement ``kind`` of ``msg`` (a ``QueueMessage``)."""

    def send_reply(self, reply_to: str, value: bytes | None, headers: Headers) -> Future[None]:
        """Queue one reply record for partition 0 of inbox ``reply_to``."""


class PartitionRecords:
    """The records of partition ``partition`` of ``topic`` handed out by one answer, in
    the broker's order; see the module docstring."""

    __slots__ = (
        "_batches",
        "_headers",
        "_keys",
        "_rows",
        "_stamps",
        "_values",
        "ack_queued",
        "counts",
        "nbytes",
        "offsets",
        "owner",
        "partition",
        "refused",
        "replies",
        "state",
        "topic",
    )

    def __init__(
        self,
        topic: str,
        partition: int,
        owner: MessageOwner | None,
        batches: list[DecodedBatch],
        offsets: Sequence[int],
        counts: list[int],
    ) -> None:
        """Records at ``offsets`` (a list, or a ``range`` for one run of consecutive
        offsets; delivery counts ``counts``) out of ``batches``; an offset the batches do
        not hold is left out."""
        self.topic = topic
        self.partition = partition
        self.owner = owner
        self._batches = batches
        self._rows: list[int] | None = None
        stored = np.concatenate([b.offsets for b in batches]) if batches else np.zeros(0, np.int64)
        if not _same(stored, offsets):
            offsets, counts, self._rows = _match(stored, offsets, counts)
        self.offsets: Sequence[int] = offsets  # a range when one run
        self.counts = counts
        self.state = bytearray(len(offsets))
        self.nbytes = 0  # of the batches in the answer (what prefetch growth is bounded by)
        self.ack_queued = False  # in the consumer's list of records with acks to send
        self.refused: dict[int, errors.LogstreamError] = {}
        self.replies: dict[int, Future[None]] = {}
        self._stamps: list[int] | None = None
        self._keys: list[bytes | None] | None = None
        self._values: list[bytes | None] | None = None
        self._headers: list[Headers] | None = None

    def __len__(self) -> int:
        return len(self.offsets)

    def _picked(self, column: list[Any]) -> list[Any]:
        rows = self._rows
        return column if rows is None else [column[r] for r in rows]

    def timestamps(self) -> list[int]:
        if self._stamps is None:
            col: list[int] = []
            for b in self._batches:
                col += b.timestamps.tolist()
            self._stamps = self._picked(col)
        return self._stamps

    def keys(self) -> list[bytes | None]:
        if self._keys is None:
            col: list[bytes | None] = []
            for b in self._batches:
                col += b.key_list()
            self._keys = self._picked(col)
        return self._keys

    def values(self) -> list[bytes | None]:
        if self._values is None:
            col: list[bytes | None] = []
            for b in self._batches:
                col += b.value_list()
            self._values = self._picked(col)
        return self._values

    def headers(self) -> list[Headers]:
        if self._headers is None:
            col: list[Headers] = []
            for b in self._batches:
                if b.header.headers_length == 0:
                    col += [()] * len(b)
                else:
                    col += [tuple(b.record_headers(i)) for i in range(len(b))]
            self._headers = self._picked(col)
        return self._headers


def take_acked(records: PartitionRecords) -> list[int]:
    """The rows of ``records`` acked since the last take, ascending, now marked as taken
    (``ACK_TAKEN``); clears ``ack_queued`` first (see the module docstring). The caller
    holds the consumer's lock."""
    records.ack_queued = False
    state = np.frombuffer(records.state, np.uint8)
    rows = np.flatnonzero(state == ACKED)
    state[rows] = ACK_TAKEN
    return rows.tolist()  # type: ignore[no-any-return]


def _same(stored: np.ndarray, offsets: Sequence[int]) -> bool:
    """Whether the batches' offsets ``stored`` are exactly ``offsets``, in order."""
    if isinstance(offsets, range):
        n = len(offsets)
        return len(stored) == n and (
            n == 0 or bool(np.array_equal(stored, np.arange(offsets.start, offsets.stop)))
        )
    return stored.tolist() == offsets  # cheaper than numpy converting the list


def _match(
    stored: np.ndarray, offsets: Sequence[int], counts: list[int]
) -> tuple[list[int], list[int], list[int]]:
    """The handed-out ``offsets`` (and their ``counts``) found in ``stored``, in the given
    order, and the row of each in ``stored``."""
    unique, first = np.unique(stored, return_index=True)
    wanted = np.asarray(offsets, np.int64)
    at = np.searchsorted(unique, wanted)
    found = at < len(unique)
    found[found] = unique[at[found]] == wanted[found]
    keep = np.flatnonzero(found).tolist()
    return (
        [offsets[k] for k in keep],
        [counts[k] for k in keep],
        first[at[found]].tolist(),
    )
