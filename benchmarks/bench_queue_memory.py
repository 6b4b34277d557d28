"""Broker memory with many queue records in flight or delayed (issue 14), through a real
broker.

Two states, each on a fresh broker with one topic of N records of 100 B (default
1,000,000) and one queue group:

- **in flight**: a member acquires all N (``window_size`` N, a one-hour lease) and acks
  none;
- **delayed**: all N produced with a one-hour delay; a member's fetches admit them (the
  window parks them as it slides; default window 10,000).

For each: the broker process's RSS and anonymous RSS (``/proc/PID/status``) after the
records were written (before the group) and after the state was reached; and, with the
broker in this process, what ``tracemalloc`` traces to the broker's and the queue engine's
code (``logstream/broker``, ``logstream/coordinator``) at that point, and its peak. The
member fetches with the raw transport and keeps nothing, so the client holds no record.

    python benchmarks/bench_queue_memory.py [--records 1000000] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_line, write_section

from logstream import Admin, GroupAdmin, Producer
from logstream.client.transport import Transport
from logstream.protocol import queue_pb2
from logstream.testing.broker import BrokerProcess, run_broker

HOUR_MS = 3_600_000
PAGE = 20_000
TIME_LIMIT_S = 600.0
ENGINE_CODE = (os.sep.join(("logstream", "broker")), os.sep.join(("logstream", "coordinator")))


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, RssAnon) of ``pid`` in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "RssAnon"):
            fields[name] = int(rest.split()[0]) / 1024
    return fields["VmRSS"], fields["RssAnon"]


def fill(addr: str, records: int, delay_ms: int | None) -> None:
    with Admin(addr) as admin:
        admin.create_topic("jobs", partitions=1)
    with Producer(addr, linger_ms=20) as p:
        for _ in range(records):
            p.send("jobs", b"x" * 100, delay_ms=delay_ms)
        p.flush()


def reach(addr: str, records: int, delayed: bool) -> int:
    """Create the group and fetch until ``records`` are acquired (or, ``delayed``, taken
    in as delayed); returns how many were."""
    settings: dict[str, Any] = {"lease_ms": HOUR_MS}
    if not delayed:
        settings["window_size"] = records
    ga = GroupAdmin(addr)
    ga.create_queue_group("workers", topics=["jobs"], **settings)
    t = Transport(addr)
    member = uuid.uuid4().hex
    t.queue_join(queue_pb2.QueueJoinRequest(group="workers", member_id=member), timeout=30)
    deadline = time.monotonic() + TIME_LIMIT_S
    done = 0
    while time.monotonic() < deadline:
        t.queue_fetch(
            queue_pb2.QueueFetchRequest(
                group="workers", member_id=member, max_records=PAGE, max_wait_ms=100
            ),
            timeout=60,
        )
        total = ga.describe_queue_group("workers").total
        done = total.delayed if delayed else total.acquired
        if done >= records:
            break
    t.close()
    ga.close()
    return done


def in_process(records: int, delayed: bool) -> tuple[float, float]:
    """(MiB traced to the broker's code once the state is reached, peak MiB meanwhile)."""
    with tempfile.TemporaryDirectory() as tmp, run_broker(Path(tmp) / "data") as broker:
        fill(broker.address, records, HOUR_MS if delayed else None)
        tracemalloc.start()
        try:
            reach(broker.address, records, delayed)
            time.sleep(0.5)
            snap = tracemalloc.take_snapshot()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    engine = snap.filter_traces([tracemalloc.Filter(True, f"*{code}*") for code in ENGINE_CODE])
    traced = sum(s.size for s in engine.statistics("filename"))
    return traced / 2**20, peak / 2**20


def broker_process(
    records: int, delayed: bool
) -> tuple[tuple[float, float], tuple[float, float], int]:
    """((RSS, anon) MiB before the group, after the state was reached, records there)."""
    with tempfile.TemporaryDirectory() as tmp, BrokerProcess(Path(tmp) / "data") as proc:
        fill(proc.address, records, HOUR_MS if delayed else None)
        time.sleep(0.5)
        before = rss_mib(proc.pid)
        done = reach(proc.address, records, delayed)
        time.sleep(0.5)
        return before, rss_mib(proc.pid), done


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    n = args.records
    load = os.getloadavg()[0]
    rows = []
    for label, delayed in (("in flight (acquired, not acked)", False), ("delayed 1 h", True)):
        started = time.monotonic()
        (rss0, anon0), (rss1, anon1), done = broker_process(n, delayed)
        took = time.monotonic() - started
        traced, peak = in_process(n, delayed)
        rows.append(
            f"| {n:,} {label} | {done:,} | {rss1:.0f} ({rss1 - rss0:+.0f}) "
            f"| {anon1:.0f} ({anon1 - anon0:+.0f}) | {(anon1 - anon0) * 2**20 / n:.0f} "
            f"| {traced:.1f} ({traced * 2**20 / n:.0f} B/record), peak {peak:.1f} | {took:.0f} |"
        )
        print(rows[-1], flush=True)
    lines = [
        "## Queue groups: broker memory with records in flight or delayed (bench_queue_memory.py)",
        "",
        machine_line(),
        f"Load average at start / end: {load:.2f} / {os.getloadavg()[0]:.2f} "
        "(a shared 2-core machine).",
        "",
        "One topic, one partition, 100 B records; a member acquires them all (window N, "
        "lease 1 h, nothing acked), or they are produced with a 1 h delay and admitted "
        "(window 10,000: the rest parked). RSS of the broker process after writing the "
        "records and after the state was reached (growth in brackets; file pages of the "
        "memory-mapped segments count in RSS, not in anonymous); traced: `tracemalloc` of "
        "the same run with the broker in process, the memory allocated from "
        "`logstream/broker` and `logstream/coordinator` code still held.",
        "",
        "| state | records there | RSS MiB | anonymous MiB | anonymous B/record "
        "| traced MiB | broker run s |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: |",
        *rows,
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("queue-memory", text)


if __name__ == "__main__":
    main()
