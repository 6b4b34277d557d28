"""The settlements a ``QueueConsumer`` has queued, as it sends them.

Queued settlements are a :data:`Pending` table: per :data:`Key` (topic, partition, kind,
nack delay, reason, extend lease) a list of :data:`Rows` entries, each rows of one
:class:`~logstream.client.queue_records.PartitionRecords` (one fetch answer's records of
that partition). Holding rows rather than message objects lets a message be freed as
soon as the application drops it: plain acks (the hot path) are a byte in their
records' ``state``, folded into the table only when a request carries them
(:func:`fold_acks`).

These are plain functions over the table; the consumer holds its lock around them.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

from logstream import errors
from logstream.client.queue_message import ACK, KIND_NAMES, SettleError
from logstream.client.queue_records import PartitionRecords, take_acked
from logstream.protocol import queue_pb2

Key = tuple[str, int, int, int | None, str, int]
"""topic, partition, kind, nack delay (None: the group's backoff), reason, extend lease."""
Rows = tuple[PartitionRecords, list[int]]
Pending = dict[Key, list[Rows]]


def fold_acks(acked: list[PartitionRecords], pending: Pending) -> None:
    """Move the plain acks of ``acked`` (each one's ``ACKED`` rows) into ``pending``, after
    what is there: an extend queued before an ack of the same record is sent first."""
    for records in acked:
        rows = take_acked(records)
        if rows:
            key = (records.topic, records.partition, ACK, None, "", 0)
            pending.setdefault(key, []).append((records, rows))


def merge(into: Pending, more: Pending) -> None:
    """Append the entries of ``more`` to ``into``, key by key."""
    for key, entries in more.items():
        into.setdefault(key, []).extend(entries)


MAX_RUN_RECORDS = 1 << 16
"""The most records one settlement sends as runs (the broker's bound,
``broker.queue_messages.MAX_RUN_RECORDS``); the rest go as offsets."""
MAX_REQUEST_RUN_RECORDS = 1 << 20
"""The most records all settlements of one request send as runs (the broker's
``MAX_REQUEST_RUN_RECORDS``)."""


def _offsets(entries: list[Rows], runs: list[int] | None, budget: list[int]) -> list[int]:
    """The offsets of ``entries``; with ``runs`` (a list to add to), every run of rows
    over a records object whose offsets are one run (a ``range``) goes there as a
    (first offset, count) pair instead, up to :data:`MAX_RUN_RECORDS` records and what
    is left of the request's ``budget`` (``[records]``, shrunk in place)."""
    out: list[int] = []
    in_runs = 0
    for records, rows in entries:
        offsets = records.offsets
        lo, hi = min(rows), max(rows)
        if hi - lo + 1 == len(rows):  # every row in between (a row is settled once)
            if (
                runs is not None
                and isinstance(offsets, range)
                and in_runs + len(rows) <= min(MAX_RUN_RECORDS, budget[0])
            ):
                runs += (offsets[lo], len(rows))
                in_runs += len(rows)
                budget[0] -= len(rows)
            else:
                out += offsets[lo : hi + 1]
        else:
            out += [offsets[r] for r in rows]
    return out


def settlements(pending: Pending, *, runs: bool = False) -> list[queue_pb2.Settlement]:
    """``pending`` as ``Settlement`` messages, one per key (``runs``: the broker reads
    ``offset_runs``, so runs of consecutive offsets go as pairs)."""
    out = []
    budget = [MAX_REQUEST_RUN_RECORDS]
    for (topic, partition, kind, delay, reason, lease), entries in pending.items():
        offset_runs: list[int] | None = [] if runs else None
        s = queue_pb2.Settlement(
            topic=topic,
            partition=partition,
            kind=kind,  # type: ignore[arg-type]
            offsets=_offsets(entries, offset_runs, budget),
            offset_runs=offset_runs,
            reason=reason,
            lease_ms=lease,
        )
        if delay is not None:
            s.delay_ms = delay
        out.append(s)
    return out


def replies_of(pending: Pending) -> Iterator[Future[None]]:
    """The reply futures of the records in ``pending``."""
    for entries in pending.values():
        for records, rows in entries:
            if records.replies:
                for r in rows:
                    f = records.replies.get(r)
                    if f is not None:
                        yield f


def _unsent(f: Future[None] | None, riding: set[int]) -> bool:
    """Whether ``f`` is a reply neither stored (or failed) nor in ``riding``."""
    return f is not None and not f.done() and id(f) not in riding


def hold_unsent(pending: Pending, riding: set[int]) -> Pending:
    """Move the rows whose reply is not sent yet (:func:`_unsent`) out of ``pending``
    (changed in place) and return them: their settlements wait for a later send."""
    held: Pending = {}
    for key, entries in list(pending.items()):
        now: list[Rows] = []
        later: list[Rows] = []
        for records, rows in entries:
            replies = records.replies
            late = [r for r in rows if _unsent(replies.get(r), riding)] if replies else []
            if late:
                later.append((records, late))
                waiting = set(late)
                rest = [r for r in rows if r not in waiting]
                if rest:
                    now.append((records, rest))
            else:
                now.append((records, rows))
        if later:
            held[key] = later
            if now:
                pending[key] = now
            else:
                del pending[key]
    return held


def refusals(results: Any, sent: Pending) -> list[SettleError]:
    """The refused settlements of ``results`` (``SettleResult`` messages answering
    ``sent``), each also set as its message's ``error``."""
    if not results:
        return []
    at: dict[tuple[str, int, int, int], tuple[PartitionRecords, int]] = {}
    for key, entries in sent.items():
        for records, rows in entries:
            for r in rows:
                at[(records.topic, records.partition, key[2], records.offsets[r])] = (records, r)
    refused = []
    for res in results:
        for off, code, text in zip(res.offsets, res.error_codes, res.error_messages, strict=True):
            err = errors.for_code(code)(text)
            hit = at.get((res.topic, res.partition, int(res.kind), off))
            if hit is not None:
                hit[0].refused[hit[1]] = err
            refused.append(SettleError(res.topic, res.partition, off, KIND_NAMES[res.kind], err))
    return refused
