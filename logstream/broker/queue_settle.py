"""Outcomes reported by queue members: acks, nacks, rejects and lease extensions.

A request carries :class:`Settle` items (one partition, one kind, many offsets each);
:func:`apply_settles` checks the whole request first (nothing is applied if one item is
malformed), then applies each item to the group and reports the offsets it refused, with
the error of each (:class:`SettleOutcome`).

Not thread-safe: called under the group's lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from logstream.coordinator.queues import OpResult, QueueGroup
from logstream.coordinator.queues.settings import MAX_DURATION_MS
from logstream.errors import (
    InvalidQueueDelayError,
    InvalidRequestError,
    LogstreamError,
    UnknownTopicOrPartitionError,
    for_code,
)

ACK, NACK, REJECT, EXTEND = 0, 1, 2, 3


@dataclass(frozen=True)
class Settle:
    """One settlement: records of one partition acked, nacked, rejected or extended."""

    topic: str
    partition: int
    kind: int
    offsets: np.ndarray
    delay_ms: int | None = None
    reason: str = ""
    lease_ms: int = 0


@dataclass(frozen=True)
class SettleOutcome:
    settle: Settle
    offsets: list[int]  # refused ones only
    errors: list[LogstreamError]


def merge_acks(settles: Sequence[Settle]) -> list[Settle]:
    """``settles`` with each run of acks of one partition whose offsets keep rising joined
    into one (one engine call instead of one per member message: a push session applies
    the acks of several messages in one pass). Anything else stays as it is, in order;
    acks that repeat or go back an offset are not joined (each keeps its own outcome)."""
    out: list[Settle] = []
    for s in settles:
        last = out[-1] if out else None
        if (
            last is not None
            and s.kind == ACK == last.kind
            and (s.topic, s.partition) == (last.topic, last.partition)
            and len(s.offsets)
            and len(last.offsets)
            and int(s.offsets[0]) > int(last.offsets[-1])
            and bool(np.all(np.diff(s.offsets) > 0))
            and bool(np.all(np.diff(last.offsets) > 0))
        ):
            out[-1] = Settle(s.topic, s.partition, ACK, np.concatenate((last.offsets, s.offsets)))
        else:
            out.append(s)
    return out


def apply_settles(g: QueueGroup, member: str, settles: Sequence[Settle]) -> list[SettleOutcome]:
    """Apply ``settles`` for ``member``; see the module docstring."""
    for s in settles:  # whole-request checks first: nothing is applied if one fails
        if s.kind == NACK and s.delay_ms is not None and not 0 <= s.delay_ms <= MAX_DURATION_MS:
            raise InvalidQueueDelayError(
                f"nack delay_ms must be in 0..{MAX_DURATION_MS}, got {s.delay_ms}"
            )
        if s.kind == EXTEND and not 0 <= s.lease_ms <= MAX_DURATION_MS:
            raise InvalidQueueDelayError(
                f"extend lease_ms must be in 0..{MAX_DURATION_MS}, got {s.lease_ms}"
            )
        if s.kind not in (ACK, NACK, REJECT, EXTEND):
            raise InvalidRequestError(f"unknown settlement kind {s.kind}")
    out = []
    for s in settles:
        try:
            if s.kind == ACK:
                res = g.ack(member, s.topic, s.partition, s.offsets)
            elif s.kind == NACK:
                res = g.nack(member, s.topic, s.partition, s.offsets, s.delay_ms, s.reason)
            elif s.kind == REJECT:
                res = g.reject(member, s.topic, s.partition, s.offsets, s.reason)
            else:
                res = g.extend(member, s.topic, s.partition, s.offsets, s.lease_ms or None)
        except UnknownTopicOrPartitionError as exc:
            offs = [int(o) for o in s.offsets]
            out.append(SettleOutcome(s, offs, [exc] * len(offs)))
            continue
        out.append(_outcome(s, res))
    return out


def _outcome(s: Settle, res: OpResult) -> SettleOutcome:
    bad = res.failures()
    if not bad:
        return SettleOutcome(s, [], [])
    return SettleOutcome(
        s,
        [o for o, _ in bad],
        [for_code(c)(f"offset {o} of {s.topic}/{s.partition}") for o, c in bad],
    )
