"""The in-flight window of one partition of a queue group.

::

    offsets:  ... finished ... | start | in-flight window (at most `capacity` records) | end ...
    parked:   delayed records below `start`, in a small sorted side table

``start`` is the window's slide point: every record below it is finished (acked, dead-
lettered, dropped) or **parked**. ``end`` is the next offset to be admitted (read from the
log). Each record in ``[start, end)`` has a row in numpy columns (:mod:`.columns`) at
``offset - base``; ``base <= start`` and rows are shifted down in bulk when room runs out,
so the cost of a slide is amortised over many records.

Parking: a delayed record (nacked with a backoff, or produced with a ``deliver_at_ms`` in
the future) does not hold the window: :meth:`advance` slides over it and moves its row to
the parked table (appended at the end: parked offsets only grow). A parked record is still
addressable by offset (ack, nack, ...) and is handed out from there when due, lower offsets
first. So a bounded window keeps moving past records delayed for hours; the parked table
costs 41 bytes per record and holds only delayed (or acquired-after-delay) records.

Handing out (:meth:`acquire`): the available, due records in offset order, parked first
(their offsets are lower). Key-ordered windows hand out, per key, only the first unfinished
record of that key (``head``), and only when no record of that key is acquired or waiting
out a nack backoff. A record scheduled for later (``deliver_at_ms``, never delivered) does
not hold its key back; once due it takes its turn (waiting if its key is busy).

Time never passes inside a window: every method that depends on it takes ``now_ms``, and
:meth:`tick` applies what became due (leases run out, delays end, records expire).
Records to be dead-lettered wait in state DEAD_PENDING until the group has written them to
the dead-letter topic and calls :meth:`mark_dead`.

Not thread-safe: the owning :class:`~.group.QueueGroup` serialises calls.
"""

from __future__ import annotations

import numpy as np

from logstream.coordinator.queues.columns import (
    ACKED,
    ACQUIRED,
    AVAILABLE,
    DEAD,
    DEAD_PENDING,
    DELAYED,
    DROPPED,
    NO_OWNER,
    REASON_EXPIRED,
    REASON_MAX_DELIVERIES,
    REASON_REJECTED,
    finished_mask,
)
from logstream.coordinator.queues.results import FINISHED, NOT_HELD, OK, OpResult, as_offsets
from logstream.coordinator.queues.settings import EXPIRED_DROP, Backoff, QueueSettings
from logstream.coordinator.queues.tables import NEVER, SCAN_CHUNK, Located, WindowTables


class PartitionWindow(WindowTables):
    """State of one partition for one queue group; see the module docstring."""

    @classmethod
    def for_settings(cls, start_offset: int, s: QueueSettings) -> PartitionWindow:
        """An empty window at ``start_offset`` behaving as ``s`` says."""
        return cls(
            start_offset,
            capacity=s.window_size,
            max_deliveries=s.max_deliveries,
            key_ordered=s.key_ordered,
            auto_ack=s.auto_ack,
            drop_expired=s.expired_action == EXPIRED_DROP,
        )

    def configure(self, s: QueueSettings) -> None:
        """Adopt changed group settings (the window size never drops below what it holds)."""
        self.max_deliveries = s.max_deliveries
        self.key_ordered = s.key_ordered
        self.auto_ack = s.auto_ack
        self.drop_expired = s.expired_action == EXPIRED_DROP
        if s.window_size != self.capacity:
            self.resize(s.window_size)

    # ---- time ----------------------------------------------------------------------------

    def tick(self, now_ms: int) -> None:
        """Apply what is due at ``now_ms``: run-out leases free their records (or send them
        to the dead-letter path at ``max_deliveries``), delays end, records expire."""
        if now_ms < self._next_due:
            return
        next_due = NEVER
        for cols, lo, hi, _ in self.tables():
            st = cols.state[lo:hi]
            due = cols.due_ms[lo:hi]
            out = np.flatnonzero((st == ACQUIRED) & (due <= now_ms))
            if len(out):
                self._free(cols, out + lo)
            st[(st == DELAYED) & (due <= now_ms)] = AVAILABLE
            exp = cols.expires_ms[lo:hi]
            waiting = (st == AVAILABLE) | (st == DELAYED)
            gone = np.flatnonzero(waiting & (exp > 0) & (exp <= now_ms))
            if len(gone):
                self.expired_total += len(gone)
                if self.drop_expired:
                    st[gone] = DROPPED
                    self.dropped_total += len(gone)
                else:
                    st[gone] = DEAD_PENDING
                    self.dead_pending = True
                    cols.reason[lo + gone] = REASON_EXPIRED
            timed = (st == ACQUIRED) | (st == DELAYED)
            if timed.any():
                next_due = min(next_due, int(due[timed].min()))
            pending = ((st == AVAILABLE) | (st == DELAYED)) & (exp > 0)
            if pending.any():
                next_due = min(next_due, int(exp[pending].min()))
        self._next_due = next_due
        self._hint = 0

    # ---- handing out ---------------------------------------------------------------------

    def acquire(self, member: int, max_records: int, now_ms: int, lease_ms: int) -> np.ndarray:
        """Hand up to ``max_records`` available, due records to ``member`` under a lease
        ending at ``now_ms + lease_ms`` (in no-ACK mode they are acknowledged at once).
        Returns their offsets, ascending."""
        return self.acquire_counted(member, max_records, now_ms, lease_ms)[0]

    def acquire_counted(
        self, member: int, max_records: int, now_ms: int, lease_ms: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`acquire`, also returning each record's delivery count (1 = first)."""
        self.tick(now_ms)
        if max_records <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.uint16)
        if self.key_ordered:
            prows, drows = self._key_heads(max_records)
        else:
            prows = np.flatnonzero(self._p.cols.state[: self._p.size] == AVAILABLE)
            prows = prows[:max_records]
            drows = self._scan_available(max_records - len(prows))
        for cols, rows in ((self._p.cols, prows), (self._d, drows)):
            if len(rows) == 0:
                continue
            cols.deliveries[rows] += 1
            self.redelivered_total += int((cols.deliveries[rows] > 1).sum())
            if self.auto_ack:
                cols.state[rows] = ACKED
                self.acked_total += len(rows)
            else:
                cols.state[rows] = ACQUIRED
                cols.owner[rows] = member
                cols.due_ms[rows] = now_ms + lease_ms
                self._next_due = min(self._next_due, now_ms + lease_ms)
        offsets = np.concatenate((self._p.offsets[prows], self._base + drows))
        return offsets, np.concatenate((self._p.cols.deliveries[prows], self._d.deliveries[drows]))

    def waiting_estimate(self) -> int:
        """About how many records of the window are still to be handed out: those at or
        after where the last in-order acquire stopped (an over-estimate after a tick, which
        restarts the scan; parked records are not counted). A prefetch hint, no more."""
        return max(self._end - max(self._base + self._hint, self._start), 0)

    def _scan_available(self, want: int) -> np.ndarray:
        lo = max(self._hint, self._start - self._base)
        hi = self._end - self._base
        found: list[np.ndarray] = []
        pos = lo
        chunk = max(4 * want, SCAN_CHUNK)
        while pos < hi and want > 0:
            seg = self._d.state[pos : min(pos + chunk, hi)]
            rows = np.flatnonzero(seg == AVAILABLE)[:want] + pos
            found.append(rows)
            want -= len(rows)
            pos += len(seg)
        out = np.concatenate(found) if found else np.zeros(0, np.int64)
        if want > 0:  # scanned to the end: nothing below `hi` is available any more
            self._hint = hi
        elif len(out):  # rows below the last one taken were taken or not available
            self._hint = int(out[-1]) + 1
        return out

    def _key_heads(self, want: int) -> tuple[np.ndarray, np.ndarray]:
        psize = self._p.size
        s, e = self._start - self._base, self._end - self._base
        p, d = self._p.cols, self._d
        state = np.concatenate((p.state[:psize], d.state[s:e]))
        keyed = np.concatenate((p.keyed[:psize], d.keyed[s:e])) != 0
        key = np.concatenate((p.key[:psize], d.key[s:e]))
        retried = np.concatenate((p.deliveries[:psize], d.deliveries[s:e])) > 0
        avail = state == AVAILABLE
        busy = (state == ACQUIRED) | ((state == DELAYED) & retried)
        cand = avail & ~keyed
        holders = np.flatnonzero(keyed & (avail | busy))
        if len(holders):
            _, first = np.unique(key[holders], return_index=True)
            heads = holders[first]
            blocked = np.unique(key[keyed & busy])
            ok = avail[heads] & ~np.isin(key[heads], blocked)
            cand[heads[ok]] = True
        rows = np.flatnonzero(cand)[:want]
        return rows[rows < psize], rows[rows >= psize] - psize + s

    # ---- outcomes reported by members ----------------------------------------------------

    def _held(self, member: int, offsets: object) -> Located:
        """Locate offsets and refuse those ``member`` does not hold."""
        loc = self.locate(offsets)
        state = self.gather(loc, "state")
        owner = self.gather(loc, "owner")
        valid = loc.codes == OK
        done = valid & (finished_mask(state) | (state == DEAD_PENDING))
        loc.codes[done] = FINISHED
        loc.codes[valid & ~done & ~((state == ACQUIRED) & (owner == member))] = NOT_HELD
        return loc

    def ack(self, member: int, offsets: object) -> OpResult:
        """Finish records held by ``member``."""
        offs = as_offsets(offsets)
        if len(offs) == 1 and self._start <= (offset := int(offs[0])) < self._end:
            # One record in the dense window, held (a responder's ack per request): the
            # same outcome as below without its dozen array passes over one element.
            d, row = self._d, offset - self._base
            if d.state[row] == ACQUIRED and d.owner[row] == member:
                d.state[row] = ACKED
                d.owner[row] = NO_OWNER
                self.acked_total += 1
                return OpResult(offs, np.full(1, OK, np.int16))
        loc = self._held(member, offs)
        for cols, rows, _ in self.parts(loc):
            cols.state[rows] = ACKED
            cols.owner[rows] = NO_OWNER
            self.acked_total += len(rows)
        return OpResult(loc.offsets, loc.codes)

    def nack(
        self,
        member: int,
        offsets: object,
        now_ms: int,
        backoff: Backoff,
        delay_ms: int | None = None,
        reason_text: str = "",
    ) -> OpResult:
        """Give records back for redelivery after ``delay_ms`` (default: the backoff for
        their delivery count). Records already delivered ``max_deliveries`` times go to the
        dead-letter path instead. ``extra`` holds each due time (-1: dead-lettered)."""
        loc = self._held(member, offsets)
        extra = np.full(len(loc.offsets), -1, np.int64)
        for cols, rows, pos in self.parts(loc):
            deliveries = cols.deliveries[rows]
            if delay_ms is None:
                due = now_ms + backoff.delay_ms(deliveries)
            else:
                due = np.full(len(rows), now_ms + delay_ms, np.int64)
            dead = deliveries >= self.max_deliveries
            cols.owner[rows] = NO_OWNER
            waiting = np.where(due > now_ms, DELAYED, AVAILABLE)
            cols.state[rows] = np.where(dead, DEAD_PENDING, waiting)
            cols.due_ms[rows] = due
            cols.reason[rows[dead]] = REASON_MAX_DELIVERIES
            self.dead_pending |= bool(dead.any())
            extra[pos] = np.where(dead, -1, due)
            if reason_text:
                self.texts.update(dict.fromkeys(loc.offsets[pos[dead]].tolist(), reason_text))
            if len(rows) and (~dead).any():
                self._next_due = min(self._next_due, int(due[~dead].min()))
        self._hint = 0
        return OpResult(loc.offsets, loc.codes, extra)

    def reject(self, member: int, offsets: object, reason_text: str = "") -> OpResult:
        """Send records held by ``member`` straight to the dead-letter path."""
        loc = self._held(member, offsets)
        for cols, rows, pos in self.parts(loc):
            cols.state[rows] = DEAD_PENDING
            cols.owner[rows] = NO_OWNER
            cols.reason[rows] = REASON_REJECTED
            self.dead_pending |= len(rows) > 0
            if reason_text:
                self.texts.update(dict.fromkeys(loc.offsets[pos].tolist(), reason_text))
        return OpResult(loc.offsets, loc.codes)

    def extend(self, member: int, offsets: object, now_ms: int, lease_ms: int) -> OpResult:
        """Set the lease of records held by ``member`` to end at ``now_ms + lease_ms``
        (sooner than before, too: a worker may shorten what it asked for)."""
        loc = self._held(member, offsets)
        for cols, rows, _ in self.parts(loc):
            cols.due_ms[rows] = now_ms + lease_ms
        if (loc.codes == OK).any():
            self._next_due = min(self._next_due, now_ms + lease_ms)
        return OpResult(loc.offsets, loc.codes)

    def release(self, member: int) -> np.ndarray:
        """Free everything ``member`` holds at once (it closed or left). Returns offsets."""
        out = []
        for cols, lo, hi, parked_offsets in self.tables():
            rows = lo + np.flatnonzero(
                (cols.state[lo:hi] == ACQUIRED) & (cols.owner[lo:hi] == member)
            )
            if len(rows):
                self._free(cols, rows)
                out.append(self._base + rows if parked_offsets is None else parked_offsets[rows])
        return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)

    # ---- dead-letter path ----------------------------------------------------------------

    def mark_dead(self, offsets: object, reason: int = REASON_REJECTED) -> np.ndarray:
        """Record that these records are in the dead-letter topic. Applies to any
        unfinished record (recovery resolves a crash after the write this way); ``reason``
        is used where none was set. Returns the offsets marked."""
        loc = self.locate(offsets)
        state = self.gather(loc, "state")
        loc.codes[(loc.codes == OK) & finished_mask(state)] = FINISHED
        for cols, rows, _ in self.parts(loc):
            cols.reason[rows] = np.where(cols.reason[rows] == 0, reason, cols.reason[rows])
            cols.state[rows] = DEAD
            cols.owner[rows] = NO_OWNER
        marked: np.ndarray = loc.offsets[loc.codes == OK]
        self.dead_total += len(marked)
        for o in marked.tolist():
            self.texts.pop(o, None)
        return marked
