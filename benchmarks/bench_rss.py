"""Broker memory while the log grows from 1 to 10 GB (issue 6: "RSS stays flat").

A broker subprocess on 127.0.0.1; one producer (``send_batch``, 16 KiB records, acks=leader)
writes 10 GiB into one partition with 256 MiB segments; the broker's VmRSS and RssAnon are
sampled from /proc after every GiB. File-backed resident pages are the memory-mapped active
segment and page cache the kernel may drop; the anonymous part is the broker's own heap, which
is what must not grow with the log. Bounded: stops at 10 GiB or 5 minutes, whichever first;
the data directory is removed afterwards.

    python benchmarks/bench_rss.py [--gib N]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_line, write_section

from logstream.client import Admin, Producer
from logstream.testing.broker import BrokerProcess

GIB = 1 << 30
RECORD = 16 * 1024
PER_CALL = 32  # records per send_batch call: 512 KiB, one batch
TIME_LIMIT_S = 300.0


def _rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, RssAnon) of ``pid`` in KiB."""
    rss = anon = 0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("RssAnon:"):
                anon = int(line.split()[1])
    return rss, anon


def run(gib: int = 10) -> str:
    root = Path(tempfile.mkdtemp(prefix="logstream-bench-rss-"))
    rows: list[tuple[int, int, int, float]] = []
    try:
        with BrokerProcess(root / "data").start() as broker:
            with Admin(broker.address) as admin:
                admin.create_topic("rss", partitions=1, config={"segment_bytes": str(256 << 20)})
            payloads = [os.urandom(RECORD) for _ in range(PER_CALL)]
            started = time.monotonic()
            written = 0
            rows.append((0, *_rss_kib(broker.pid), 0.0))
            with Producer(broker.address, linger_ms=1, acks="leader") as producer:
                for step in range(1, gib + 1):
                    while written < step * GIB:
                        producer.send_batch("rss", payloads, partition=0)
                        written += RECORD * PER_CALL
                    producer.flush()
                    rows.append((step, *_rss_kib(broker.pid), time.monotonic() - started))
                    if time.monotonic() - started > TIME_LIMIT_S:
                        break
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base_anon = rows[1][2] if len(rows) > 1 else rows[0][2]
    last_anon = rows[-1][2]
    table = [
        f"| {g} GiB | {rss / 1024:.0f} | {anon / 1024:.0f} | {t:.0f} |" for g, rss, anon, t in rows
    ]
    growth_mib = (last_anon - base_anon) / 1024
    verdict = "flat" if growth_mib < 32 else f"grew {growth_mib:.0f} MiB"
    gb_s = (rows[-1][0] * GIB) / rows[-1][3] / 1e9 if rows[-1][3] else 0.0
    return "\n".join(
        [
            "## Broker memory while the log grows",
            "",
            f"Machine: {machine_line()}",
            "",
            f"One partition, 256 MiB segments, {RECORD // 1024} KiB records sent with "
            f"`send_batch` ({PER_CALL} per call), acks=leader; {gb_s:.2f} GB/s overall. "
            "RSS includes the memory-mapped active segment (file-backed, droppable); "
            "the anonymous part is the broker's heap.",
            "",
            "| log size | VmRSS MiB | RssAnon MiB | elapsed s |",
            "| --- | --- | --- | --- |",
            *table,
            "",
            f"Anonymous memory from 1 GiB to {rows[-1][0]} GiB: {base_anon / 1024:.0f} -> "
            f"{last_anon / 1024:.0f} MiB ({verdict}).",
        ]
    )


if __name__ == "__main__":
    gib = 10
    if "--gib" in sys.argv:
        gib = int(sys.argv[sys.argv.index("--gib") + 1])
    section = run(gib)
    print(section)
    if "--no-write" not in sys.argv:
        write_section("rss", section)
