"""CPU cost of the read path's framing check on tiny batches (issue 13).

A 1 MiB read of ~6,600 batches of 158 bytes (one 70-byte record each), from one partition,
in one process, CPU time per read (``time.process_time``), the modes interleaved round by
round so a loaded machine moves them alike:

* ``no check``: ``check_frames`` replaced by a no-op: what a read cost before the framing
  rule existed (the floor);
* ``check every read``: the rule applied to every batch of every read, as it was first
  written (the segment's memory of checked batches cleared before each read);
* ``appended here``: this process appended the batches (framed by construction: no check);
* ``on disk, first read``: sealed segments written by an earlier process, read once after
  the open (the check runs, once);
* ``on disk, later reads``: the same ranges read again (remembered as checked).

    python benchmarks/bench_read_framing.py [--rounds 5] [--reads 100] [--write]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine_line, write_section
from logstream.codec import encode_batch
from logstream.storage import LogManager, PartitionLog, TopicConfig, segment_reader
from logstream.storage.segment_reader import EntryRanges

READ = 1 << 20
SEGMENT = 4 << 20


def _fill(log: PartitionLog, nbytes: int) -> int:
    batch = encode_batch([b"x" * 70])
    count = nbytes // len(batch)
    for _ in range(count):
        log.append(batch)
    return len(batch)


def _cpu_us(fn: Callable[[], object], reads: int) -> float:
    t0 = time.process_time()
    for _ in range(reads):
        fn()
    return (time.process_time() - t0) / reads * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reads", type=int, default=100)
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-framing-", dir="."))
    try:
        config = TopicConfig(segment_bytes=SEGMENT)
        # Written by an earlier "process" (closed, reopened): two sealed 4 MiB segments
        # and a parked one.
        with LogManager.open(root / "disk", prefault_pages=False) as mgr:
            mgr.create_topic("t", 1, config=config)
            batch_bytes = _fill(mgr.get_log("t", 0), 10 << 20)
        disk_mgr = LogManager.open(root / "disk", prefault_pages=False)
        disk = disk_mgr.get_log("t", 0)
        here_mgr = LogManager.open(root / "here", prefault_pages=False)
        here_mgr.create_topic("t", 1, config=config)
        here = here_mgr.get_log("t", 0)
        _fill(here, READ + (64 << 10))
        batches = len(here.read(0, READ)) // batch_bytes

        real = segment_reader.check_frames
        disk_segments = disk.segments()  # the benchmark resets their memory
        first_seg = disk_segments[0]

        def no_check() -> object:
            segment_reader.check_frames = lambda buf, positions, bases: len(positions)
            try:
                return disk.read(0, READ)
            finally:
                segment_reader.check_frames = real

        def every_read() -> object:
            first_seg.framed = EntryRanges()
            return disk.read(0, READ)

        offsets = iter(range(0, 10**9, batches))  # fresh 1 MiB ranges for first reads

        def first_read() -> object:
            return disk.read(next(offsets) % (disk.log_end_offset - 2 * batches), READ)

        modes: dict[str, Callable[[], object]] = {
            "no check (before the framing rule)": no_check,
            "check every read (as first written)": every_read,
            "appended here": lambda: here.read(0, READ),
            "on disk, later reads": lambda: disk.read(0, READ),
        }
        samples: dict[str, list[float]] = {name: [] for name in modes}
        firsts: list[float] = []
        for _ in range(args.rounds):
            for name, fn in modes.items():
                samples[name].append(_cpu_us(fn, args.reads))
            for seg in disk_segments:
                seg.framed = EntryRanges()
            firsts.append(_cpu_us(first_read, 20))
        samples["on disk, first read of a range"] = firsts
        here_mgr.close()
        disk_mgr.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    load = os.getloadavg()[0]
    rows = [
        f"| {name} | {statistics.median(v):.0f} us | {min(v):.0f}-{max(v):.0f} us |"
        for name, v in samples.items()
    ]
    table = "\n".join(
        [
            f"One 1 MiB read of {batches:,} batches of {batch_bytes} B, CPU time per read, median "
            f"and range of {args.rounds} interleaved rounds of {args.reads} reads; load average "
            f"{load:.1f} at the end.",
            "",
            "| read | CPU per read (median) | range |",
            "| --- | --- | --- |",
            *rows,
        ]
    )
    print(table)
    if args.write:
        write_section(
            "read-framing",
            "## Read framing check on tiny batches "
            "(benchmarks/bench_read_framing.py)\n\n" + machine_line() + "\n\n" + table,
        )


if __name__ == "__main__":
    main()
