"""Storage of a partition window: the dense rows, the parked table, offsets -> rows.

The base class of :class:`~.window.PartitionWindow` (see its module for the model): it
admits records, slides and parks, and turns request offsets into rows of either table.
It decides nothing about outcomes. Not thread-safe (the group serialises calls).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from logstream.coordinator.queues.columns import (
    AVAILABLE,
    DEAD_PENDING,
    DELAYED,
    DROPPED,
    NO_OWNER,
    REASON_MAX_DELIVERIES,
    Columns,
    ParkedRecords,
    finished_mask,
    slidable_mask,
)
from logstream.coordinator.queues.results import FINISHED, NOT_IN_WINDOW, OK, REPEATED, as_offsets

NEVER = np.iinfo(np.int64).max
_SLIDABLE = slidable_mask(np.arange(256, dtype=np.uint8)).tolist()
SCAN_CHUNK = 4096
MAX_PARKED = 1_000_000
"""Delayed records one partition window parks at most (~60 MiB). Past it the window stops
sliding at the next delayed record: memory stays bounded, and records behind wait until
parked ones come due (or the window's own room is used up)."""


def with_slack(capacity: int) -> int:
    """Rows to allocate for a window of ``capacity`` records: a quarter more (at least
    256), so rows are shifted down once per that many admitted records, not on every
    admit of a full window."""
    return capacity + max(capacity // 4, 256)


@dataclass(frozen=True)
class Located:
    offsets: np.ndarray
    codes: np.ndarray  # OK where the offset is addressable (still to be checked further)
    dense_pos: np.ndarray  # request positions found in the dense window ...
    dense_rows: np.ndarray  # ... and their rows
    park_pos: np.ndarray
    park_rows: np.ndarray


_NO_ROWS = np.zeros(0, np.int64)
_NO_ROWS.flags.writeable = False


class WindowTables:
    """Rows of one partition's window: dense ``[start, end)`` plus the parked table."""

    def __init__(
        self,
        start_offset: int,
        *,
        capacity: int,
        max_deliveries: int,
        key_ordered: bool = False,
        auto_ack: bool = False,
        drop_expired: bool = False,
    ) -> None:
        self.max_deliveries = max_deliveries
        self.key_ordered = key_ordered
        self.auto_ack = auto_ack
        self.drop_expired = drop_expired
        self.max_parked = MAX_PARKED
        self._base = self._start = self._end = start_offset
        self._capacity = capacity  # records the window takes (room); rows have slack
        self._d = Columns(with_slack(capacity))
        self._p = ParkedRecords()
        self._next_due = NEVER  # lower bound of every time at which tick() has work
        self._hint = 0  # no dense row below this one is AVAILABLE
        self.texts: dict[int, str] = {}  # reason text of DEAD_PENDING records, by offset
        self.dead_pending = False  # some record may be in DEAD_PENDING (the group clears it)
        self.acked_total = self.dead_total = self.dropped_total = self.redelivered_total = 0
        self.expired_total = 0  # expired while waiting (then dead-lettered or dropped)
        self.lost_total = 0  # records retention deleted before they were finished
        # The window started over (its topic deleted) then: dead letters of the partition
        # written at or before it are the deleted topic's (0: never started over).
        self.since_ms = 0

    # ---- shape ---------------------------------------------------------------------------

    @property
    def start_offset(self) -> int:
        return self._start

    @property
    def end_offset(self) -> int:
        return self._end

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def room(self) -> int:
        """How many more records :meth:`admit` takes now."""
        return self.capacity - (self._end - self._start)

    @property
    def next_due_ms(self) -> int:
        """No :meth:`tick` before this time has anything to do (a timer sleeps until it)."""
        return int(self._next_due)

    @property
    def parked_count(self) -> int:
        return self._p.size

    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self._d.arrays())) + self._p.nbytes()

    def tables(self) -> list[tuple[Columns, int, int, np.ndarray | None]]:
        """(columns, first row, end row, parked offsets or None for the dense window)."""
        return [
            (self._p.cols, 0, self._p.size, self._p.offsets),
            (self._d, self._start - self._base, self._end - self._base, None),
        ]

    # ---- admission and sliding ------------------------------------------------------------

    def admit(
        self,
        count: int,
        *,
        ts_ms: np.ndarray | None = None,
        keys: np.ndarray | None = None,
        keyed: np.ndarray | None = None,
        deliver_at_ms: np.ndarray | None = None,
        expires_at_ms: np.ndarray | None = None,
        grow: bool = False,
    ) -> int:
        """Take the next ``count`` records of the log (offsets ``end, end+1, ...``) into the
        window, as many as there is room for (all of them with ``grow``, used by replay).
        Per-record arrays are optional: ``keys`` (u64 hashes; ``keyed`` False for records
        without a key), ``deliver_at_ms`` (0 = now), ``expires_at_ms`` (0 = never).
        Returns how many were admitted."""
        n = count if grow else min(count, self.room)
        if n <= 0:
            return 0
        self._make_room(n)
        lo = self._end - self._base
        hi = lo + n
        d = self._d
        d.reset_rows(lo, hi)
        if ts_ms is not None:
            d.ts_ms[lo:hi] = ts_ms[:n]
        if keys is not None:
            d.key[lo:hi] = keys[:n]
            d.keyed[lo:hi] = 1 if keyed is None else keyed[:n]
        if deliver_at_ms is not None:
            at = np.asarray(deliver_at_ms[:n], np.int64)
            later = at > 0
            d.state[lo:hi][later] = DELAYED
            d.due_ms[lo:hi] = np.where(later, at, 0)
            if later.any():
                self._next_due = min(self._next_due, int(at[later].min()))
        if expires_at_ms is not None:
            exp = np.asarray(expires_at_ms[:n], np.int64)
            d.expires_ms[lo:hi] = exp
            if (exp > 0).any():
                self._next_due = min(self._next_due, int(exp[exp > 0].min()))
        self._hint = min(self._hint, lo)
        self._end += n
        return n

    def _make_room(self, n: int) -> None:
        used = self._end - self._base
        if used + n <= self._d.capacity:
            return
        live = self._end - self._start
        if live + n > self._d.capacity:  # only replay (grow=True) gets here
            self._d = self._d.resized(with_slack(max(live + n, 2 * self._capacity)), used)
        shift = self._start - self._base
        if shift:
            self._d.move_rows(shift, used, 0)
            self._d.reset_rows(live, used)
            self._base = self._start
            self._hint = max(self._hint - shift, 0)

    def advance(self) -> int:
        """Slide ``start`` over the prefix of finished and delayed records, parking the
        delayed ones. Returns the new start offset."""
        s, e = self._start - self._base, self._end - self._base
        pos = s
        if pos < e and not _SLIDABLE[self._d.state[pos]]:
            e = pos  # the usual case: the first record is not finished (one lookup)
        while pos < e:
            seg = slidable_mask(self._d.state[pos : min(pos + SCAN_CHUNK, e)])
            if seg.all():
                pos += len(seg)
            else:
                pos += int(np.argmin(seg))
                break
        if pos > s:
            delayed = s + np.flatnonzero(self._d.state[s:pos] == DELAYED)
            free = max(self.max_parked - self._p.size, 0)
            if len(delayed) > free:  # full: stop at the first delayed record that does not fit
                pos = int(delayed[free])
                delayed = delayed[:free]
            if len(delayed):
                self._p.append(self._base + delayed, self._d.take(delayed))
            self._start = self._base + pos
        if self._p.size and finished_mask(self._p.cols.state[: self._p.size]).any():
            self._p.compact()
        return self._start

    def skip_to(self, offset: int, lost: np.ndarray | None = None) -> np.ndarray:
        """The log no longer holds records below ``offset`` (retention deleted them):
        records waiting below it (available or delayed) are finished as lost, and if the
        window had not reached ``offset`` it jumps there, counting the records it never
        read as lost too. Records held by a member or waiting for the dead-letter write
        stay tracked (parked, when the window jumps). ``lost`` names exactly the offsets to
        mark instead (unfinished ones only): replay passes what was marked at the time, a
        fetch the acquired records whose data was gone. Returns the offsets marked lost."""
        if lost is None:
            marked = self._waiting_below(offset)
        else:
            loc = self.locate(lost)
            loc.codes[(loc.codes == OK) & finished_mask(self.gather(loc, "state"))] = FINISHED
            marked = loc.offsets[loc.codes == OK]
        loc = self.locate(marked)
        for cols, rows, _ in self.parts(loc):
            cols.state[rows] = DROPPED
            cols.owner[rows] = NO_OWNER
        self.lost_total += len(marked)
        if self._end < offset:
            s, e = self._start - self._base, self._end - self._base
            keep = s + np.flatnonzero(~finished_mask(self._d.state[s:e]))
            if len(keep):
                self._p.append(self._base + keep, self._d.take(keep))
            self._d.reset_rows(0, e)
            self.lost_total += offset - self._end
            self._base = self._start = self._end = offset
            self._hint = 0
        self.advance()
        return marked

    def _waiting_below(self, offset: int) -> np.ndarray:
        out = []
        for cols, lo, hi, parked_offsets in self.tables():
            if parked_offsets is None:
                hi = max(lo, min(hi, offset - self._base))
                offs = self._base + np.arange(lo, hi, dtype=np.int64)
            else:
                offs = parked_offsets[lo:hi]
            st = cols.state[lo:hi]
            out.append(offs[((st == AVAILABLE) | (st == DELAYED)) & (offs < offset)])
        return np.sort(np.concatenate(out))

    def park(self, offsets: np.ndarray, rows: dict[str, np.ndarray]) -> None:
        """Add rows below ``start`` to the parked table (restore only; ascending offsets
        above every parked one)."""
        self._p.append(offsets, rows)

    def locate(self, offsets: object) -> Located:
        offs = as_offsets(offsets)
        n = len(offs)
        ascending = n < 2 or bool((offs[1:] > offs[:-1]).all())
        if n and ascending and int(offs[0]) >= self._start and int(offs[-1]) < self._end:
            # the usual settlement: ascending offsets, all in the dense window
            rows = offs - self._base
            return Located(offs, np.full(n, OK, np.int16), np.arange(n), rows, _NO_ROWS, _NO_ROWS)
        codes = np.full(n, NOT_IN_WINDOW, np.int16)
        dense = (offs >= self._start) & (offs < self._end)
        below = (offs >= 0) & (offs < self._start)
        codes[below] = FINISHED
        codes[dense] = OK
        park_rows = np.full(n, -1, np.int64)
        if self._p.size and below.any():
            b = np.flatnonzero(below)
            park_rows[b] = self._p.find(offs[b])
            codes[park_rows >= 0] = OK
        if not ascending:  # strictly ascending: no repeats
            order = np.argsort(offs, kind="stable")
            repeat = np.zeros(n, bool)
            repeat[order[1:][offs[order][1:] == offs[order][:-1]]] = True
            codes[repeat] = REPEATED
        dense_pos = np.flatnonzero(dense & (codes == OK))
        park_pos = np.flatnonzero((park_rows >= 0) & (codes == OK))
        return Located(
            offs, codes, dense_pos, offs[dense_pos] - self._base, park_pos, park_rows[park_pos]
        )

    def gather(self, loc: Located, name: str) -> np.ndarray:
        dense_col = getattr(self._d, name)
        out = np.zeros(len(loc.offsets), dense_col.dtype)
        out[loc.dense_pos] = dense_col[loc.dense_rows]
        out[loc.park_pos] = getattr(self._p.cols, name)[loc.park_rows]
        return out

    def parts(self, loc: Located) -> list[tuple[Columns, np.ndarray, np.ndarray]]:
        """(columns, rows, request positions) of the offsets still OK, per table."""
        d_ok = loc.codes[loc.dense_pos] == OK
        p_ok = loc.codes[loc.park_pos] == OK
        return [
            (self._d, loc.dense_rows[d_ok], loc.dense_pos[d_ok]),
            (self._p.cols, loc.park_rows[p_ok], loc.park_pos[p_ok]),
        ]

    def _free(self, cols: Columns, rows: np.ndarray) -> None:
        """Records whose holder let go (lease out, release): available again with their
        count kept, or to the dead-letter path once delivered ``max_deliveries`` times."""
        dead = cols.deliveries[rows] >= self.max_deliveries
        cols.state[rows] = np.where(dead, DEAD_PENDING, AVAILABLE)
        cols.reason[rows[dead]] = REASON_MAX_DELIVERIES
        cols.owner[rows] = NO_OWNER
        self.dead_pending |= bool(dead.any())
        expiring = cols.expires_ms[rows]
        if (expiring > 0).any():
            self._next_due = min(self._next_due, int(expiring[expiring > 0].min()))
        if cols is self._d:
            self._hint = 0

    def resize(self, capacity: int) -> None:
        """Change how many records the window holds; never below what it holds now."""
        live = self._end - self._start
        used = self._end - self._base
        shift = self._start - self._base
        if shift:
            self._d.move_rows(shift, used, 0)
            self._d.reset_rows(live, used)
            self._base = self._start
            self._hint = max(self._hint - shift, 0)
        self._capacity = max(capacity, live)
        self._d = self._d.resized(with_slack(self._capacity), live)

    def force_tick(self) -> None:
        """Make the next :meth:`tick` scan everything (after a restore)."""
        self._next_due = np.iinfo(np.int64).min
        self._hint = 0
