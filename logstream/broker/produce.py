"""Produce: validate, append, acknowledge at the requested durability.

Per partition, batches are appended in request order; storage checks each batch's header,
CRC, size (``max_batch_bytes``) and idempotence (producer id/epoch/sequence) and stamps its
base offset (a ``BuiltBatch``, which an edge of this broker encoded itself, is appended
``trusted``: no second CRC and record-section check; see ``PartitionLog.append``). The
broker adds one cheap check first: a ``bytes`` element must be exactly one batch (its
``batch_length`` equals its size). It never walks the records.

A partition's batches are all-or-prefix: the first failing batch stops the partition, and
the batches after it are answered with the same error class ("not appended") so that an
idempotent producer's sequence never skips a gap.

Acks (durability of an acknowledged batch; see docs/broker.md):

- ``none``: answered after the append, like ``leader``; the client does not wait.
- ``leader`` (default): the batch is in the memory-mapped segment: it survives a crash of
  the broker *process*; the topic's flush policy (``interval`` by default: a background
  ``flush_due`` every ``flush_interval_ms``) bounds the loss window on a machine crash.
- ``flushed``: answered after an msync/fsync covering the batch, shared by every producer
  that appended meanwhile (group commit, see group_commit.py): survives a machine crash.

Internal topics (``__consumer_offsets``) are refused with INTERNAL_TOPIC_READ_ONLY: a forged
record there would rewrite a group's committed offsets.

A flush failure is fatal for the partition: the batch is answered with KAFKA_STORAGE_ERROR,
never as a success.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from logstream.broker.admin import refuse_internal
from logstream.broker.broker import Broker
from logstream.broker.queue_reads import OFFER_MAX_BYTES, FetchCache
from logstream.codec import BuiltBatch, peek_length, stamp_base_offset
from logstream.errors import (
    CorruptRecordError,
    InvalidRequiredAcksError,
    LogstreamError,
    UnknownServerError,
)
from logstream.storage.log import AppendResult, PartitionLog

log = logging.getLogger("logstream.broker.produce")

ACKS_MODES = ("none", "leader", "flushed")


@dataclass(slots=True)
class BatchOutcome:
    error: LogstreamError | None = None
    base_offset: int = -1
    log_append_time_ms: int = -1
    log_start_offset: int = -1
    duplicate: bool = False


@dataclass(slots=True)
class PartitionOutcome:
    topic: str
    partition: int
    error: LogstreamError | None = None
    batches: list[BatchOutcome] = field(default_factory=list)


class ProduceHandler:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def produce(
        self,
        topic: str,
        partition: int,
        batches: Sequence[bytes | BuiltBatch],
        *,
        acks: str = "leader",
        timeout_ms: int = 0,
    ) -> PartitionOutcome:
        """Append ``batches`` to one partition; never raises for per-partition failures."""
        if acks not in ACKS_MODES:
            raise InvalidRequiredAcksError(f"acks must be one of {', '.join(ACKS_MODES)}")
        try:
            with self.broker.operation():
                refuse_internal(topic, "produce to")  # only the coordinator writes them
                plog = self.broker.get_log(topic, partition, create=True)
                return self.append(
                    plog, topic, partition, batches, acks=acks, timeout_ms=timeout_ms
                )
        except LogstreamError as exc:
            return PartitionOutcome(topic, partition, error=_detached(exc))
        except Exception as exc:
            log.exception("produce to %s-%d failed unexpectedly", topic, partition)
            return PartitionOutcome(
                topic, partition, error=UnknownServerError(f"{type(exc).__name__}: {exc}")
            )

    def append(
        self,
        plog: PartitionLog,
        topic: str,
        partition: int,
        batches: Sequence[bytes | BuiltBatch],
        *,
        acks: str = "leader",
        timeout_ms: int = 0,
    ) -> PartitionOutcome:
        """:meth:`produce` to a log the caller looked up (``refuse_internal`` applied)
        inside the broker's operation bracket, which it still holds: an edge that needed
        the log first (the Kafka listener reads its batch limit) does not bracket and
        look up twice. Never raises for per-partition failures."""
        if acks not in ACKS_MODES:
            raise InvalidRequiredAcksError(f"acks must be one of {', '.join(ACKS_MODES)}")
        out = PartitionOutcome(topic, partition)
        try:
            self._append(out, plog, batches, acks, timeout_ms)
        except LogstreamError as exc:
            out.error, out.batches = _detached(exc), []
        except Exception as exc:
            log.exception("produce to %s-%d failed unexpectedly", topic, partition)
            out.error = UnknownServerError(f"{type(exc).__name__}: {exc}")
            out.batches = []
        return out

    def _append(
        self,
        out: PartitionOutcome,
        plog: PartitionLog,
        batches: Sequence[bytes | BuiltBatch],
        acks: str,
        timeout_ms: int,
    ) -> None:
        appended = records = nbytes = 0
        segments_before = plog.segment_count
        for i, batch in enumerate(batches):
            try:
                if isinstance(batch, BuiltBatch):
                    length = batch.header.batch_length
                    result = plog.append(batch.data, trusted=True)
                else:
                    length = peek_length(batch)
                    if length != len(batch):
                        raise CorruptRecordError(
                            f"batch {i}: batch_length {length} but {len(batch)} bytes were sent "
                            "(each element of `batches` must be exactly one batch)"
                        )
                    result = plog.append(batch)
            except LogstreamError as exc:
                out.batches.append(BatchOutcome(error=_detached(exc)))
                for _ in batches[i + 1 :]:
                    out.batches.append(
                        BatchOutcome(
                            error=type(exc)(f"not appended: batch {i} before it failed: {exc}")
                        )
                    )
                break
            appended += 1
            if not result.duplicate:
                records += result.last_offset - result.base_offset + 1
                nbytes += length
                if result.log_append_time_ms < 0 and length <= OFFER_MAX_BYTES:
                    _offer(self.broker.admits, plog, result, batch)
            out.batches.append(
                BatchOutcome(
                    base_offset=result.base_offset,
                    log_append_time_ms=result.log_append_time_ms,
                    log_start_offset=result.log_start_offset,
                    duplicate=result.duplicate,
                )
            )
        if not appended:
            return
        self.broker.metrics.produced(plog, records, nbytes, segments_before)
        self.broker.notifier.notify((out.topic, out.partition))
        if acks == "flushed":
            timeout = (
                timeout_ms if timeout_ms > 0 else self.broker.config.produce_timeout_ms
            ) / 1e3
            gc = self.broker.group_commit.get(out.topic, out.partition, plog)
            try:
                gc.sync(timeout)
            except LogstreamError as exc:
                _detached(exc)
                for outcome in out.batches:
                    if outcome.error is None:
                        outcome.error = exc


def _offer(
    admits: FetchCache, plog: PartitionLog, result: AppendResult, batch: bytes | BuiltBatch
) -> None:
    """Hand the batch as stored (its base offset stamped; nothing else changes without
    log-append time) to the queue admissions' cache, for a partition a group reads."""
    if not admits.holds(plog, result.base_offset):
        return
    stored = bytearray(batch.data if isinstance(batch, BuiltBatch) else batch)
    stamp_base_offset(stored, result.base_offset)
    admits.offer(plog, result.base_offset, result.last_offset + 1, bytes(stored))


def _detached(exc: LogstreamError) -> LogstreamError:
    """``exc`` without its traceback, to be kept in an outcome: the traceback's frames hold
    the outcome and the request's batches, a cycle that kept a refused request's bytes
    alive until the next cyclic GC (30 refused 8 MiB requests held ~300 MiB)."""
    exc.__traceback__ = None
    return exc
