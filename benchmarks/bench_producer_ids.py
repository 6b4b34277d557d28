"""Cost of ``InitProducerId`` as the number of named producers grows (issue 13).

Allocates ids for ``--names`` distinct producer names of ``--name-bytes`` bytes each, then
asks again for every name (the epoch bump a restarting producer makes) and reports the mean
time of a call in the second round and the size of the state file(s). In-process, on a
temporary data directory under the current directory's file system; bounded by the counts.

    python benchmarks/bench_producer_ids.py [--names 300] [--name-bytes 255]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from logstream.broker.producer_ids import ProducerIdManager


def run(names: int, name_bytes: int) -> tuple[float, int]:
    """(mean ms per call in the second round, bytes on disk)."""
    data = Path(tempfile.mkdtemp(prefix="bench-pids-", dir="."))
    try:
        ids = ProducerIdManager(data)
        labels = [f"{i:06d}".ljust(name_bytes, "x") for i in range(names)]
        for label in labels:
            ids.allocate(label)
        started = time.perf_counter()
        for label in labels:
            ids.allocate(label)
        per_call_ms = (time.perf_counter() - started) / names * 1e3
        size = sum(p.stat().st_size for p in data.iterdir() if p.is_file())
        close = getattr(ids, "close", None)
        if close is not None:
            close()
        return per_call_ms, size
    finally:
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--names", type=int, default=300)
    parser.add_argument("--name-bytes", type=int, default=255)
    args = parser.parse_args()
    for n in (1, args.names):
        ms, size = run(n, args.name_bytes)
        print(
            f"{n:>6} names of {args.name_bytes} B: {ms:7.2f} ms per call, "
            f"{size / 1e6:8.3f} MB on disk (pid {os.getpid()})"
        )


if __name__ == "__main__":
    main()
