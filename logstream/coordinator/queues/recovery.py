"""Rebuilding a queue group from its state log after a restart or a crash.

:func:`replay` reads the records in order (format in :mod:`.statelog`). A complete
checkpoint (BEGIN ... END with the same sequence) replaces everything before it; a torn
one (no END before the next change record, or the log ends) is ignored. Change records
are applied as they were logged: they were checked when they happened. Then
:func:`recover_group` applies the restart rules (:func:`.restore.finish_recovery`: leases
are void, delivery counts kept) and resolves the dead-letter path against the outbox
(:meth:`.group.QueueGroup.resolve_dead_letters`).

What survives, given that the broker flushes before it answers: every confirmed ack (its
ACK record is in the log: the record stays finished), every delivery count of a record
handed out (its ACQUIRE record is in the log), every nack delay, every dead-lettering.
What does not: leases (void), unconfirmed acks (the record is delivered again), reason
texts. Nothing admitted is lost: a record is tracked until an ACK, DEAD or the drop rule
finishes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from logstream.clock import Clock
from logstream.coordinator.queues import statelog as sl
from logstream.coordinator.queues.deadletter import DeadLetterOutbox
from logstream.coordinator.queues.group import QueueGroup
from logstream.coordinator.queues.restore import (
    WindowSnapshot,
    apply_change,
    finish_recovery,
    from_snapshot,
)
from logstream.coordinator.queues.settings import QueueSettings
from logstream.coordinator.queues.statelog import StateLogWriter
from logstream.coordinator.queues.window import PartitionWindow

_CHANGES = {
    sl.T_ACK: 3,
    sl.T_NACK: 4,
    sl.T_DEAD: 5,
}


@dataclass
class ReplayedGroup:
    """The state a log describes, before the restart rules."""

    settings: QueueSettings | None = None
    partitions: dict[int, tuple[str, int, PartitionWindow]] = field(default_factory=dict)
    checkpoint_sequence: int = 0


@dataclass
class _Checkpoint:
    sequence: int
    settings: QueueSettings | None = None
    names: dict[int, tuple[str, int]] = field(default_factory=dict)
    since: dict[int, int] = field(default_factory=dict)  # each PARTITION's since_ms
    heads: dict[int, tuple[int, int, tuple[int, int, int, int, int, int]]] = field(
        default_factory=dict
    )
    rows: dict[int, list[tuple[np.ndarray, dict[str, np.ndarray]]]] = field(default_factory=dict)

    def add(self, rec: bytes) -> None:
        kind = rec[0]
        if kind == sl.T_SETTINGS:
            self.settings = sl.decode_settings(rec)
        elif kind == sl.T_PARTITION:
            pid, topic, partition, _ = sl.decode_partition(rec)
            self.names[pid] = (topic, partition)
            self.since[pid] = sl.partition_since(rec)
        elif kind == sl.T_WINDOW:
            pid, start, end, counters = sl.decode_window(rec)
            self.heads[pid] = (start, end, counters)
        else:
            pid, offsets, rows = sl.decode_window_rows(rec)
            self.rows.setdefault(pid, []).append((offsets, rows))

    def build(self) -> ReplayedGroup:
        assert self.settings is not None
        out = ReplayedGroup(self.settings, {}, self.sequence)
        for pid, (topic, partition) in sorted(self.names.items()):
            start, end, counters = self.heads[pid]
            chunks = self.rows.get(pid, [])
            offsets = np.concatenate([c[0] for c in chunks]) if chunks else np.zeros(0, np.int64)
            rows = {
                name: np.concatenate([c[1][name] for c in chunks]) if chunks else np.zeros(0, dtype)
                for name, dtype in sl.ROW_COLUMNS
            }
            snap = WindowSnapshot(start, end, counters, offsets, rows)
            window = from_snapshot(snap, self.settings)
            window.since_ms = self.since.get(pid, 0)
            out.partitions[pid] = (topic, partition, window)
        return out


_CHECKPOINT_BODY = (sl.T_SETTINGS, sl.T_PARTITION, sl.T_WINDOW, sl.T_WINDOW_ROWS)


def replay(records: Iterable[bytes]) -> ReplayedGroup:
    """The group state the records describe (see the module docstring)."""
    state = ReplayedGroup()
    building: _Checkpoint | None = None
    for rec in records:
        kind = rec[0]
        if kind == sl.T_CHECKPOINT_BEGIN:
            building = _Checkpoint(sl.CHECKPOINT_BEGIN.unpack_from(rec)[1])
            continue
        if building is not None:
            if kind in _CHECKPOINT_BODY:
                building.add(rec)
                continue
            if kind == sl.T_CHECKPOINT_END:
                if sl.CHECKPOINT_END.unpack_from(rec)[1] == building.sequence:
                    state = building.build()
                building = None
                continue
            building = None  # torn checkpoint: ignore it, keep the state before it
        _apply(state, rec)
    return state


def _apply(state: ReplayedGroup, rec: bytes) -> None:
    kind = rec[0]
    if kind == sl.T_SETTINGS:
        state.settings = s = sl.decode_settings(rec)
        for _, _, w in state.partitions.values():
            w.configure(s)
    elif kind == sl.T_PARTITION and state.settings is not None:
        pid, topic, partition, start = sl.decode_partition(rec)
        window = PartitionWindow.for_settings(start, state.settings)
        window.since_ms = sl.partition_since(rec)
        state.partitions[pid] = (topic, partition, window)
    elif kind == sl.T_ADMIT:
        pid, first, count, arrays = sl.decode_admit(rec)
        window = state.partitions[pid][2]
        skip = window.end_offset - first  # > 0 only if a record was logged twice
        if 0 <= skip < count:
            window.admit(count - skip, grow=True, **{k: v[skip:] for k, v in arrays.items()})
    elif kind == sl.T_SKIP:
        pid, log_start, lost = sl.decode_skip(rec)
        state.partitions[pid][2].skip_to(log_start, lost)
    elif kind == sl.T_ACQUIRE:
        _, pid, offsets, auto_ack = sl.decode_change(rec)
        apply_change(state.partitions[pid][2], 2 if auto_ack else 1, offsets)
    elif kind in _CHANGES:
        _, pid, offsets, value = sl.decode_change(rec)
        apply_change(state.partitions[pid][2], _CHANGES[kind], offsets, value)
    # unknown record types are skipped: written by a newer version


def recover_group(
    name: str,
    records: Iterable[bytes],
    *,
    clock: Clock,
    state_log: StateLogWriter,
    outbox: DeadLetterOutbox,
) -> QueueGroup | None:
    """The group rebuilt from its records, ready for members; None if the records hold no
    group (it was never created). Resolving the dead-letter path may append to the state
    log (flushed before this returns)."""
    state = replay(records)
    if state.settings is None:
        return None
    group = QueueGroup(
        name, state.settings, clock=clock, state_log=state_log, outbox=outbox, log_settings=False
    )
    for pid in sorted(state.partitions):
        topic, partition, window = state.partitions[pid]
        finish_recovery(window)
        group.attach_recovered(topic, partition, window)
    group.checkpoint_sequence = state.checkpoint_sequence
    group.resolve_dead_letters()
    group.flush()
    return group
