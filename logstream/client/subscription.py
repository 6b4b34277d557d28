"""What a consumer reads and where it stands: assignment, positions, fetched chunks.

:class:`SubscriptionState` is the one piece of consumer state shared by three parties, all
under its single ``lock``:

- the **application thread** (``Consumer`` methods: ``assign``, ``seek``, ``pause``, ``poll``)
  changes what is read and takes fetched records;
- the **fetcher** (:mod:`logstream.client.fetcher`: its background thread, or the iterating
  thread itself) asks what to fetch and from where, queues decoded chunks and reports errors;
- the **group membership** (:mod:`logstream.client.membership`): its heartbeat thread reads
  the assignment it reports as owned and wakes a blocked reader when the target changes; on
  the application thread it applies a new assignment and starts partitions at their commits.

Terms. The *position* of a partition is the offset of the next record ``poll`` returns (None:
not known yet, resolved by ``auto_offset_reset``). Its *fetch offset* is where the next fetch
starts (ahead of the position by what is buffered). Its *epoch* is bumped by every change that
makes buffered and in-flight data of the partition stale (seek, pause, reassignment); chunks
carry the epoch they were fetched under, and stale ones are dropped when reached. The
*generation* counts the changes that cancel the in-flight fetch call, so a fetch failing
after a cancel is known to be on purpose.

Conditions on ``lock``: ``data`` (readers wait for chunks, errors or a group change) and
``work`` (the fetcher waits for something to fetch or for room in the buffer). Changes that
make the in-flight fetch stale call the registered :class:`FetchControl` outside the lock, so
it cancels the call at once instead of letting it run to its long-poll end.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from logstream import errors
from logstream.client.chunks import Chunk
from logstream.types import Record, TopicPartition


class FetchControl(Protocol):
    """What the state tells the fetcher (called without the state's lock held)."""

    def cancel_inflight(self) -> None:
        """The running fetch call is stale: cancel it."""
        ...

    def interrupt(self) -> None:
        """A reader blocked on the network must return (a group change is waiting)."""
        ...


class _NoFetcher:
    def cancel_inflight(self) -> None:
        pass

    def interrupt(self) -> None:
        pass


TakeFn = Callable[[Chunk, int], None]
"""``take(chunk, limit)``: consume up to ``limit`` records from the chunk's cursor on."""


class SubscriptionState:
    """Assignment, positions, fetch offsets, epochs, pauses, halts, high watermarks and the
    buffer of fetched chunks of one consumer. See the module docstring for who calls what.

    The fetcher reads the attributes under ``lock``; everything else changes them only
    through the methods below, each of which names its callers and what it affects.
    """

    def __init__(self, *, reset: int | None, max_buffer_bytes: int) -> None:
        self.reset = reset  # auto_offset_reset as a ListOffsets timestamp; None = 'error'
        self.max_buffer_bytes = max_buffer_bytes
        self.lock = threading.Lock()
        self.data = threading.Condition(self.lock)
        self.work = threading.Condition(self.lock)
        self.assignment: list[TopicPartition] = []
        self.positions: dict[TopicPartition, int | None] = {}
        self.fetch_offsets: dict[TopicPartition, int] = {}
        self.epochs: dict[TopicPartition, int] = {}
        self.paused: set[TopicPartition] = set()
        self.halted: set[TopicPartition] = set()  # out of range with no reset policy
        # Stored damage per partition (also halted): raised by every poll once the
        # position reaches its first offset, until a seek moves the partition.
        self.damaged: dict[TopicPartition, errors.CorruptRecordError] = {}
        self.high_watermarks: dict[TopicPartition, int] = {}
        self.buffer: deque[Chunk] = deque()
        self.buffered_bytes = 0
        self.errors: deque[BaseException] = deque()
        self.generation = 0
        self.closed = False
        # Records an iteration took but has not yielded yet; their partitions' positions
        # advance one yielded record at a time (position() and commit() inside the loop).
        self._iter_rest: list[Record] | None = None
        self._iter_next = 0
        self.control: FetchControl = _NoFetcher()

    # -- what is read: the application thread ----------------------------------------------

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Read exactly ``partitions``: kept ones keep their positions, new ones start
        unknown. Caller: ``Consumer.assign``; ``GroupMembership`` applying a new assignment
        (application thread). Affects: assignment, positions, fetch offsets, pauses and
        epochs of dropped partitions; cancels the in-flight fetch."""
        with self.lock:
            self._discard_iteration_rest()
            new = list(dict.fromkeys(partitions))
            for tp in self.assignment:
                if tp not in new:
                    self.positions.pop(tp, None)
                    self.fetch_offsets.pop(tp, None)
                    self.paused.discard(tp)
                    self.damaged.pop(tp, None)
                    self._bump(tp)
            for tp in new:
                self.positions.setdefault(tp, None)
                self.epochs.setdefault(tp, 0)
            self.assignment = new
            self.work.notify()
        self.cancel_inflight()

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Move ``tp``'s position (ignored when it is no longer assigned) and un-halt it.
        Caller: ``Consumer.seek*``; ``GroupMembership`` starting a partition at its commit.
        Affects: the position, halt, epoch and fetch offset of ``tp``; cancels the
        in-flight fetch."""
        with self.lock:
            self._discard_iteration_rest()
            if tp not in self.positions:
                return
            self.positions[tp] = offset
            self.halted.discard(tp)
            self.damaged.pop(tp, None)
            self._bump(tp)
            self.work.notify()
        self.cancel_inflight()

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        """Stop returning and fetching these partitions (positions kept). Caller:
        ``Consumer.pause``. Affects: pauses, epochs; cancels the in-flight fetch."""
        with self.lock:
            self._discard_iteration_rest()
            for tp in partitions:
                if tp in self.positions:
                    self.paused.add(tp)
                    self._bump(tp)
        self.cancel_inflight()

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        """Fetch and return these partitions again. Caller: ``Consumer.resume``. Affects:
        pauses; cancels the in-flight fetch (it does not include them yet)."""
        with self.lock:
            self._discard_iteration_rest()
            self.paused.difference_update(partitions)
            self.work.notify()
        self.cancel_inflight()

    def close(self) -> bool:
        """Stop everything: wake every waiter, drop the buffer. Caller: ``Consumer.close``
        (any thread). Affects: ``closed``, the buffer. False when it already was closed."""
        with self.lock:
            if self.closed:
                return False
            self.closed = True
            self.buffer.clear()
            self.buffered_bytes = 0
            self.work.notify_all()
            self.data.notify_all()
        self.cancel_inflight()
        return True

    # -- snapshots: any thread --------------------------------------------------------------

    def assigned(self) -> list[TopicPartition]:
        """A copy of the assignment. Caller: ``Consumer``, ``GroupMembership`` (both
        threads). Affects: nothing."""
        with self.lock:
            return list(self.assignment)

    def is_assigned(self, tp: TopicPartition) -> bool:
        """Caller: ``Consumer`` checking an argument. Affects: nothing."""
        with self.lock:
            return tp in self.positions

    def position(self, tp: TopicPartition) -> int | None:
        """``tp``'s position (None: unknown). Caller: ``Consumer.position``. Affects:
        nothing."""
        with self.lock:
            return self.positions.get(tp)

    def known_positions(
        self, only: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, int]:
        """The known positions of ``only`` (default: the assignment). Caller:
        ``GroupMembership`` committing positions. Affects: nothing."""
        with self.lock:
            tps = list(only) if only is not None else list(self.assignment)
            return {tp: p for tp in tps if (p := self.positions.get(tp)) is not None}

    def paused_partitions(self) -> set[TopicPartition]:
        """Caller: ``Consumer.paused``. Affects: nothing."""
        with self.lock:
            return set(self.paused)

    def high_watermark(self, tp: TopicPartition) -> int | None:
        """The log end offset the last fetch of ``tp`` saw. Caller: ``Consumer.highwater``.
        Affects: nothing."""
        with self.lock:
            return self.high_watermarks.get(tp)

    # -- taking records: the application thread ---------------------------------------------

    def take(
        self,
        timeout: float,
        max_records: int,
        take: TakeFn,
        *,
        advance: bool = True,
        stop_early: Callable[[], bool] | None = None,
    ) -> None:
        """Hand up to ``max_records`` buffered records to ``take`` (waiting up to ``timeout``
        for the first); raise a queued fetch error once. ``advance=False`` leaves the
        positions to the caller (iteration yields one record at a time). ``stop_early()``
        is True when a group change waits to be applied. Caller: ``Consumer.poll*`` and
        iteration. Affects: the buffer, positions (with ``advance``), queued errors."""
        deadline = time.monotonic() + max(timeout, 0.0)
        remaining = max_records
        taken_to: dict[TopicPartition, int] = {}  # advance=False: where each partition got to
        with self.lock:
            while True:
                if self.errors:
                    raise self.errors.popleft()
                if self.reset is None:
                    self._check_positions()
                while self.buffer and remaining > 0:
                    chunk = self.buffer[0]
                    tp = TopicPartition(chunk.topic, chunk.partition)
                    if (
                        self.epochs.get(tp) != chunk.epoch
                        or tp in self.paused
                        or taken_to.get(tp, self.positions.get(tp)) != chunk.next_offset
                    ):
                        self._drop_head()
                        continue
                    before = chunk.remaining
                    take(chunk, remaining)
                    remaining -= before - chunk.remaining
                    if advance:
                        self.positions[tp] = chunk.next_offset
                    else:
                        taken_to[tp] = chunk.next_offset
                    if chunk.remaining == 0:
                        self._drop_head()
                if remaining < max_records:
                    return
                for tp, damage in self.damaged.items():
                    if taken_to.get(tp, self.positions.get(tp)) == damage.first_offset:
                        raise damage
                if self.closed:
                    raise errors.ClientClosedError("consumer closed")
                if stop_early is not None and stop_early():
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.data.wait(left)

    def yield_positioned(self, records: list[Record]) -> Iterator[Record]:
        """Yield ``records`` (taken with ``advance=False``), advancing each one's partition
        position as it goes; stop early when a change of positions discards the rest.
        Caller: ``Consumer.__iter__``. Affects: positions, one record at a time (written
        without the lock: only the application thread writes a position while it
        iterates, and a dict store is atomic)."""
        positions = self.positions
        self._iter_rest, self._iter_next = records, 0
        key: tuple[str, int] | None = None
        tp = TopicPartition("", 0)
        try:
            while self._iter_rest is records and self._iter_next < len(records):
                rec = records[self._iter_next]
                self._iter_next += 1
                if key != (rec.topic, rec.partition):
                    key = (rec.topic, rec.partition)
                    tp = TopicPartition(*key)
                positions[tp] = rec.offset + 1
                yield rec
        finally:
            if self._iter_rest is records:
                with self.lock:
                    if self._iter_next < len(records):  # generator closed mid-list (break)
                        self._discard_iteration_rest()
                    self._iter_rest = None

    def discard_iteration_rest(self) -> None:
        """An iteration suspended mid-list loses what it has not yielded (the reading moves
        to ``poll`` or to another iteration). Caller: ``Consumer`` (poll, a new iteration).
        Affects: epochs of those records' partitions; the generation."""
        with self.lock:
            self._discard_iteration_rest()

    # -- the fetcher --------------------------------------------------------------------------

    def needs_reset(self) -> list[TopicPartition]:
        """Lock held: assigned, unpaused partitions without a position, when a reset policy
        applies. Caller: the fetcher. Affects: nothing."""
        if self.reset is None:
            return []
        return [
            tp for tp in self.assignment if self.positions.get(tp) is None and tp not in self.paused
        ]

    def fetchable(self) -> list[TopicPartition]:
        """Lock held: the partitions to fetch now (none while the buffer is full). Caller:
        the fetcher. Affects: gives each a fetch offset from its position the first time."""
        if self.buffered_bytes >= self.max_buffer_bytes:
            return []
        out = []
        for tp in self.assignment:
            if tp in self.paused or tp in self.halted:
                continue
            pos = self.positions.get(tp)
            if pos is None:
                continue
            self.fetch_offsets.setdefault(tp, pos)
            out.append(tp)
        return out

    def epochs_of(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]:
        """Caller: the fetcher, before a reset lookup. Affects: nothing."""
        with self.lock:
            return {tp: self.epochs.get(tp) for tp in tps}

    def apply_reset(
        self, found: dict[TopicPartition, int], epochs: dict[TopicPartition, int | None]
    ) -> dict[TopicPartition, int]:
        """Set the positions a reset looked up, unless the partition changed meanwhile;
        returns each partition's position after it. Caller: the fetcher (and
        ``Consumer.position`` through it). Affects: positions and fetch offsets."""
        out = dict(found)
        with self.lock:
            for tp, offset in found.items():
                if self.epochs.get(tp) == epochs[tp] and tp in self.positions:
                    current = self.positions[tp]
                    if current is None:
                        self.positions[tp] = offset
                        self.fetch_offsets[tp] = offset
                        current = offset
                    out[tp] = current
        return out

    def record_high_watermark(self, tp: TopicPartition, offset: int) -> None:
        """Caller: the fetcher, per partition of each answer. Affects: high watermarks
        (a single dict store: no lock needed)."""
        self.high_watermarks[tp] = offset

    def add_chunks(
        self,
        decoded: list[tuple[TopicPartition, list[Chunk], int]],
        epochs: dict[TopicPartition, int],
    ) -> bool:
        """Queue chunks fetched under ``epochs`` (stale ones are dropped) and wake readers.
        Caller: the fetcher. Affects: the buffer, fetch offsets. Returns whether the buffer
        is now full (the fetcher then stops reading until there is room)."""
        with self.lock:
            for tp, chunks, next_offset in decoded:
                if self.epochs.get(tp) != epochs[tp] or self.closed:
                    continue
                self.fetch_offsets[tp] = next_offset
                for c in chunks:
                    self.buffer.append(c)
                    self.buffered_bytes += c.nbytes
            if decoded:
                self.data.notify_all()
            return self.buffered_bytes >= self.max_buffer_bytes

    def lose_position(self, tp: TopicPartition, epoch: int) -> None:
        """Offset out of range with a reset policy: forget the position so that it is
        resolved again. Caller: the fetcher. Affects: position and epoch of ``tp``."""
        with self.lock:
            if self.epochs.get(tp) == epoch and tp in self.positions:
                self.positions[tp] = None
                self._bump(tp)

    def halt(self, tp: TopicPartition, epoch: int) -> bool:
        """Offset out of range without a reset policy: stop fetching ``tp`` until a seek.
        Caller: the fetcher. Affects: halts. False when the partition changed since the
        fetch (the error is stale and must not surface)."""
        with self.lock:
            if self.epochs.get(tp) != epoch:
                return False
            self.halted.add(tp)
            return True

    def halt_at_damage(
        self, tp: TopicPartition, epoch: int, damage: errors.CorruptRecordError
    ) -> None:
        """Stored damage at ``damage.first_offset``: stop fetching ``tp`` and raise
        ``damage`` from every poll that reaches it (the records before it are delivered
        first) until a seek. Caller: the fetcher. Affects: halts, damage, wakes readers."""
        with self.lock:
            if self.epochs.get(tp) != epoch:
                return
            self.halted.add(tp)
            self.damaged[tp] = damage
            self.data.notify_all()

    def is_current(self, tp: TopicPartition, epoch: int) -> bool:
        """Caller: the fetcher, before surfacing a partition error. Affects: nothing."""
        with self.lock:
            return self.epochs.get(tp) == epoch

    def push_error(self, exc: BaseException) -> None:
        """Surface ``exc`` at the next poll. Caller: the fetcher. Affects: queued errors."""
        with self.lock:
            if not self.closed:
                self.errors.append(exc)
                self.data.notify_all()

    # -- membership ---------------------------------------------------------------------------

    def wake_readers(self) -> None:
        """A blocked poll (or an iteration waiting on its stream) returns, to apply a group
        change. Caller: the heartbeat thread. Affects: nothing but wake-ups."""
        with self.lock:
            self.data.notify_all()
        self.control.interrupt()

    # -- shared plumbing ----------------------------------------------------------------------

    def cancel_inflight(self) -> None:
        """Not under the lock: make the running fetch stale and cancel it. Caller: the
        methods above; the fetcher handing reading between threads. Affects: the
        generation."""
        self.generation += 1
        self.control.cancel_inflight()

    def _bump(self, tp: TopicPartition) -> None:
        """Lock held: invalidate buffered and in-flight data of ``tp``."""
        self.epochs[tp] = self.epochs.get(tp, 0) + 1
        kept = deque(c for c in self.buffer if (c.topic, c.partition) != tp)
        full = self.buffered_bytes >= self.max_buffer_bytes
        self.buffered_bytes = sum(c.nbytes for c in kept)
        self.buffer = kept
        if full and self.buffered_bytes < self.max_buffer_bytes:
            self.work.notify()  # the fetcher waits for room only when the buffer was full
        pos = self.positions.get(tp)
        if pos is not None:
            self.fetch_offsets[tp] = pos
        else:
            self.fetch_offsets.pop(tp, None)

    def _drop_head(self) -> None:
        """Lock held: drop the oldest chunk."""
        chunk = self.buffer.popleft()
        full = self.buffered_bytes >= self.max_buffer_bytes
        self.buffered_bytes -= chunk.nbytes
        if full and self.buffered_bytes < self.max_buffer_bytes:
            self.work.notify()

    def _discard_iteration_rest(self) -> None:
        """Lock held. Positions change (seek, pause, assign, poll) while an iteration holds
        records it has not yielded yet: drop them, and have their partitions fetched again
        from the position (the last record yielded)."""
        rest = self._iter_rest
        if rest is None:
            return
        self._iter_rest = None
        for tp in {TopicPartition(r.topic, r.partition) for r in rest[self._iter_next :]}:
            if tp in self.positions:
                self._bump(tp)
        self.generation += 1  # the direct stream read past them: reopen it from the positions

    def _check_positions(self) -> None:
        """Lock held; auto_offset_reset='error': every partition needs a position."""
        missing = [
            tp for tp in self.assignment if self.positions.get(tp) is None and tp not in self.paused
        ]
        if missing:
            raise errors.OffsetOutOfRangeError(
                f"no position for {', '.join(map(str, missing))} and auto_offset_reset='error';"
                " seek() first"
            )
