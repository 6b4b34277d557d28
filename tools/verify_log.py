#!/usr/bin/env python3
"""Check a logstream data directory end to end, read-only; exit 1 on any problem.

Usage: python tools/verify_log.py DATA_DIR [--quiet]

For every partition directory: every batch's length and CRC (codec.validate_batch), offsets
contiguous inside each segment and from one segment to the next, segment names equal to
their first batch's base offset, and both index files equal to what a rebuild from the log
would write (an untrimmed, preallocated index of a crashed active segment is compared on
its valid prefix and reported as a note, not a problem). Unlike opening the directory with
LogManager (which would recover it), this tool never changes a file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from logstream.storage import files
from logstream.storage.index import OffsetIndex, TimeIndex
from logstream.storage.recovery import index_columns, scan_batches


def verify_partition(pdir: Path, report: list[str], notes: list[str]) -> int:
    """Returns the number of batches checked; appends problems to ``report``."""
    bases = sorted(
        b for b in (files.parse_segment_stem(p.name) for p in pdir.iterdir()) if b is not None
    )
    start = files.read_checkpoint(pdir / files.LOG_START_FILE)
    expected: int | None = None
    checked = 0
    for i, base in enumerate(bases):
        seg = pdir / (files.segment_stem(base) + files.LOG_SUFFIX)
        data = seg.read_bytes()
        result = scan_batches(data, base)
        checked += len(result.headers)
        last = i == len(bases) - 1
        tail = data[result.end_position :]
        if result.failure:
            report.append(f"{seg}: {result.failure}")
        elif tail.strip(b"\0"):
            report.append(f"{seg}: {len(tail)} unparseable bytes at {result.end_position}")
        elif tail and not last:
            report.append(f"{seg}: sealed segment has a zero tail of {len(tail)} bytes")
        elif tail:
            notes.append(f"{seg}: untrimmed active segment (crash or open); recovery trims it")
        if expected is not None and base != expected:
            report.append(f"{seg}: base offset {base}, previous segment ended at {expected}")
        expected = result.next_offset
        off_cols, time_cols = index_columns(base, result.positions, result.headers)
        for path, cls, want in (
            (seg.with_suffix(files.INDEX_SUFFIX), OffsetIndex, off_cols),
            (seg.with_suffix(files.TIMEINDEX_SUFFIX), TimeIndex, time_cols),
        ):
            cols = cls.read_raw_columns(path)
            if cols is None and last and not path.exists():
                # the active or parked last segment keeps its indexes in memory (decision 0011)
                notes.append(f"{path}: none for the last segment (rebuilt from the log)")
                continue
            if cols is None:
                report.append(f"{path}: missing or of a bad size (a reopen rebuilds it)")
                continue
            n = len(want[0])
            same_size = len(cols[0]) == n
            prefix_ok = len(cols[0]) >= n and all(
                np.array_equal(c[:n], w) for c, w in zip(cols, want, strict=True)
            )
            if same_size and prefix_ok:
                continue
            if last and tail and prefix_ok:
                continue  # preallocated index of the active segment
            report.append(f"{path}: entries disagree with the log (a reopen rebuilds it)")
    if start is not None and bases and not bases[0] <= start <= (expected or 0):
        report.append(f"{pdir}: log-start-offset {start} outside [{bases[0]}, {expected}]")
    return checked


def verify(data_dir: Path, quiet: bool = False) -> int:
    report: list[str] = []
    notes: list[str] = []
    meta = data_dir / files.META_DIR
    if not meta.is_dir():
        print(f"{data_dir}: not a logstream data directory (no meta/)", file=sys.stderr)
        return 1
    partitions: list[Path] = []
    for m in sorted(meta.glob("*.json")):
        try:
            doc = json.loads(m.read_bytes())
            partitions += [data_dir / f"{doc['name']}-{p}" for p in range(doc["partitions"])]
        except (ValueError, KeyError) as exc:
            report.append(f"{m}: unreadable topic metadata: {exc}")
    total = 0
    for pdir in partitions:
        if not pdir.is_dir():
            report.append(f"{pdir}: partition directory missing")
            continue
        n = verify_partition(pdir, report, notes)
        total += n
        if not quiet:
            print(f"{pdir.name}: {n} batches checked")
    for note in notes:
        print(f"note: {note}")
    for problem in report:
        print(f"PROBLEM: {problem}")
    print(f"{len(partitions)} partitions, {total} batches, {len(report)} problems")
    return 1 if report else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--quiet", action="store_true", help="only print problems and totals")
    args = parser.parse_args(argv)
    return verify(args.data_dir, args.quiet)


if __name__ == "__main__":
    sys.exit(main())
