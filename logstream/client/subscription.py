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
from logstream.client.chunk_buffer import ChunkBuffer
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


class IteratedRecords:
    """The records one ``for record in consumer`` loop took from the buffer (without moving
    the positions) and yields one at a time: each partition's position advances as its
    records go out, so ``position()`` and ``commit()`` inside the loop see the last record
    yielded. Only the iterating thread advances it; :class:`SubscriptionState` stops it,
    under its lock, when a change of positions drops the records not yielded yet."""

    __slots__ = ("next", "records", "stopped")

    def __init__(self, records: list[Record]) -> None:
        self.records = records
        self.next = 0  # index of the next record to yield
        self.stopped = False

    @property
    def done(self) -> bool:
        return self.next >= len(self.records)

    def unyielded_partitions(self) -> set[TopicPartition]:
        return {TopicPartition(r.topic, r.partition) for r in self.records[self.next :]}

    def advancing(self, positions: dict[TopicPartition, int | None]) -> Iterator[Record]:
        """Yield the records, storing each one's next offset as its partition's position
        (a single dict store: the application thread is the only writer while it
        iterates)."""
        records = self.records
        key: tuple[str, int] | None = None
        tp = TopicPartition("", 0)
        while not self.stopped and self.next < len(records):
            rec = records[self.next]
            self.next += 1
            if key != (rec.topic, rec.partition):
                key = (rec.topic, rec.partition)
                tp = TopicPartition(*key)
            positions[tp] = rec.offset + 1
            yield rec


class Halts:
    """Partitions the fetcher stopped until the application seeks them: out of range with no
    reset policy, or stored damage (``damage``: raised by every poll once the position
    reaches its first offset; the records before it are delivered first). Not thread-safe:
    :class:`SubscriptionState` uses it under its lock."""

    __slots__ = ("damage", "stopped")

    def __init__(self) -> None:
        self.stopped: set[TopicPartition] = set()
        self.damage: dict[TopicPartition, errors.CorruptRecordError] = {}

    def __contains__(self, tp: TopicPartition) -> bool:
        return tp in self.stopped

    def stop(self, tp: TopicPartition, damage: errors.CorruptRecordError | None = None) -> None:
        self.stopped.add(tp)
        if damage is not None:
            self.damage[tp] = damage

    def clear(self, tp: TopicPartition) -> None:
        """A seek moved ``tp``: fetch it again."""
        self.stopped.discard(tp)
        self.damage.pop(tp, None)


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
        self.lock = threading.Lock()
        self.data = threading.Condition(self.lock)
        self.work = threading.Condition(self.lock)
        self.assignment: list[TopicPartition] = []
        self.positions: dict[TopicPartition, int | None] = {}
        self.fetch_offsets: dict[TopicPartition, int] = {}
        self.epochs: dict[TopicPartition, int] = {}
        self.paused: set[TopicPartition] = set()
        self.halts = Halts()
        self.high_watermarks: dict[TopicPartition, int] = {}
        self.buffer = ChunkBuffer(max_buffer_bytes)
        self.errors: deque[BaseException] = deque()
        self.generation = 0
        self.closed = False
        self._iteration: IteratedRecords | None = None
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
                    self.halts.damage.pop(tp, None)
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
            self.halts.clear(tp)
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
                    chunk = self.buffer.head()
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
                for tp, damage in self.halts.damage.items():
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
        iteration = self._iteration = IteratedRecords(records)
        try:
            yield from iteration.advancing(self.positions)
        finally:
            if self._iteration is iteration:
                with self.lock:
                    if not iteration.done:  # generator closed mid-list (break)
                        self._discard_iteration_rest()
                    self._iteration = None

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
        return [] if self.reset is None else self._unpositioned()

    def fetchable(self) -> list[TopicPartition]:
        """Lock held: the partitions to fetch now (none while the buffer is full). Caller:
        the fetcher. Affects: gives each a fetch offset from its position the first time."""
        if self.buffer.full:
            return []
        out = []
        for tp in self.assignment:
            if tp in self.paused or tp in self.halts:
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
                self.buffer.add(chunks)
            if decoded:
                self.data.notify_all()
            return self.buffer.full

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
            self.halts.stop(tp)
            return True

    def halt_at_damage(
        self, tp: TopicPartition, epoch: int, damage: errors.CorruptRecordError
    ) -> None:
        """Stored damage at ``damage.first_offset``: stop fetching ``tp`` and raise
        ``damage`` from every poll that reaches it (the records before it are delivered
        first) until a seek. The first damage of an epoch stays: stream answers already
        on their way for later offsets do not follow from the halted position and would
        otherwise replace it with a framing error that names no end.
        Caller: the fetcher. Affects: halts, damage, wakes readers."""
        with self.lock:
            if self.epochs.get(tp) != epoch or tp in self.halts.damage:
                return
            self.halts.stop(tp, damage)
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
        if self.buffer.drop_partition(tp):
            self.work.notify()  # the fetcher waits for room only when the buffer was full
        pos = self.positions.get(tp)
        if pos is not None:
            self.fetch_offsets[tp] = pos
        else:
            self.fetch_offsets.pop(tp, None)

    def _drop_head(self) -> None:
        """Lock held: drop the oldest chunk."""
        if self.buffer.drop_head():
            self.work.notify()

    def _discard_iteration_rest(self) -> None:
        """Lock held. Positions change (seek, pause, assign, poll) while an iteration holds
        records it has not yielded yet: drop them, and have their partitions fetched again
        from the position (the last record yielded)."""
        iteration, self._iteration = self._iteration, None
        if iteration is None:
            return
        iteration.stopped = True
        for tp in iteration.unyielded_partitions():
            if tp in self.positions:
                self._bump(tp)
        self.generation += 1  # the direct stream read past them: reopen it from the positions

    def _unpositioned(self) -> list[TopicPartition]:
        """Lock held: assigned, unpaused partitions without a position."""
        return [
            tp for tp in self.assignment if self.positions.get(tp) is None and tp not in self.paused
        ]

    def _check_positions(self) -> None:
        """Lock held; auto_offset_reset='error': every partition needs a position."""
        if missing := self._unpositioned():
            raise errors.OffsetOutOfRangeError(
                f"no position for {', '.join(map(str, missing))} and auto_offset_reset='error';"
                " seek() first"
            )
