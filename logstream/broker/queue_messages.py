"""Protobuf <-> queue engine pieces shared by the queue Fetch and the push session.

Settlements in (``settles``), refused settlements out (``settle_results``), records out
(``records``: the batches holding acquired offsets, read after the state log holds the
acquisition), and replies riding a member's request handed to their inboxes
(``deliver_replies``: the same checks and discard rules as a Produce to the inbox). Plain
functions, called on the event loop or in a pool thread alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from logstream.broker.inboxes import Inboxes
from logstream.broker.queue_settle import Settle, SettleOutcome
from logstream.broker.queues import QueueManager
from logstream.broker.rpc import error_fields
from logstream.coordinator.queues import Delivery
from logstream.errors import LogstreamError
from logstream.protocol import queue_pb2
from logstream.protocol.status import client_message


def settles(items: Any) -> list[Settle]:
    """``Settlement`` messages as the engine's :class:`Settle` items."""
    return [
        Settle(
            s.topic,
            s.partition,
            int(s.kind),
            np.asarray(s.offsets, np.int64),
            s.delay_ms if s.HasField("delay_ms") else None,
            s.reason,
            s.lease_ms,
        )
        for s in items
    ]


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
    queues: QueueManager, group: str, deliveries: list[Delivery]
) -> list[queue_pb2.QueueRecords]:
    """The records of ``deliveries`` as the member receives them."""
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
