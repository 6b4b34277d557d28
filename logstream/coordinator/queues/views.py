"""Read-only views over a :class:`~.window.PartitionWindow`: columns, counts, holdings,
and the backlog estimate a full fetch answer reports.

Each view walks the window's two tables (parked, then dense) without copying rows it does
not need. Same concurrency contract as the window: call under the group's lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from logstream.coordinator.queues.columns import ACQUIRED, DEAD_PENDING, DELAYED, finished_mask
from logstream.coordinator.queues.window import PartitionWindow


def column(window: PartitionWindow, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, values) of one column over every tracked record, ascending offsets."""
    offs, vals = [], []
    for cols, lo, hi, parked_offsets in window.tables():
        if parked_offsets is not None:
            offs.append(parked_offsets[lo:hi])
        else:
            base = window.end_offset - hi  # dense rows are offset - base
            offs.append(np.arange(base + lo, base + hi, dtype=np.int64))
        vals.append(getattr(cols, name)[lo:hi])
    return np.concatenate(offs), np.concatenate(vals)


def state_counts(window: PartitionWindow) -> np.ndarray:
    """Count of tracked records per state (index = state constant)."""
    _, state = column(window, "state")
    return np.bincount(state, minlength=7)


def holdings(window: PartitionWindow) -> dict[int, int]:
    """Member slot -> how many records it holds."""
    _, state = column(window, "state")
    _, owner = column(window, "owner")
    slots, counts = np.unique(owner[state == ACQUIRED], return_counts=True)
    return dict(zip(slots.tolist(), counts.tolist(), strict=True))


def oldest_unfinished(window: PartitionWindow) -> tuple[int, int] | None:
    """(offset, timestamp ms) of the lowest unfinished record; None if all are finished."""
    offs, state = column(window, "state")
    live = np.flatnonzero(~finished_mask(state))
    if len(live) == 0:
        return None
    _, ts = column(window, "ts_ms")
    return int(offs[live[0]]), int(ts[live[0]])


def next_due(window: PartitionWindow) -> int | None:
    """Earliest due time (epoch ms) of a delayed record; None if none is delayed."""
    _, state = column(window, "state")
    _, due = column(window, "due_ms")
    waiting = due[state == DELAYED]
    return int(waiting.min()) if len(waiting) else None


def dead_letter_pending(window: PartitionWindow) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(offsets, delivery counts, reasons) of records waiting for the dead-letter write."""
    offs, state = column(window, "state")
    sel = np.flatnonzero(state == DEAD_PENDING)
    _, deliveries = column(window, "deliveries")
    _, reason = column(window, "reason")
    return offs[sel], deliveries[sel], reason[sel]


def backlog_estimate(
    windows: Iterable[tuple[str, int, PartitionWindow]],
    log_ends: Mapping[tuple[str, int], int],
) -> int:
    """About how many records wait to be handed out: in the ``windows`` (``(topic,
    partition, window)``, :meth:`PartitionWindow.waiting_estimate`) and in the logs past
    them (``log_ends``: each partition's log end offset), of which only the window's
    ``room`` can be admitted now: counting the rest would have the first members ask for
    the whole window and leave the others nothing until they ack. A prefetch hint."""
    total = 0
    for topic, partition, w in windows:
        end = log_ends.get((topic, partition), w.end_offset)
        total += w.waiting_estimate() + min(max(end - w.end_offset, 0), max(w.room, 0))
    return total
