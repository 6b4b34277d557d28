"""Per-record state of a queue group's partition, kept as parallel numpy columns.

One row per record, no Python object per record. Two tables use the same columns:

- the **dense** window, where a row's offset is implicit (``base + row``) and rows are
  preallocated up to the window capacity;
- the **parked** table, sparse, with an explicit ``offsets`` column sorted ascending, for
  delayed records the window has slid past (see :mod:`.window`).

Columns (dtype, meaning)::

    state       u8   one of the STATE_* constants below
    owner       i32  member slot holding the record (ACQUIRED only), else NO_OWNER
    due_ms      i64  ACQUIRED: lease deadline; DELAYED: when it becomes available
    deliveries  u16  how many times the record was handed out
    key         u64  hash of the record key (key-ordered groups)
    keyed       u8   1 if the record has a key (unkeyed records never wait for each other)
    expires_ms  i64  expiry time (TTL), 0 = never
    reason      u8   why a record is (to be) dead-lettered: REASON_* below
    ts_ms       i64  the record's timestamp, for the age of the oldest unfinished record

Not thread-safe: the owning window is used under its group's lock.
"""

from __future__ import annotations

import numpy as np

AVAILABLE = 0
"""Can be acquired now (or as soon as a member asks)."""
ACQUIRED = 1
"""Handed to a member under a lease that ends at ``due_ms``."""
DELAYED = 2
"""Not to be handed out before ``due_ms``: nacked with a backoff, or scheduled by the
producer (``deliver_at_ms``; then ``deliveries`` is 0)."""
ACKED = 3
"""Finished by an acknowledgement (or handed out in no-ACK mode)."""
DEAD = 4
"""Finished: written to the dead-letter topic."""
DEAD_PENDING = 5
"""Decided to be dead-lettered; waiting for the dead-letter write to complete."""
DROPPED = 6
"""Finished: expired and dropped (groups set to drop expired records)."""

STATE_NAMES = ("available", "acquired", "delayed", "acked", "dead", "dead-pending", "dropped")
FINISHED_STATES = (ACKED, DEAD, DROPPED)

NO_OWNER = -1

REASON_NONE = 0
REASON_REJECTED = 1
REASON_MAX_DELIVERIES = 2
REASON_EXPIRED = 3
REASON_NAMES = ("", "rejected", "max-deliveries", "expired")

_LUT_FINISHED = np.zeros(256, dtype=bool)
_LUT_FINISHED[list(FINISHED_STATES)] = True
_LUT_SLIDABLE = _LUT_FINISHED.copy()
_LUT_SLIDABLE[DELAYED] = True


def finished_mask(state: np.ndarray) -> np.ndarray:
    """True where the state is final (acked, dead, dropped)."""
    mask: np.ndarray = _LUT_FINISHED[state]
    return mask


def slidable_mask(state: np.ndarray) -> np.ndarray:
    """True where the window may slide past the row: final, or delayed (then parked)."""
    mask: np.ndarray = _LUT_SLIDABLE[state]
    return mask


class Columns:
    """The parallel arrays of one table, all of length ``capacity``."""

    __slots__ = (
        "deliveries",
        "due_ms",
        "expires_ms",
        "key",
        "keyed",
        "owner",
        "reason",
        "state",
        "ts_ms",
    )

    NAMES = __slots__

    def __init__(self, capacity: int) -> None:
        self.state = np.zeros(capacity, np.uint8)
        self.owner = np.full(capacity, NO_OWNER, np.int32)
        self.due_ms = np.zeros(capacity, np.int64)
        self.deliveries = np.zeros(capacity, np.uint16)
        self.key = np.zeros(capacity, np.uint64)
        self.keyed = np.zeros(capacity, np.uint8)
        self.expires_ms = np.zeros(capacity, np.int64)
        self.reason = np.zeros(capacity, np.uint8)
        self.ts_ms = np.zeros(capacity, np.int64)

    @property
    def capacity(self) -> int:
        return len(self.state)

    def arrays(self) -> list[np.ndarray]:
        return [getattr(self, n) for n in self.NAMES]

    def resized(self, capacity: int, rows: int) -> Columns:
        """A new table of ``capacity`` holding this table's first ``rows`` rows."""
        out = Columns(capacity)
        for name in self.NAMES:
            getattr(out, name)[:rows] = getattr(self, name)[:rows]
        return out

    def move_rows(self, src_lo: int, src_hi: int, dst_lo: int) -> None:
        """Copy rows [src_lo, src_hi) to start at ``dst_lo`` (overlap allowed)."""
        n = src_hi - src_lo
        for arr in self.arrays():
            arr[dst_lo : dst_lo + n] = arr[src_lo:src_hi].copy()

    def reset_rows(self, lo: int, hi: int) -> None:
        for arr in self.arrays():
            arr[lo:hi] = 0
        self.owner[lo:hi] = NO_OWNER

    def take(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {n: getattr(self, n)[rows] for n in self.NAMES}

    def put(self, lo: int, values: dict[str, np.ndarray]) -> None:
        for name, arr in values.items():
            getattr(self, name)[lo : lo + len(arr)] = arr


class ParkedRecords:
    """Delayed records the window has slid past: a sparse table sorted by offset.

    Rows are only appended at the end (a window slides forward, so every newly parked
    offset is above every parked one) and finished rows are dropped in bulk by
    :meth:`compact`, which keeps the order.
    """

    def __init__(self, capacity: int = 64) -> None:
        self.offsets = np.zeros(capacity, np.int64)
        self.cols = Columns(capacity)
        self.size = 0

    def append(self, offsets: np.ndarray, values: dict[str, np.ndarray]) -> None:
        n = len(offsets)
        if n == 0:
            return
        need = self.size + n
        if need > len(self.offsets):
            cap = max(need, 2 * len(self.offsets))
            grown = np.zeros(cap, np.int64)
            grown[: self.size] = self.offsets[: self.size]
            self.offsets = grown
            self.cols = self.cols.resized(cap, self.size)
        self.offsets[self.size : need] = offsets
        self.cols.put(self.size, values)
        self.size = need

    def find(self, offsets: np.ndarray) -> np.ndarray:
        """Row of each offset, -1 where not parked."""
        live = self.offsets[: self.size]
        pos = np.searchsorted(live, offsets)
        pos_c = np.minimum(pos, max(self.size - 1, 0))
        hit = (pos < self.size) & (live[pos_c] == offsets) if self.size else pos < 0
        return np.where(hit, pos_c, -1)

    def compact(self) -> None:
        """Drop finished rows (kept until now so a late ack learns the record is finished)."""
        if self.size == 0:
            return
        keep = np.flatnonzero(~finished_mask(self.cols.state[: self.size]))
        if len(keep) == self.size:
            return
        self.offsets[: len(keep)] = self.offsets[keep]
        self.cols.put(0, self.cols.take(keep))
        self.cols.reset_rows(len(keep), self.size)
        self.size = len(keep)

    def nbytes(self) -> int:
        return int(self.offsets.nbytes + sum(a.nbytes for a in self.cols.arrays()))
