"""Crash anywhere in the state log (and between a dead-letter write and its record):
replay must equal what was persisted. Random operation sequences over a 2-partition
group; every append is a possible crash point."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pytest

from logstream.coordinator.queues import (
    MemoryOutbox,
    MemoryStateLog,
    QueueGroup,
    QueueSettings,
    recover_group,
    views,
)
from logstream.coordinator.queues.columns import (
    ACKED,
    ACQUIRED,
    DEAD,
    DEAD_PENDING,
    DELAYED,
    DROPPED,
)
from logstream.coordinator.queues.statelog import T_CHECKPOINT_BEGIN, T_CHECKPOINT_END
from logstream.testing.clock import ManualClock

TPS = [("t", 0), ("t", 1)]


@dataclass(frozen=True)
class Persisted:
    """What a restart must give back, per (topic, partition, offset): class and count."""

    end: dict[tuple[str, int], int]
    lost: dict[tuple[str, int], int]  # lost to retention
    expired: dict[tuple[str, int], int]  # expired before delivery
    records: dict[tuple[str, int, int], tuple[str, int, int]]  # class, deliveries, nack due


def persisted(group: QueueGroup, outbox: MemoryOutbox, first: dict) -> Persisted:
    dead = {(d.source_topic, d.source_partition, d.source_offset) for d in outbox.letters}
    out: dict[tuple[str, int, int], tuple[str, int, int]] = {}
    end, lost, expired = {}, {}, {}
    for topic, partition, w in group.each_window():
        end[(topic, partition)] = w.end_offset
        lost[(topic, partition)] = w.lost_total
        expired[(topic, partition)] = w.expired_total
        offs, state = views.column(w, "state")
        _, deliveries = views.column(w, "deliveries")
        _, due = views.column(w, "due_ms")
        tracked = dict(zip(offs.tolist(), range(len(offs)), strict=True))
        for o in range(first[(topic, partition)], w.end_offset):
            if o not in tracked:  # slid over: finished
                cls = "dead" if (topic, partition, o) in dead else "acked"
                out[(topic, partition, o)] = (cls, -1, 0)
                continue
            i = tracked[o]
            s, d = int(state[i]), int(deliveries[i])
            cls = {ACKED: "acked", DEAD: "dead", DROPPED: "lost"}.get(s, "open")
            retry_due = int(due[i]) if s == DELAYED and d > 0 else 0
            out[(topic, partition, o)] = (cls, d, retry_due) if cls == "open" else (cls, -1, 0)
    return Persisted(end, lost, expired, out)


def expected_after_restart(
    p: Persisted, letters: MemoryOutbox, max_deliveries: int, now: int
) -> dict:
    dead = {(d.source_topic, d.source_partition, d.source_offset) for d in letters.letters}
    out = {}
    for k, (cls, d, due) in p.records.items():
        if cls == "open" and (k in dead or d >= max_deliveries):
            cls, d, due = "dead", -1, 0
        out[k] = (cls, d, due if due > now else 0)  # a due time passed is just "available"
    return out


def restarted(group: QueueGroup, outbox: MemoryOutbox, first: dict, now: int) -> dict:
    got = {
        k: (cls, d, due if due > now else 0)
        for k, (cls, d, due) in persisted(group, outbox, first).records.items()
    }
    for _, _, w in group.each_window():
        _, state = views.column(w, "state")
        assert not (state == ACQUIRED).any()  # leases do not survive
        assert not (state == DEAD_PENDING).any()  # the dead-letter path was resolved
    return got


def run(seed: int) -> None:
    rng = random.Random(seed)
    settings = QueueSettings(
        lease_ms=100,
        max_deliveries=3,
        backoff_initial_ms=50,
        backoff_max_ms=200,
        window_size=6,
        key_ordered=rng.random() < 0.3,
        auto_ack=rng.random() < 0.1,
    )
    clock = ManualClock()
    log = MemoryStateLog(compact=False)
    outbox = MemoryOutbox()
    g = QueueGroup("g", settings, clock=clock, state_log=log, outbox=outbox)
    first = {TPS[0]: 0, TPS[1]: 10}
    for tp, start in first.items():
        g.add_partition(*tp, start)
    members = ["a", "b", "c"]
    for m in members:
        g.join(m)
    held: dict[str, list[tuple[str, int, int]]] = {m: [] for m in members}
    # crash point -> (units, letters); snapshots by unit count
    snapshots: dict[int, tuple[Persisted, int]] = {}
    crash_points: list[tuple[int, int, int]] = []

    def flush() -> None:
        if g.flush():  # a flush with nothing pending appends nothing: no new crash point
            snapshots[len(log.units)] = (persisted(g, outbox, first), len(outbox.letters))

    for _ in range(rng.randint(20, 80)):
        op = rng.random()
        if op < 0.15:
            tp = rng.choice(TPS)
            n = rng.randint(1, 4)
            at = np.array(
                [clock.now_ms() + 300 if rng.random() < 0.1 else 0 for _ in range(n)], np.int64
            )
            keys = np.array([rng.randint(1, 3) for _ in range(n)], np.uint64)
            expires = np.array(
                [clock.now_ms() + 200 if rng.random() < 0.15 else 0 for _ in range(n)], np.int64
            )
            g.admit(
                *tp,
                n,
                deliver_at_ms=at,
                expires_at_ms=expires,
                keys=keys,
                ts_ms=np.full(n, clock.now_ms()),
            )
        elif op < 0.35:
            m = rng.choice(members)
            for d in g.acquire(m, rng.randint(1, 4)):
                held[m] += [(d.topic, d.partition, o) for o in d.offsets.tolist()]
        elif op < 0.7 and any(held.values()):
            m = rng.choice([m for m in members if held[m]])
            pick = rng.sample(held[m], rng.randint(1, len(held[m])))
            for topic, partition, o in pick:
                held[m].remove((topic, partition, o))
                verb = rng.random()
                if verb < 0.6:
                    g.ack(m, topic, partition, [o])
                elif verb < 0.85:
                    g.nack(m, topic, partition, [o], rng.choice([None, 0, 120]))
                elif verb < 0.95:
                    g.reject(m, topic, partition, [o], "bad")
                else:
                    g.extend(m, topic, partition, [o])
        elif op < 0.72:
            tp = rng.choice(TPS)
            w = g.window(*tp)
            g.skip_to(*tp, rng.randint(w.start_offset, w.end_offset + 3))  # retention
        elif op < 0.75:
            m = rng.choice(members)
            g.leave(m)
            g.join(m)
            held[m] = []
        elif op < 0.85:
            clock.advance(rng.choice([30, 100, 250]))
            g.tick()
        elif op < 0.97:
            flush()
        else:
            g.checkpoint()
            snapshots[len(log.units)] = (persisted(g, outbox, first), len(outbox.letters))
        crash_points.append((len(log.units), len(outbox.letters), clock.now_ms()))

    for units, letters, now in crash_points:
        if units not in snapshots:
            continue  # before the first flush nothing was confirmed
        snap, _ = snapshots[units]
        survivor_outbox = outbox.crashed_at(letters)
        expected = expected_after_restart(snap, survivor_outbox, settings.max_deliveries, now)
        back = recover_group(
            "g",
            log.crashed_at(units).records(),
            clock=ManualClock(now),
            state_log=MemoryStateLog(),
            outbox=survivor_outbox,
        )
        assert back is not None
        got = restarted(back, survivor_outbox, first, now)
        assert {k: v for k, v in got.items() if k in expected} == expected, (seed, units)
        assert {(t, p): w.end_offset for t, p, w in back.each_window()} == snap.end
        assert {(t, p): w.lost_total for t, p, w in back.each_window()} == snap.lost
        assert {(t, p): w.expired_total for t, p, w in back.each_window()} == snap.expired
        coords = [
            (d.source_topic, d.source_partition, d.source_offset) for d in survivor_outbox.letters
        ]
        assert len(coords) == len(set(coords)), "a record was dead-lettered twice"


@pytest.mark.parametrize("seed", range(60))
def test_replay_after_a_crash_at_any_append_equals_what_was_persisted(seed: int) -> None:
    run(seed)


def test_replay_from_a_compacted_log_equals_replay_of_the_full_log() -> None:
    clock = ManualClock()
    full, compacted = MemoryStateLog(compact=False), MemoryStateLog()

    class Both:
        def append(self, records: list[bytes]) -> None:
            full.append(records)
            compacted.append(records)

        def append_checkpoint(self, units: list[list[bytes]]) -> None:
            full.append_checkpoint(units)
            compacted.append_checkpoint(units)

    outbox = MemoryOutbox()
    g = QueueGroup("g", QueueSettings(window_size=50), clock=clock, state_log=Both(), outbox=outbox)
    g.add_partition("t", 0, 0)
    g.join("a")
    for i in range(30):
        g.admit("t", 0, 10)
        got = g.acquire("a", 7)[0].offsets
        g.ack("a", "t", 0, got[::2])
        g.nack("a", "t", 0, got[1::2], delay_ms=10 * i)
        if i % 7 == 6:
            g.checkpoint()
        g.flush()
    assert len(compacted.units) < len(full.units)
    types = [u[0][0] for u in compacted.units]
    assert types[0] == T_CHECKPOINT_BEGIN and compacted.units[0][-1][0] == T_CHECKPOINT_END
    a, b = (
        recover_group("g", log.records(), clock=clock, state_log=MemoryStateLog(), outbox=outbox)
        for log in (full, compacted)
    )
    assert a is not None and b is not None
    first = {("t", 0): 0}
    assert persisted(a, outbox, first) == persisted(b, outbox, first)
    assert len(persisted(a, outbox, first).records) == g.window("t", 0).end_offset > 100
    wa, wb = a.window("t", 0), b.window("t", 0)
    assert (wa.acked_total, wa.redelivered_total) == (wb.acked_total, wb.redelivered_total)


def test_a_torn_checkpoint_is_ignored() -> None:
    clock = ManualClock()
    log = MemoryStateLog(compact=False)
    outbox = MemoryOutbox()
    g = QueueGroup("g", QueueSettings(), clock=clock, state_log=log, outbox=outbox)
    g.add_partition("t", 0, 0)
    g.join("a")
    g.admit("t", 0, 5)
    g.ack("a", "t", 0, g.acquire("a", 2)[0].offsets)
    g.flush()
    g.checkpoint()
    torn = log.units[-1][:-2]  # the END (and the last rows) never made it
    records = [r for u in log.units[:-1] for r in u] + torn
    back = recover_group("g", records, clock=clock, state_log=MemoryStateLog(), outbox=outbox)
    assert back is not None
    assert back.window("t", 0).start_offset == 2
    assert back.window("t", 0).acked_total == 2


def test_an_empty_log_recovers_no_group() -> None:
    assert (
        recover_group(
            "g", [], clock=ManualClock(), state_log=MemoryStateLog(), outbox=MemoryOutbox()
        )
        is None
    )


def test_a_checkpoint_larger_than_a_unit_spans_appends_and_replays_whole() -> None:
    """A small ``checkpoint_unit_bytes`` forces what a group of millions of rows meets (one
    append may hold 64 MiB): the checkpoint goes in several units, compaction keeps all of
    them, and a crash between two of them leaves the state before the checkpoint."""
    clock = ManualClock()
    log, history = MemoryStateLog(), MemoryStateLog(compact=False)

    class Both:
        def append(self, records: list[bytes]) -> None:
            log.append(records)
            history.append(records)

        def append_checkpoint(self, units: list[list[bytes]]) -> None:
            log.append_checkpoint(units)
            history.append_checkpoint(units)

    outbox = MemoryOutbox()
    settings = QueueSettings(window_size=20_000)
    g = QueueGroup(
        "g", settings, clock=clock, state_log=Both(), outbox=outbox, checkpoint_unit_bytes=4096
    )
    first = {tp: 0 for tp in TPS}
    for tp in TPS:
        g.add_partition(*tp, 0)
    g.join("a")
    for topic, partition in TPS:
        g.admit(topic, partition, 9_000)
    for d in g.acquire("a", 6_000):
        g.ack("a", d.topic, d.partition, d.offsets[::3])
        g.nack("a", d.topic, d.partition, d.offsets[1::3], delay_ms=60_000)
    g.flush()
    before = len(history.units)
    before_state = persisted(
        recover_group("g", history.records(), clock=clock, state_log=MemoryStateLog(),
                      outbox=outbox),  # type: ignore[arg-type]
        outbox,
        first,
    )  # fmt: skip
    g.checkpoint()
    units = history.units[before:]
    assert len(units) > 3, "the checkpoint did not need several units"
    assert units[0][0][0] == T_CHECKPOINT_BEGIN and units[-1][-1][0] == T_CHECKPOINT_END
    assert log.units == units  # compaction kept the whole checkpoint, nothing before it

    def recovered(records: list[bytes]) -> Persisted:
        back = recover_group("g", records, clock=clock, state_log=MemoryStateLog(), outbox=outbox)
        assert back is not None
        return persisted(back, outbox, first)

    want = persisted(g, outbox, first)
    assert recovered(list(log.records())) == want
    assert recovered(list(history.records())) == want
    # a crash before the last unit: the partial checkpoint is ignored, the records before
    # it give the same state (a checkpoint changes no state, it only lets history go)
    torn = [r for u in history.units[: before + len(units) - 1] for r in u]
    assert recovered(torn) == before_state == want
