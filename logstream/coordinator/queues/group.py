"""A queue group: settings, members, one window per partition, the state log and the
dead-letter path, behind one object with one method per operation.

Every operation applies to memory at once and appends its state records to a pending list;
:meth:`QueueGroup.flush` hands the pending list to the state log as one append (the group
commit). The caller (the broker) must call ``flush()`` before it answers a request whose
outcome has to survive a crash: before it sends fetched records (so their delivery counts
survive) and before it confirms acks, nacks and rejects. Records are read from the log by
the caller and handed in with :meth:`admit`; the group never touches storage itself.

Time comes from the injected clock only. Not thread-safe: the caller serialises calls
(one lock per group); the methods do no blocking I/O except ``flush()`` and the outbox
writes of the dead-letter path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from logstream.clock import Clock
from logstream.coordinator.queues import statelog, views
from logstream.coordinator.queues.columns import (
    REASON_EXPIRED,
    REASON_NAMES,
    REASON_REJECTED,
    finished_mask,
)
from logstream.coordinator.queues.deadletter import DeadLetter, DeadLetterOutbox
from logstream.coordinator.queues.restore import snapshot
from logstream.coordinator.queues.results import OpResult, as_offsets
from logstream.coordinator.queues.settings import QueueSettings
from logstream.coordinator.queues.statelog import StateLogWriter
from logstream.coordinator.queues.window import PartitionWindow
from logstream.errors import (
    InvalidQueueDelayError,
    UnknownMemberIdError,
    UnknownTopicOrPartitionError,
)

CHECKPOINT_MIN_RECORDS = 10_000
"""Write a checkpoint once this many records (or 4x the tracked rows, if more) were logged
since the last one."""
CHECKPOINT_UNIT_BYTES = 16 * 1024 * 1024
"""Record bytes per append of a checkpoint. One append is one batch of the state log, whose
batches may hold 64 MiB (broker/queue_state.py): a checkpoint of more rows (43 bytes each,
~390,000 rows per unit) goes in several consecutive appends."""


@dataclass(frozen=True)
class Delivery:
    """Records of one partition handed to a member by one acquire."""

    topic: str
    partition: int
    offsets: np.ndarray  # ascending
    delivery_counts: np.ndarray  # 1 on first delivery


@dataclass
class _Partition:
    pid: int
    topic: str
    partition: int
    window: PartitionWindow


class QueueGroup:
    """One queue group; see the module docstring for the durability contract."""

    def __init__(
        self,
        name: str,
        settings: QueueSettings,
        *,
        clock: Clock,
        state_log: StateLogWriter,
        outbox: DeadLetterOutbox,
        log_settings: bool = True,
        checkpoint_unit_bytes: int = CHECKPOINT_UNIT_BYTES,
    ) -> None:
        self.name = name
        self.checkpoint_unit_bytes = checkpoint_unit_bytes
        self._settings = settings
        self._clock = clock
        self._log = state_log
        self._outbox = outbox
        self._parts: list[_Partition] = []
        self._by_tp: dict[tuple[str, int], _Partition] = {}
        self._members: dict[str, int] = {}
        self._next_slot = 0
        self._rotate = 0
        self._pending: list[bytes] = []
        self._since_checkpoint = 0
        self.checkpoint_sequence = 0
        if log_settings:
            self._record(statelog.encode_settings(settings))

    # ---- configuration -------------------------------------------------------------------

    @property
    def settings(self) -> QueueSettings:
        return self._settings

    @property
    def dead_letter_topic(self) -> str:
        return self._settings.dead_letter_topic_for(self.name)

    def configure(self, **changes: object) -> QueueSettings:
        """Change settings (validated as at creation); applies to every partition at once."""
        self._settings = self._settings.replace(**changes)
        self._apply_settings()
        self._record(statelog.encode_settings(self._settings))
        return self._settings

    def _apply_settings(self) -> None:
        for p in self._parts:
            p.window.configure(self._settings)

    def add_partition(self, topic: str, partition: int, start_offset: int) -> None:
        """Start reading ``topic``/``partition`` at ``start_offset`` (the caller resolves
        ``settings.start`` against the log). Adding a known partition changes nothing."""
        if (topic, partition) in self._by_tp:
            return
        self._attach(topic, partition, PartitionWindow.for_settings(start_offset, self._settings))
        pid = len(self._parts) - 1
        self._record(statelog.encode_partition(pid, topic, partition, start_offset))

    def restart_partition(self, topic: str, partition: int, start_offset: int) -> None:
        """``topic`` was deleted: forget what the partition's window holds (waiting and
        in-flight records, counters) and read the topic created again under that name from
        ``start_offset``. Logged as the partition's record once more, which replay takes as a
        fresh window too; with the time, not to take the deleted topic's dead letters for
        the new records at the same offsets at recovery (:meth:`resolve_dead_letters`)."""
        p = self._part(topic, partition)
        p.window = w = PartitionWindow.for_settings(start_offset, self._settings)
        w.since_ms = self._clock.now_ms()
        self._record(statelog.encode_partition(p.pid, topic, partition, start_offset, w.since_ms))

    def _attach(self, topic: str, partition: int, window: PartitionWindow) -> None:
        p = _Partition(len(self._parts), topic, partition, window)
        self._parts.append(p)
        self._by_tp[(topic, partition)] = p

    def partitions(self) -> list[tuple[str, int]]:
        return [(p.topic, p.partition) for p in self._parts]

    def window(self, topic: str, partition: int) -> PartitionWindow:
        return self._part(topic, partition).window

    def _part(self, topic: str, partition: int) -> _Partition:
        try:
            return self._by_tp[(topic, partition)]
        except KeyError:
            raise UnknownTopicOrPartitionError(
                f"queue group {self.name!r} does not read {topic}/{partition}"
            ) from None

    # ---- members -------------------------------------------------------------------------

    def join(self, member_id: str) -> None:
        """Add a member (joining twice is harmless)."""
        if member_id not in self._members:
            self._members[member_id] = self._next_slot
            self._next_slot += 1

    def leave(self, member_id: str) -> int:
        """Remove a member; everything it holds is available again at once (count kept).
        Returns how many records were released."""
        slot = self._slot(member_id)
        released = sum(len(p.window.release(slot)) for p in self._parts)
        del self._members[member_id]
        self._after_change()
        return released

    def members(self) -> list[str]:
        return list(self._members)

    def _slot(self, member_id: str) -> int:
        try:
            return self._members[member_id]
        except KeyError:
            raise UnknownMemberIdError(
                f"{member_id!r} is not a member of queue group {self.name!r}"
            ) from None

    # ---- records in ----------------------------------------------------------------------

    def room(self, topic: str, partition: int) -> tuple[int, int]:
        """(next offset to admit, how many records the window takes now)."""
        w = self._part(topic, partition).window
        w.advance()
        return w.end_offset, w.room

    def admit(
        self,
        topic: str,
        partition: int,
        count: int,
        *,
        ts_ms: np.ndarray | None = None,
        keys: np.ndarray | None = None,
        keyed: np.ndarray | None = None,
        deliver_at_ms: np.ndarray | None = None,
        expires_at_ms: np.ndarray | None = None,
    ) -> int:
        """Take the next ``count`` records of the partition (from :meth:`room`'s offset),
        with optional per-record arrays (see :meth:`PartitionWindow.admit`). Returns how
        many were taken (bounded by the window size)."""
        p = self._part(topic, partition)
        first = p.window.end_offset
        given = {
            "ts_ms": ts_ms,
            "keys": keys,
            "keyed": keyed,
            "deliver_at_ms": deliver_at_ms,
            "expires_at_ms": expires_at_ms,
        }
        arrays = {k: v for k, v in given.items() if v is not None}
        n = p.window.admit(
            count,
            ts_ms=ts_ms,
            keys=keys,
            keyed=keyed,
            deliver_at_ms=deliver_at_ms,
            expires_at_ms=expires_at_ms,
        )
        if n:
            self._record(statelog.encode_admit(p.pid, first, n, arrays))
        return n

    def skip_to(
        self, topic: str, partition: int, log_start: int, lost: np.ndarray | None = None
    ) -> int:
        """Retention deleted the partition's records below ``log_start``: finish the
        waiting ones (or exactly ``lost``: acquired records whose data was gone when the
        broker read them) as lost and move the window there if it lags (see
        :meth:`PartitionWindow.skip_to`). Returns how many records were lost."""
        p = self._part(topic, partition)
        w = p.window
        before = w.lost_total
        lost = w.skip_to(log_start, lost)
        if w.lost_total != before:
            self._record(statelog.encode_skip(p.pid, log_start, lost))
        return w.lost_total - before

    # ---- member operations ---------------------------------------------------------------

    def acquire(
        self, member_id: str, max_records: int, lease_ms: int | None = None
    ) -> list[Delivery]:
        """Hand ``member_id`` up to ``max_records`` records, spread over the partitions
        (each call starts at the next partition, so none starves)."""
        slot = self._slot(member_id)
        lease = self._lease(lease_ms)
        now = self._clock.now_ms()
        out: list[Delivery] = []
        visited: list[_Partition] = []  # the only windows this call changed (ticked)
        left = max_records
        n = len(self._parts)
        for i in range(n):
            if left <= 0:
                break
            p = self._parts[(self._rotate + i) % n]
            visited.append(p)
            offsets, counts = p.window.acquire_counted(slot, left, now, lease)
            if len(offsets):
                left -= len(offsets)
                out.append(Delivery(p.topic, p.partition, offsets, counts))
                self._record(statelog.encode_acquire(p.pid, offsets, self._settings.auto_ack))
        self._rotate = (self._rotate + 1) % max(n, 1)
        self._after_change(*visited)
        return out

    def ack(self, member_id: str, topic: str, partition: int, offsets: object) -> OpResult:
        p, slot = self._part(topic, partition), self._slot(member_id)
        res = p.window.ack(slot, as_offsets(offsets))
        if len(res.ok):
            self._record(statelog.encode_ack(p.pid, res.ok))
        self._after_change(p)
        return res

    def nack(
        self,
        member_id: str,
        topic: str,
        partition: int,
        offsets: object,
        delay_ms: int | None = None,
        reason: str = "",
    ) -> OpResult:
        """Redeliver after ``delay_ms`` (None: the group's backoff for each record's count)."""
        if delay_ms is not None and delay_ms < 0:
            raise InvalidQueueDelayError(f"nack delay_ms must be >= 0, got {delay_ms}")
        p, slot = self._part(topic, partition), self._slot(member_id)
        now = self._clock.now_ms()
        backoff = self._settings.backoff
        res = p.window.nack(slot, as_offsets(offsets), now, backoff, delay_ms, reason)
        ok = res.codes == 0
        for due in np.unique(res.extra[ok & (res.extra >= 0)]).tolist():
            sel = ok & (res.extra == due)
            self._record(statelog.encode_nack(p.pid, res.offsets[sel], due))
        self._after_change(p)
        return res

    def reject(
        self, member_id: str, topic: str, partition: int, offsets: object, reason: str = ""
    ) -> OpResult:
        """Dead-letter records at once (written before this returns)."""
        p, slot = self._part(topic, partition), self._slot(member_id)
        res = p.window.reject(slot, as_offsets(offsets), reason)
        self._after_change(p)
        return res

    def extend(
        self,
        member_id: str,
        topic: str,
        partition: int,
        offsets: object,
        lease_ms: int | None = None,
    ) -> OpResult:
        """Renew leases to end ``lease_ms`` (default: the group's) from now."""
        p, slot = self._part(topic, partition), self._slot(member_id)
        lease = self._lease(lease_ms)
        return p.window.extend(slot, as_offsets(offsets), self._clock.now_ms(), lease)

    def _lease(self, lease_ms: int | None) -> int:
        lease = self._settings.lease_ms if lease_ms is None else lease_ms
        if lease <= 0:
            raise InvalidQueueDelayError(f"lease_ms must be > 0, got {lease}")
        return lease

    # ---- time, dead letters, durability --------------------------------------------------

    def tick(self) -> None:
        """Apply what is due now (leases, delays, expiry) and write pending dead letters.
        The broker calls it from a timer (every ~100 ms) and before describing."""
        now = self._clock.now_ms()
        for p in self._parts:
            p.window.tick(now)
        self._after_change()

    def _after_change(self, *only: _Partition) -> None:
        """Write what waits for the dead-letter topic and slide the windows ``only`` (all
        of them when none is named)."""
        for p in only or self._parts:
            if p.window.dead_pending:
                self._dead_letter(p)
            p.window.advance()

    def _dead_letter(self, p: _Partition) -> None:
        offsets, counts, reasons = views.dead_letter_pending(p.window)
        if len(offsets) == 0:
            p.window.dead_pending = False
            return
        now = self._clock.now_ms()
        topic = self.dead_letter_topic
        texts = p.window.texts
        letters = [
            DeadLetter(
                self.name, topic, p.topic, p.partition, o, c, REASON_NAMES[r], texts.get(o, ""), now
            )
            for o, c, r in zip(offsets.tolist(), counts.tolist(), reasons.tolist(), strict=True)
        ]
        self._outbox.write(letters)
        p.window.mark_dead(offsets)
        p.window.dead_pending = False
        for reason in np.unique(reasons).tolist():
            self._record(statelog.encode_dead(p.pid, offsets[reasons == reason], reason))

    def _record(self, rec: bytes) -> None:
        self._pending.append(rec)

    @property
    def unflushed(self) -> int:
        """State records not yet handed to the state log."""
        return len(self._pending)

    def flush(self) -> int:
        """Append every pending state record as one unit. Returns how many."""
        if not self._pending:
            return 0
        batch, self._pending = self._pending, []
        try:
            self._log.append(batch)
        except BaseException:
            self._pending = batch + self._pending
            raise
        self._since_checkpoint += len(batch)
        return len(batch)

    def checkpoint(self) -> None:
        """Append the whole state as a checkpoint (in units of at most
        ``checkpoint_unit_bytes`` of records, one record at least), then let the log drop
        the rest."""
        self.flush()
        self.checkpoint_sequence += 1
        seq = self.checkpoint_sequence
        recs = [statelog.encode_checkpoint_begin(seq), statelog.encode_settings(self._settings)]
        for p in self._parts:
            snap = snapshot(p.window)
            part = (p.pid, p.topic, p.partition, snap.start_offset, p.window.since_ms)
            recs.append(statelog.encode_partition(*part))
            recs += statelog.encode_window(
                p.pid, snap.start_offset, snap.end_offset, snap.counters, snap.offsets, snap.rows
            )
        recs.append(statelog.encode_checkpoint_end(seq, len(self._parts)))
        self._log.append_checkpoint(_units(recs, self.checkpoint_unit_bytes))
        self._since_checkpoint = 0

    def maybe_checkpoint(self) -> bool:
        """Checkpoint when enough was logged since the last one (see CHECKPOINT_MIN_RECORDS)."""
        tracked = sum(
            p.window.end_offset - p.window.start_offset + p.window.parked_count for p in self._parts
        )
        if self._since_checkpoint < max(CHECKPOINT_MIN_RECORDS, 4 * tracked):
            return False
        self.checkpoint()
        return True

    def each_window(self) -> list[tuple[str, int, PartitionWindow]]:
        return [(p.topic, p.partition, p.window) for p in self._parts]

    def member_slots(self) -> dict[int, str]:
        return {slot: m for m, slot in self._members.items()}

    def now_ms(self) -> int:
        return self._clock.now_ms()

    def attach_recovered(self, topic: str, partition: int, window: PartitionWindow) -> None:
        """Recovery only: add a rebuilt window (its PARTITION record is already logged)."""
        self._attach(topic, partition, window)

    def resolve_dead_letters(self) -> int:
        """Recovery only: mark dead the unfinished records the outbox already holds (a crash
        came between the dead-letter write and its DEAD record), then write the pending
        ones. Returns how many were resolved without a second copy."""
        resolved = 0
        for p in self._parts:
            offsets, state = views.column(p.window, "state")
            live = offsets[~finished_mask(state)]
            if len(live) == 0:
                continue
            since = p.window.since_ms
            have = live[self._outbox.written(self.name, p.topic, p.partition, live, since)]
            if len(have):
                # Records already pending keep their reason. Of the others, those past their
                # expiry were expired; the rest were rejected (the one dead-lettering that
                # replay cannot re-derive from the log).
                all_offsets, expires = views.column(p.window, "expires_ms")
                exp = expires[np.searchsorted(all_offsets, have)]
                expired = (exp > 0) & (exp <= self._clock.now_ms())
                expired_now = p.window.mark_dead(have[expired], REASON_EXPIRED)
                rejected_now = p.window.mark_dead(have[~expired], REASON_REJECTED)
                marked = np.sort(np.concatenate((expired_now, rejected_now)))
                _, reasons = views.column(p.window, "reason")
                all_offsets, _ = views.column(p.window, "state")
                by_reason = reasons[np.searchsorted(all_offsets, marked)]
                for reason in np.unique(by_reason).tolist():
                    self._record(statelog.encode_dead(p.pid, marked[by_reason == reason], reason))
                resolved += len(marked)
            p.window.dead_pending = True
        self._after_change()
        return resolved


def _units(records: list[bytes], limit: int) -> list[list[bytes]]:
    """``records`` in order, cut into runs of at most ``limit`` bytes (a longer record alone)."""
    units: list[list[bytes]] = [[]]
    size = 0
    for rec in records:
        if units[-1] and size + len(rec) > limit:
            units.append([])
            size = 0
        units[-1].append(rec)
        size += len(rec)
    return units
