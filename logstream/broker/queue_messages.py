"""Protobuf <-> queue engine pieces shared by the queue Fetch and the push session.

Settlements in (``settles``), refused settlements out (``settle_results``), records out
(``records``: the batches holding acquired offsets, read after the state log holds the
acquisition), and replies riding a member's request handed to their inboxes
(``deliver_replies``: the same checks and discard rules as a Produce to the inbox). Plain
functions, called on the event loop or in a pool thread alike.

Offset runs (decision 0042): a member that asks for them gets the records handed out as
(first offset, count) pairs and their delivery counts as (count, records) pairs, and may
settle runs of offsets the same way (``Settlement.offset_runs``). A fetch of thousands of
consecutive records is then a few numbers each way instead of a Python int per record
turned into a protobuf list and back.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from logstream.broker.inboxes import Inboxes
from logstream.broker.queue_settle import Settle, SettleOutcome
from logstream.broker.queues import QueueManager
from logstream.broker.rpc import error_fields
from logstream.coordinator.queues import Delivery
from logstream.errors import InvalidRequestError, LogstreamError
from logstream.protocol import queue_pb2
from logstream.protocol.status import client_message

MAX_RUN_RECORDS = 1 << 16
"""The records one ``Settlement``'s ``offset_runs`` may cover in all (a client puts any
more in ``offsets``): ten times what a member holds with the default prefetch (64 polls
of 100)."""

MAX_REQUEST_RUN_RECORDS = 1 << 20
"""The records all ``offset_runs`` of one request may cover together: runs are a few bytes
each, so without a bound per request a small message could ask the broker to build
arrays of any size (8 MiB of offsets at most here)."""

MAX_RUN_OFFSET = 1 << 62
"""No run may start past this, so ``first + count`` stays far inside int64."""


def settles(items: Any, budget: list[int] | None = None) -> list[Settle]:
    """``Settlement`` messages as the engine's :class:`Settle` items. Their ``offset_runs``
    share ``budget`` (``[records]``, shrunk in place; a fresh
    :data:`MAX_REQUEST_RUN_RECORDS` when not given): messages handled together pass one."""
    if budget is None:
        budget = [MAX_REQUEST_RUN_RECORDS]
    return [
        Settle(
            s.topic,
            s.partition,
            int(s.kind),
            _offsets(s, budget),
            s.delay_ms if s.HasField("delay_ms") else None,
            s.reason,
            s.lease_ms,
        )
        for s in items
    ]


def _offsets(s: Any, budget: list[int]) -> np.ndarray:
    """A settlement's ``offsets`` followed by its ``offset_runs`` expanded; ``budget[0]``
    is what the request's runs may still cover, and shrinks by what these cover."""
    offsets = np.asarray(s.offsets, np.int64)
    if not s.offset_runs:
        return offsets
    pairs = np.asarray(s.offset_runs, np.int64)
    if len(pairs) % 2:
        raise InvalidRequestError("offset_runs holds (first offset, count) pairs: odd length")
    first, count = pairs[0::2], pairs[1::2]
    # each count is bounded before they are summed, so the sum cannot wrap
    if (
        (first < 0).any()
        or (first > MAX_RUN_OFFSET).any()
        or (count < 0).any()
        or (count > MAX_RUN_RECORDS).any()
        or int(count.sum()) > MAX_RUN_RECORDS
    ):
        raise InvalidRequestError(
            f"offset_runs: offsets from 0 to {MAX_RUN_OFFSET} and counts >= 0, covering at "
            f"most {MAX_RUN_RECORDS} records per settlement"
        )
    budget[0] -= int(count.sum())
    if budget[0] < 0:
        raise InvalidRequestError(
            f"offset_runs: one request's settlements may cover at most "
            f"{MAX_REQUEST_RUN_RECORDS} records in runs"
        )
    if len(first) == 1:
        runs = np.arange(first[0], first[0] + count[0], dtype=np.int64)
    else:  # each record's run start, less the records before that run, plus its index
        ends = np.cumsum(count)
        runs = np.repeat(first - (ends - count), count) + np.arange(ends[-1], dtype=np.int64)
    return np.concatenate((offsets, runs)) if len(offsets) else runs


def offset_runs(offsets: np.ndarray) -> list[int]:
    """Ascending-or-not ``offsets`` as (first offset, count) pairs of consecutive ones."""
    return _runs(offsets, 1)


def value_runs(values: np.ndarray) -> list[int]:
    """``values`` as (value, how many in a row) pairs."""
    return _runs(values, 0)


def _runs(values: np.ndarray, step: int) -> list[int]:
    """(first value, count) pairs of the stretches where each value is the one before plus
    ``step``."""
    if not len(values):
        return []
    starts = np.concatenate(([0], np.flatnonzero(np.diff(values) != step) + 1))
    counts = np.diff(np.concatenate((starts, [len(values)])))
    return np.column_stack((values[starts], counts)).ravel().tolist()  # type: ignore[no-any-return]


def settle_results(outcomes: list[SettleOutcome]) -> list[queue_pb2.SettleResult]:
    """The refused settlements of ``outcomes`` (an outcome with none is left out)."""
    return [
        queue_pb2.SettleResult(
            topic=o.settle.topic,
            partition=o.settle.partition,
            kind=o.settle.kind,  # type: ignore[arg-type]
            offsets=o.offsets,
            error_codes=[e.code for e in o.errors],
            error_messages=[client_message(e) for e in o.errors],
        )
        for o in outcomes
        if o.offsets
    ]


def records_pb(
    queues: QueueManager, group: str, deliveries: list[Delivery], *, runs: bool = False
) -> list[queue_pb2.QueueRecords]:
    """The records of ``deliveries`` as the member receives them (``runs``: as offset and
    delivery-count runs instead of per-record lists)."""
    if runs:
        return [
            queue_pb2.QueueRecords(
                topic=d.topic,
                partition=d.partition,
                batches=queues.read(d.topic, d.partition, d.offsets, group),
                offset_runs=offset_runs(d.offsets),
                delivery_count_runs=value_runs(d.delivery_counts),
            )
            for d in deliveries
        ]
    return [
        queue_pb2.QueueRecords(
            topic=d.topic,
            partition=d.partition,
            batches=queues.read(d.topic, d.partition, d.offsets, group),
            offsets=d.offsets.tolist(),
            delivery_counts=d.delivery_counts.tolist(),
        )
        for d in deliveries
    ]


def deliver_replies(inboxes: Inboxes, replies: Any) -> list[queue_pb2.QueueReplyResult]:
    """Replies riding a member's request, handed to their inboxes as a Produce to each
    would be; one result per reply (empty: delivered or discarded as a late reply)."""
    out = []
    for reply in replies:
        try:
            inboxes.deliver(reply.inbox, 0, (reply.batch,))
        except LogstreamError as exc:
            code, message = error_fields(exc)
            out.append(queue_pb2.QueueReplyResult(error_code=code, error_message=message))
        else:
            out.append(queue_pb2.QueueReplyResult())
    return out
