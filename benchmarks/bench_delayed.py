"""Delayed delivery and TTL (issue 15): broker memory, admission cost, lateness.

1. **Broker RSS** with 100,000 delayed records vs 0: a broker process, one topic and one
   queue group; a member's fetch (which admits what the log holds) and the broker's RSS
   (``/proc/PID/status`` VmRSS) before and after 100,000 records with a one-hour delay are
   produced over the wire and admitted. The delayed records are parked in the window's side
   table (about 60 bytes each, capped per partition: ``MAX_PARKED``).
2. **Admission CPU per record** (in process, ``time.process_time``): 100,000 records in
   batches of 100 read from a real partition log into a queue group's window, for batches
   without headers (the common case: never opened), with an unrelated header, and with a
   schedule header. Interleaved runs (A, B, C, A, B, C, ...), median of each.
3. **Lateness**: 100 records delayed 1-2 s while 5,000 immediate ones flow through one
   ``QueueConsumer``; received time minus due time, p50/p99/max (default 50 ms timer).

    python benchmarks/bench_delayed.py [--records 100000] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_line, write_section

from logstream import Admin, GroupAdmin, Producer, QueueConsumer
from logstream.testing.broker import BrokerProcess

TIME_LIMIT_S = 120.0


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, RssAnon) in MiB: all resident pages, and those not backed by a file (the
    heap; the memory-mapped segments the broker appends through are file pages)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "RssAnon"):
            fields[name] = int(rest.split()[0]) / 1024
    return fields["VmRSS"], fields["RssAnon"]


def broker_rss(records: int, delay_ms: int) -> tuple[tuple[float, float], tuple[float, float], int]:
    """((RSS, anon) MiB before, after, records the group took in): ``records`` produced
    with ``delay_ms`` (0: consumed and acked instead)."""
    with tempfile.TemporaryDirectory() as tmp, BrokerProcess(Path(tmp) / "data") as proc:
        addr = proc.address
        Admin(addr).create_topic("jobs", partitions=1)
        ga = GroupAdmin(addr)
        ga.create_queue_group("workers", topics=["jobs"])
        with QueueConsumer(addr, group="workers") as q:
            q.poll(0.2)
            time.sleep(0.5)
            before = rss_mib(proc.pid)
            with Producer(addr, linger_ms=20) as p:
                started = time.monotonic()
                for _ in range(records):
                    p.send("jobs", b"x" * 100, delay_ms=delay_ms or None)
                    if time.monotonic() - started > TIME_LIMIT_S:
                        break
                p.flush()
            end = time.monotonic() + TIME_LIMIT_S
            taken = 0
            while time.monotonic() < end:
                for msg in q.poll(0.2):  # admits (and parks) what was appended
                    msg.ack()
                total = ga.describe_queue_group("workers").total
                taken = total.delayed if delay_ms else total.acknowledged
                if taken >= records:
                    break
            time.sleep(0.5)
            after = rss_mib(proc.pid)
        return before, after, taken


def admission_cpu(records: int, rounds: int) -> dict[str, float]:
    """Median CPU microseconds per admitted record, per kind of batch."""
    from logstream.broker.queue_admit import admit_new
    from logstream.broker.queue_reads import FetchCache
    from logstream.broker.queue_state import Managed
    from logstream.codec import encode_batch, encode_headers
    from logstream.coordinator.queues import (
        MemoryOutbox,
        MemoryStateLog,
        QueueGroup,
        QueueSettings,
    )
    from logstream.storage import LogManager
    from logstream.testing.clock import ManualClock

    now = int(time.time() * 1000)
    kinds = {
        "no headers": None,
        "an unrelated header": encode_headers([("trace-id", b"0123456789abcdef")]),
        "a schedule header": encode_headers([("logstream-deliver-at", str(now).encode())]),
    }
    samples: dict[str, list[float]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        manager = LogManager(Path(tmp))
        for i, blob in enumerate(kinds.values()):
            topic = f"t{i}"
            manager.create_topic(topic, 1)
            plog = manager.get_log(topic, 0)
            for _ in range(records // 100):
                headers = None if blob is None else [blob] * 100
                plog.append(encode_batch([b"x" * 100] * 100, headers=headers, timestamps=now))
        for _ in range(rounds):
            for i, kind in enumerate(kinds):
                group = QueueGroup(
                    "g",
                    QueueSettings(window_size=records),
                    clock=ManualClock(now),
                    state_log=MemoryStateLog(),
                    outbox=MemoryOutbox(),
                )
                group.add_partition(f"t{i}", 0, 0)
                m = Managed(group, [f"t{i}"], MemoryOutbox())  # type: ignore[arg-type]
                cache = FetchCache()  # the broker keeps one per group; cold at each round's start
                t0 = time.process_time()
                while group.room(f"t{i}", 0)[0] < records:  # a fetch admits a budget at most
                    admit_new(manager, m, cache)
                spent = time.process_time() - t0
                samples[kind].append(spent / records * 1e6)
        manager.close()
    return {k: statistics.median(v) for k, v in samples.items()}


def lateness(delayed: int = 100, immediate: int = 5_000) -> list[int]:
    """Received minus due (ms) of each delayed record, sorted."""
    with tempfile.TemporaryDirectory() as tmp, BrokerProcess(Path(tmp) / "data") as proc:
        addr = proc.address
        Admin(addr).create_topic("jobs", partitions=1)
        GroupAdmin(addr).create_queue_group("workers", topics=["jobs"])
        with Producer(addr) as p:
            for i in range(delayed):
                p.send("jobs", f"later-{i}".encode(), delay_ms=1_000 + 10 * i)
                for _ in range(immediate // delayed):
                    p.send("jobs", b"now")
            p.flush()
        late: list[int] = []
        with QueueConsumer(addr, group="workers", max_records=100) as q:
            end = time.monotonic() + 30
            while len(late) < delayed and time.monotonic() < end:
                for m in q.poll(0.5):
                    due = dict(m.headers).get("logstream-deliver-at")
                    if due is not None:
                        late.append(int(time.time() * 1000) - int(due))
                    m.ack()
        return sorted(late)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    load = os.getloadavg()[0]
    runs = [
        ("0 records", broker_rss(0, 0)),
        (f"{args.records:,} records, consumed and acked", broker_rss(args.records, 0)),
        (f"{args.records:,} records delayed 1 h", broker_rss(args.records, 3_600_000)),
    ]
    cpu = admission_cpu(args.records, args.rounds)
    late = lateness()
    load_end = os.getloadavg()[0]

    def pct(q: float) -> int:
        return late[min(len(late) - 1, int(q * len(late)))]

    rows = []
    for label, ((rss0, anon0), (rss1, anon1), taken) in runs:
        rows.append(
            f"| {label} | {rss1:.1f} | {rss1 - rss0:+.1f} | {anon1:.1f} | {anon1 - anon0:+.1f} "
            f"| {taken:,} |"
        )
    zero, _, delayed = (r[1] for r in runs)
    anon_per_record = (
        ((delayed[1][1] - delayed[0][1]) - (zero[1][1] - zero[0][1]))
        * 1024
        * 1024
        / max(args.records, 1)
    )
    lines = [
        "## Delayed delivery and TTL (bench_delayed.py)",
        "",
        machine_line(),
        f"Load average at start / end: {load:.2f} / {load_end:.2f} (a shared 2-core machine).",
        "",
        "| broker | RSS after (MiB) | RSS growth | anonymous after (MiB) | anonymous growth "
        "| taken in by the group |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"Broker RSS with {args.records:,} delayed records / with 0: "
        f"**{delayed[1][0] / zero[1][0]:.2f}x**. RSS counts the memory-mapped segment pages "
        "the records were written through (file pages); the anonymous (heap) growth is "
        f"{anon_per_record:.0f} bytes per delayed record: parked rows, admission arrays, "
        "allocator slack.",
        "",
        f"| admission CPU per record ({args.records:,} records, batches of 100, median of "
        f"{args.rounds}) | us/record |",
        "| --- | ---: |",
        *(f"| batches with {k} | {v:.3f} |" for k, v in cpu.items()),
        "",
        f"Lateness of {len(late)} delayed records (received - due, ms) while 5,000 immediate "
        f"ones flow: p50 {pct(0.5)}, p99 {pct(0.99)}, max {late[-1] if late else -1}.",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("delayed", text)


if __name__ == "__main__":
    main()
