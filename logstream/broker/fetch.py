"""Fetch, subscribe and list-offsets: whole batches as bytes, long-polling on appends.

A fetch names partitions and offsets. Each partition's bytes come from
``PartitionLog.read(offset, max_bytes)``: whole batches (at least one when any exist at or
after the offset), possibly starting before the requested offset (the batch containing
it). Budgets: each partition gets ``min(partition max_bytes, what is left of the request's
max_bytes)``; once the request budget is spent, later partitions are answered with no
records but their offsets. Storage's "at least one batch" rule means one oversized batch
is still delivered, so a consumer never gets stuck.

Long-poll: when fewer than ``min_bytes`` (0 means 1: any data) are available and
``max_wait_ms`` > 0, the call waits on the broker's :class:`AppendNotifier` and re-reads on
every append, until enough data, an error, the deadline, cancellation or shutdown.

Concurrency: ``fetch`` and ``subscribe`` are coroutines run on the server's event loop
(docs/decisions/0019-server-model.md). Their reads are short copies out of the mmap done
inline; waiting parks a coroutine, not a thread, so thousands of long-polls and open
subscriptions cost memory only. ``config.max_waiters`` bounds how many wait at once (a
fetch beyond it answers at once with what it has; a subscription beyond it is refused).
A cancelled call leaves through ``asyncio.CancelledError`` raised at its ``await``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from logstream.broker.broker import Broker
from logstream.broker.notify import Mark
from logstream.codec import next_offset_after
from logstream.errors import (
    InvalidRequestError,
    LogstreamError,
    OffsetOutOfRangeError,
    RequestTimedOutError,
    UnknownServerError,
)
from logstream.types import EARLIEST, LATEST

log = logging.getLogger("logstream.broker.fetch")


@dataclass(slots=True)
class FetchSpec:
    topic: str
    partition: int
    offset: int
    max_bytes: int = 0


@dataclass(slots=True)
class FetchOutcome:
    topic: str
    partition: int
    error: LogstreamError | None = None
    high_watermark: int = -1
    log_start_offset: int = -1
    records: bytes = b""


class FetchHandler:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        # Passes over a request's partitions that read storage (one per answer built, plus
        # the re-reads of a long poll woken by appends): what a test counts to show that a
        # caught-up subscription reads once per append. Written on the event loop only.
        self.reads = 0

    # -- fetch -------------------------------------------------------------------------------

    async def fetch(
        self,
        specs: Sequence[FetchSpec],
        *,
        max_wait_ms: int = 0,
        min_bytes: int = 0,
        max_bytes: int = 0,
    ) -> list[FetchOutcome]:
        if max_wait_ms < 0 or min_bytes < 0 or max_bytes < 0:
            raise InvalidRequestError("max_wait_ms, min_bytes and max_bytes must be >= 0")
        total_max, wait_s, want = self.limits(max_wait_ms, min_bytes, max_bytes)
        notifier = self.broker.notifier
        keys = [(s.topic, s.partition) for s in specs]
        seen, outcomes, size, failed = self.read_marked(specs, total_max)
        if size >= want or failed or wait_s <= 0 or not specs:
            return outcomes
        if not self.broker.waiter_slots.acquire(blocking=False):
            return outcomes
        try:
            deadline = time.monotonic() + wait_s
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or notifier.closed:
                    return outcomes
                await notifier.wait(keys, seen, remaining)
                seen, outcomes, size, failed = self.read_marked(specs, total_max)
                if size >= want or failed:
                    return outcomes
        finally:
            self.broker.waiter_slots.release()

    def limits(self, max_wait_ms: int, min_bytes: int, max_bytes: int) -> tuple[int, float, int]:
        """(request byte budget, wait in seconds, bytes wanted) as :meth:`fetch` uses them."""
        cfg = self.broker.config
        total_max = min(max_bytes or cfg.fetch_max_bytes, cfg.fetch_max_bytes)
        return total_max, min(max_wait_ms, cfg.fetch_max_wait_ms) / 1000.0, max(min_bytes, 1)

    def read_marked(
        self, specs: Sequence[FetchSpec], total_max: int
    ) -> tuple[Mark, list[FetchOutcome], int, bool]:
        """One read of ``specs`` with the notifier's mark taken before it: (mark, outcomes,
        bytes read, an outcome failed). :meth:`fetch` and a caller that waits without a
        coroutine (``kafka/parked_fetch.py``) read through it."""
        seen = self.broker.notifier.mark([(s.topic, s.partition) for s in specs])
        with self.broker.operation():
            outcomes, size, failed = self._read_all(specs, total_max)
        return seen, outcomes, size, failed

    def _read_all(
        self, specs: Sequence[FetchSpec], total_max: int
    ) -> tuple[list[FetchOutcome], int, bool]:
        self.reads += 1
        outcomes: list[FetchOutcome] = []
        size, failed = 0, False
        part_default = self.broker.config.fetch_partition_max_bytes
        for spec in specs:
            budget = min(spec.max_bytes or part_default, total_max - size)
            outcome = self._read_one(spec, budget, skip=size > 0 and budget <= 0)
            size += len(outcome.records)
            failed = failed or outcome.error is not None
            outcomes.append(outcome)
        return outcomes, size, failed

    def _read_one(self, spec: FetchSpec, budget: int, *, skip: bool) -> FetchOutcome:
        out = FetchOutcome(spec.topic, spec.partition)
        try:
            if spec.max_bytes < 0:
                raise InvalidRequestError(f"max_bytes must be >= 0, got {spec.max_bytes}")
            plog = self.broker.get_log(spec.topic, spec.partition)
            if spec.offset < 0:
                raise OffsetOutOfRangeError(
                    f"offset {spec.offset} is negative; earliest is {plog.log_start_offset}",
                    earliest=plog.log_start_offset,
                    latest=plog.log_end_offset,
                )
            if not skip:
                out.records = bytes(plog.read(spec.offset, max(budget, 1)))
                self.broker.metrics.fetched(spec.topic, spec.partition, out.records)
            out.log_start_offset = plog.log_start_offset
            out.high_watermark = plog.log_end_offset
        except LogstreamError as exc:
            out.error = exc
        except Exception as exc:
            log.exception("fetch of %s-%d failed unexpectedly", spec.topic, spec.partition)
            out.error = UnknownServerError(f"{type(exc).__name__}: {exc}")
        return out

    # -- subscribe ---------------------------------------------------------------------------

    async def subscribe(
        self,
        specs: Sequence[FetchSpec],
        *,
        max_bytes: int = 0,
        idle_wait_s: float = 30.0,
        heartbeat_s: float = 0.0,
    ) -> AsyncIterator[list[FetchOutcome]]:
        """Yield non-empty lists of outcomes as data arrives, until cancelled or shutdown;
        with ``heartbeat_s`` > 0, also an empty list after that long without data.

        A partition that fails (unknown, out of range) is reported once and then dropped;
        the stream ends when no partition is left.

        Flow control: the next read happens only after the consumer of this generator took
        the previous message (the servicer's ``yield`` returns once gRPC accepted it within
        the stream's HTTP/2 window), so a reader that stops reading holds at most one
        message of ``max_bytes`` here, and the broker stops reading the log for it.
        """
        if max_bytes < 0:
            raise InvalidRequestError("max_bytes must be >= 0")
        if not specs:
            raise InvalidRequestError("a subscription needs at least one partition")
        cfg = self.broker.config
        total_max = min(max_bytes or cfg.fetch_max_bytes, cfg.fetch_max_bytes)
        active = [FetchSpec(s.topic, s.partition, s.offset, s.max_bytes) for s in specs]
        notifier = self.broker.notifier
        if not self.broker.waiter_slots.acquire(blocking=False):
            raise RequestTimedOutError("too many concurrent subscriptions; retry later")
        beat_at = time.monotonic() + heartbeat_s
        try:
            while active and not notifier.closed:
                keys = [(s.topic, s.partition) for s in active]
                seen = notifier.mark(keys)
                with self.broker.operation():
                    outcomes, _, _ = self._read_all(active, total_max)
                ready = [o for o in outcomes if o.records or o.error is not None]
                caught_up = True
                for spec, o in zip(active, outcomes, strict=True):
                    if o.records:
                        nxt = next_offset_after(o.records)
                        if nxt is not None:
                            spec.offset = max(spec.offset, nxt)
                    if o.error is None and spec.offset < o.high_watermark:
                        caught_up = False
                active = [s for s, o in zip(active, outcomes, strict=True) if o.error is None]
                if ready:
                    yield ready
                    beat_at = time.monotonic() + heartbeat_s
                    if not caught_up or not active:  # none left: the stream ends now
                        continue
                # Read up to the end as of ``seen``: the next read waits for an append
                # (one read per pushed message, not a second, empty one after it).
                if not heartbeat_s:
                    await notifier.wait(keys, seen, idle_wait_s)
                    continue
                # Broadcasts (a topic deleted) wake this loop too, so the heartbeat keeps
                # its own deadline across wake-ups.
                left = beat_at - time.monotonic()
                if left > 0 and await notifier.wait(keys, seen, left):
                    continue
                yield []
                beat_at = time.monotonic() + heartbeat_s
        finally:
            self.broker.waiter_slots.release()

    # -- offsets -----------------------------------------------------------------------------

    def list_offset(self, topic: str, partition: int, timestamp: int) -> tuple[int, int]:
        """(offset, timestamp) for -1 latest, -2 earliest (timestamp -1 for both), or the
        first record whose timestamp is >= ``timestamp`` and that record's timestamp (the
        log end offset and -1 when there is none). The lookup decodes the one batch the time
        index points at (storage ``record_for_timestamp``): fine for this admin path, never
        done on produce or fetch."""
        with self.broker.operation():
            plog = self.broker.get_log(topic, partition)
            if timestamp == LATEST:
                return plog.log_end_offset, -1
            if timestamp == EARLIEST:
                return plog.log_start_offset, -1
            if timestamp < 0:
                raise InvalidRequestError(
                    f"timestamp must be -1 (latest), -2 (earliest) or >= 0, got {timestamp}"
                )
            found = plog.record_for_timestamp(timestamp)
            if found is None:
                return plog.log_end_offset, -1
            return found
