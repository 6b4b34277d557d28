#!/usr/bin/env python3
"""Print the batches and index entries of one segment (Kafka's DumpLogSegments analogue).

Usage: python tools/dump_segment.py PATH.log [--no-index] [--limit N]

Read-only: works on a live or crashed data directory without changing it. For each batch:
file position, base offset, record count, first/max timestamp, producer id/epoch/base
sequence, and whether its CRC checks out. Then the .index and .timeindex entries (for an
untrimmed, preallocated index only the non-zero prefix that looks valid is printed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from logstream.codec import HEADER_SIZE, read_header, validate_batch
from logstream.errors import CorruptRecordError
from logstream.storage.files import parse_segment_stem
from logstream.storage.index import OffsetIndex, TimeIndex


def dump(path: Path, *, show_index: bool = True, limit: int | None = None) -> int:
    """Print the segment; returns the number of problems seen."""
    base = parse_segment_stem(path.name)
    if base is None:
        print(f"{path}: not a segment file name (<20 digits>.log)", file=sys.stderr)
        return 1
    data = path.read_bytes()
    print(f"segment {path} base_offset={base} file_bytes={len(data)}")
    pos, shown, problems, expected = 0, 0, 0, base
    while len(data) - pos >= HEADER_SIZE:
        if not any(data[pos : pos + HEADER_SIZE]):
            print(f"zero tail from position {pos} ({len(data) - pos} bytes)")
            break
        try:
            h = read_header(data, pos)
        except CorruptRecordError as exc:
            print(f"position={pos} unreadable header: {exc}")
            problems += 1
            break
        try:
            validate_batch(data, pos)
            crc = "ok"
        except CorruptRecordError as exc:
            crc = f"BAD ({exc})"
            problems += 1
        gap = "" if h.base_offset == expected else f" OFFSET-GAP(expected {expected})"
        if gap:
            problems += 1
        if limit is None or shown < limit:
            print(
                f"position={pos} base_offset={h.base_offset} count={h.record_count} "
                f"length={h.batch_length} first_ts={h.first_timestamp} "
                f"max_ts={h.max_timestamp} producer_id={h.producer_id} "
                f"epoch={h.producer_epoch} base_seq={h.base_sequence} "
                f"compression={h.compression} crc={crc}{gap}"
            )
            shown += 1
        if crc != "ok" or h.batch_length < HEADER_SIZE:
            break
        pos += h.batch_length
        expected = h.next_offset
    else:
        if pos < len(data):
            print(f"trailing {len(data) - pos} bytes after the last batch")
    if show_index:
        _dump_index(
            path.with_suffix(".index"), OffsetIndex, ("relative_offset", "position"), base, limit
        )
        _dump_index(
            path.with_suffix(".timeindex"),
            TimeIndex,
            ("max_timestamp", "relative_offset"),
            base,
            limit,
        )
    return problems


def _dump_index(
    path: Path, cls: type, names: tuple[str, str], base: int, limit: int | None
) -> None:
    cols = cls.read_raw_columns(path)
    if cols is None:
        print(f"{path.name}: missing or of a bad size")
        return
    a, b = cols[0].tolist(), cols[1].tolist()
    print(f"{path.name}: capacity {len(a)} entries")
    prev: tuple[int, int] | None = None
    for k, (x, y) in enumerate(zip(a, b, strict=True)):
        if prev is not None and (x <= prev[0] or y <= prev[1]):
            print(f"  (entries end at {k}; the rest is preallocated or damaged)")
            break
        if limit is None or k < limit:
            extra = (
                f" offset={base + y}" if names[1] == "relative_offset" else (f" offset={base + x}")
            )
            print(f"  [{k}] {names[0]}={x} {names[1]}={y}{extra}")
        prev = (x, y)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="a <20 digits>.log segment file")
    parser.add_argument("--no-index", action="store_true", help="skip the index files")
    parser.add_argument("--limit", type=int, default=None, help="print at most N entries")
    args = parser.parse_args(argv)
    if not args.path.is_file():
        print(f"{args.path}: no such file", file=sys.stderr)
        return 1
    problems = dump(args.path, show_index=not args.no_index, limit=args.limit)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
