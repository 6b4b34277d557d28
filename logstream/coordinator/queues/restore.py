"""Rebuilding a :class:`~.window.PartitionWindow` from its persisted state.

Two ways in: a checkpoint (:func:`snapshot` / :func:`from_snapshot`: every tracked row,
columnar) and the state-change records after it (:func:`apply_change`: set a state on
records with no membership check, as the change was checked when it happened). After
the last record, :func:`finish_recovery` applies the restart rules: leases held before the
crash are void (those records are available again, their delivery count kept) and records
already delivered ``max_deliveries`` times go to the dead-letter path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from logstream.coordinator.queues import views
from logstream.coordinator.queues.columns import (
    ACKED,
    ACQUIRED,
    AVAILABLE,
    DEAD,
    DEAD_PENDING,
    DELAYED,
    NO_OWNER,
    REASON_EXPIRED,
    REASON_MAX_DELIVERIES,
    Columns,
    finished_mask,
)
from logstream.coordinator.queues.results import FINISHED, OK
from logstream.coordinator.queues.settings import QueueSettings
from logstream.coordinator.queues.window import PartitionWindow

CHANGE_ACQUIRED = 1
CHANGE_ACQUIRED_AUTO_ACK = 2
CHANGE_ACKED = 3
CHANGE_NACKED = 4
CHANGE_DEAD = 5  # the values are internal: never persisted


def apply_change(window: PartitionWindow, kind: int, offsets: np.ndarray, value: int = 0) -> None:
    """Replay one persisted change on the unfinished records among ``offsets``.

    ``value``: the due time of a nack, the reason of a dead-lettering."""
    loc = window.locate(offsets)
    state = window.gather(loc, "state")
    loc.codes[(loc.codes == OK) & finished_mask(state)] = FINISHED
    for cols, rows, _ in window.parts(loc):
        cols.owner[rows] = NO_OWNER
        if kind in (CHANGE_ACQUIRED, CHANGE_ACQUIRED_AUTO_ACK):
            cols.deliveries[rows] += 1
            window.redelivered_total += int((cols.deliveries[rows] > 1).sum())
            cols.state[rows] = ACKED if kind == CHANGE_ACQUIRED_AUTO_ACK else AVAILABLE
            if kind == CHANGE_ACQUIRED_AUTO_ACK:
                window.acked_total += len(rows)
        elif kind == CHANGE_ACKED:
            cols.state[rows] = ACKED
            window.acked_total += len(rows)
        elif kind == CHANGE_NACKED:
            cols.state[rows] = DELAYED
            cols.due_ms[rows] = value
        elif kind == CHANGE_DEAD:
            cols.state[rows] = DEAD
            cols.reason[rows] = value
            window.dead_total += len(rows)
            if value == REASON_EXPIRED:
                window.expired_total += len(rows)
    window.advance()


def finish_recovery(window: PartitionWindow) -> None:
    """Apply the restart rules after the last replayed change (see the module docstring)."""
    for cols, lo, hi, _ in window.tables():
        st = cols.state[lo:hi]
        st[st == ACQUIRED] = AVAILABLE
        cols.owner[lo:hi] = NO_OWNER
        spent_mask = cols.deliveries[lo:hi] >= window.max_deliveries
        spent = np.flatnonzero((st == AVAILABLE) & spent_mask)
        st[spent] = DEAD_PENDING
        cols.reason[lo + spent] = REASON_MAX_DELIVERIES
        window.dead_pending |= len(spent) > 0
    window.force_tick()


@dataclass(frozen=True)
class WindowSnapshot:
    """Everything needed to rebuild a window: its shape, counters and tracked rows."""

    start_offset: int
    end_offset: int
    # acked, dead, dropped, redelivered, expired, lost
    counters: tuple[int, int, int, int, int, int]
    offsets: np.ndarray
    rows: dict[str, np.ndarray]  # one array per column of :class:`.columns.Columns`


def snapshot(window: PartitionWindow) -> WindowSnapshot:
    """The window's persistent state. Held leases are written as available (they do not
    survive a restart) and reason texts are not kept."""
    offsets, _ = views.column(window, "state")
    rows = {name: views.column(window, name)[1].copy() for name in Columns.NAMES}
    held = rows["state"] == ACQUIRED
    rows["state"][held] = AVAILABLE
    rows["owner"][:] = NO_OWNER
    rows["due_ms"][held] = 0
    counters = (
        window.acked_total,
        window.dead_total,
        window.dropped_total,
        window.redelivered_total,
        window.expired_total,
        window.lost_total,
    )
    return WindowSnapshot(window.start_offset, window.end_offset, counters, offsets, rows)


def from_snapshot(snap: WindowSnapshot, settings: QueueSettings) -> PartitionWindow:
    """A window equal to the one ``snap`` was taken of (minus its leases)."""
    window = PartitionWindow.for_settings(snap.start_offset, settings)
    below = snap.offsets < snap.start_offset
    window.park(snap.offsets[below], {n: v[below] for n, v in snap.rows.items()})
    window.admit(snap.end_offset - snap.start_offset, grow=True)
    dense, lo, _, _ = window.tables()[1]
    rel = snap.offsets[~below] - snap.start_offset + lo
    for name, values in snap.rows.items():
        getattr(dense, name)[rel] = values[~below]
    (
        window.acked_total,
        window.dead_total,
        window.dropped_total,
        window.redelivered_total,
        window.expired_total,
        window.lost_total,
    ) = snap.counters
    window.force_tick()
    return window
