"""Queue-group engine (issue 14): window throughput, memory, state-log cost and replay.

In one process, no broker, no network (the engine alone, as the broker will drive it):

1. acquire + ack of 1,000,000 records in batches of 100 (window of 10,000): on the bare
   ``PartitionWindow``, and through ``QueueGroup`` (state records encoded, one append of
   the pending records per batch into an in-memory state log). Baseline in the same run:
   the test suite's reference model (a dict with one Python object per record), on
   100,000 records.
2. Memory with 1,000,000 records in flight (all acquired) and 1,000,000 delayed (parked
   after the window slid past them): bytes of the numpy state, and the traced allocation
   peak; baseline: the reference model's per-record objects (traced, 100,000, scaled).
3. Key-ordered acquire + ack (1,000 keys), and replay of the state log of run 1.

    python benchmarks/bench_queue_window.py [--no-write]
"""

from __future__ import annotations

import gc
import os
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_line, write_section

from logstream.coordinator.queues import (
    MemoryOutbox,
    MemoryStateLog,
    PartitionWindow,
    QueueGroup,
    QueueSettings,
    recover_group,
)
from logstream.testing.clock import ManualClock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "coordinator"))
from queues.model import ModelWindow  # the reference model of the state-machine test

N = 1_000_000
BATCH = 100
WINDOW = 10_000
NOW = 1_700_000_000_000
LEASE = 30_000
TIME_LIMIT_S = 120.0


def bare_window(n: int) -> float:
    w = PartitionWindow(0, capacity=WINDOW, max_deliveries=5)
    done = 0
    t0 = time.perf_counter()
    while done < n and time.perf_counter() - t0 < TIME_LIMIT_S:
        if w.room:
            w.admit(w.room)
        got = w.acquire(1, BATCH, NOW, LEASE)
        w.ack(1, got)
        w.advance()
        done += len(got)
    return done / (time.perf_counter() - t0)


def through_group(n: int) -> tuple[float, MemoryStateLog, int]:
    clock = ManualClock(NOW)
    log = MemoryStateLog()
    g = QueueGroup(
        "bench",
        QueueSettings(window_size=WINDOW),
        clock=clock,
        state_log=log,
        outbox=MemoryOutbox(),
    )
    g.add_partition("t", 0, 0)
    g.join("w")
    done = 0
    t0 = time.perf_counter()
    while done < n and time.perf_counter() - t0 < TIME_LIMIT_S:
        _, room = g.room("t", 0)
        if room:
            g.admit("t", 0, room)
        for d in g.acquire("w", BATCH):
            g.ack("w", d.topic, d.partition, d.offsets)
            done += len(d.offsets)
        g.flush()
        g.maybe_checkpoint()
    return done / (time.perf_counter() - t0), log, done


def model_baseline(n: int) -> float:
    m = ModelWindow(0, capacity=WINDOW, max_deliveries=5)
    done = popped = 0
    t0 = time.perf_counter()
    while done < n:
        room = m.capacity - (m.end - m.start)
        m.admit([None] * room, [0] * room, [0] * room)
        got = m.acquire(1, BATCH, NOW, LEASE)
        m.ack(1, got)
        m.advance()
        for o in range(popped, m.start):  # the model keeps finished records: drop them
            m.recs.pop(o, None)
        popped = m.start
        done += len(got)
    return done / (time.perf_counter() - t0)


def key_ordered(n: int) -> float:
    w = PartitionWindow(0, capacity=WINDOW, max_deliveries=5, key_ordered=True)
    rng = np.random.default_rng(1)
    done = 0
    t0 = time.perf_counter()
    while done < n and time.perf_counter() - t0 < TIME_LIMIT_S:
        if w.room:
            w.admit(w.room, keys=rng.integers(0, 1_000, w.room).astype(np.uint64))
        got = w.acquire(1, BATCH, NOW, LEASE)
        w.ack(1, got)
        w.advance()
        done += len(got)
    return done / (time.perf_counter() - t0)


def traced(build):  # type: ignore[no-untyped-def]
    gc.collect()
    tracemalloc.start()
    obj = build()
    _, peak = tracemalloc.get_traced_memory()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return obj, current, peak


def in_flight() -> PartitionWindow:
    w = PartitionWindow(0, capacity=N, max_deliveries=5)
    w.admit(N)
    w.acquire(1, N, NOW, LEASE)
    return w


def delayed() -> PartitionWindow:
    w = PartitionWindow(0, capacity=WINDOW, max_deliveries=5)
    at = np.full(WINDOW, NOW + 3_600_000, np.int64)
    while w.end_offset < N:
        w.admit(w.room, deliver_at_ms=at)
        w.advance()
    return w


def model_in_flight(n: int) -> ModelWindow:
    m = ModelWindow(0, capacity=n, max_deliveries=5)
    m.admit([None] * n, [0] * n, [0] * n)
    m.acquire(1, n, NOW, LEASE)
    return m


def main() -> None:
    write = "--no-write" not in sys.argv
    bare = bare_window(N)
    group_rate, log, acked = through_group(N)
    model_rate = model_baseline(100_000)
    keyed = key_ordered(200_000)
    log_bytes = log.nbytes()

    t0 = time.perf_counter()
    back = recover_group(
        "bench", log.records(), clock=ManualClock(NOW), state_log=MemoryStateLog(),
        outbox=MemoryOutbox(),
    )  # fmt: skip
    replay_s = time.perf_counter() - t0
    assert back is not None and back.window("t", 0).start_offset == acked

    w, cur_f, peak_f = traced(in_flight)
    flight_bytes = w.nbytes()
    del w
    d, cur_d, peak_d = traced(delayed)
    delayed_bytes, parked = d.nbytes(), d.parked_count
    del d
    _, cur_m, _ = traced(lambda: model_in_flight(100_000))
    model_per_record = cur_m / 100_000

    mb = 1024 * 1024
    lines = [
        "## Queue-group engine (issue 14: the window, in one process, no broker)",
        "",
        f"Machine: {machine_line()}",
        "",
        f"Load average at the end of the run: {os.getloadavg()[0]:.1f} (other jobs share the "
        "machine; compare ratios, not absolute rates).",
        "",
        "| figure | value | baseline (same run) | ratio |",
        "| --- | --- | --- | --- |",
        f"| acquire + ack, batches of {BATCH}, window {WINDOW:,}: bare window "
        f"| {bare:,.0f} records/s | reference model (dict, object per record) "
        f"{model_rate:,.0f} records/s | {bare / model_rate:.1f}x |",
        f"| same through `QueueGroup` (state records + one append per batch) "
        f"| {group_rate:,.0f} records/s | reference model {model_rate:,.0f} records/s "
        f"| {group_rate / model_rate:.1f}x |",
        f"| key-ordered (1,000 keys) acquire + ack | {keyed:,.0f} records/s | bare window "
        f"{bare:,.0f} records/s | {keyed / bare:.2f}x |",
        f"| memory, {N:,} in flight (numpy state) | {flight_bytes / mb:.1f} MiB "
        f"({flight_bytes / N:.0f} B/record; traced {cur_f / mb:.1f} MiB, peak {peak_f / mb:.1f}) "
        f"| reference model {model_per_record:.0f} B/record "
        f"| {model_per_record / (flight_bytes / N):.1f}x smaller |",
        f"| memory, {parked:,} delayed (parked; window {WINDOW:,}) | {delayed_bytes / mb:.1f} MiB "
        f"({delayed_bytes / parked:.0f} B/record; traced {cur_d / mb:.1f} MiB, "
        f"peak {peak_d / mb:.1f}) | reference model {model_per_record:.0f} B/record "
        f"| {model_per_record / (delayed_bytes / parked):.1f}x smaller |",
        f"| state log for {acked:,} acquired + acked (checkpoints compact it) "
        f"| {log_bytes / 1024:.0f} KiB left, {log.appends:,} appends | | |",
        f"| replay of that log | {replay_s * 1000:.0f} ms | | |",
    ]
    text = "\n".join(lines)
    print(text)
    if write:
        write_section("queue-window", text)


if __name__ == "__main__":
    main()
