"""Verify a data directory offline: every batch of every partition, read-only.

``python -m logstream.storage.verify DATA_DIR`` prints one line per damaged offset range
(``topic partition first..last: why``) and exits 1 when there is any, 0 otherwise. It
opens a :class:`~.snapshot.DirectorySnapshot` (no byte written, no lock: it may run next
to a live broker) and reads each partition from its log start to its end through the same
reads a broker serves (the framing rule against the index), checking every batch's CRC
and framing (``codec.walk_frames``, ``codec.validate_batch``). A damaged range is skipped
to its end (or the next segment) and the walk goes on, so one run lists every range: what
an operator needs to move a consumer group past it (``logstream group reset --to-offset
<last + 1>``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from logstream.codec import validate_batch, walk_frames
from logstream.errors import CorruptRecordError, LogstreamError
from logstream.storage.snapshot import DirectorySnapshot, PartitionSnapshot

_READ_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Damage:
    """An offset range that cannot be read (``last`` None: up to the next segment)."""

    topic: str
    partition: int
    first: int
    last: int | None
    why: str

    def __str__(self) -> str:
        span = f"{self.first}..{'?' if self.last is None else self.last}"
        return f"{self.topic} {self.partition} {span}: {self.why}"


def verify_partition(log: PartitionSnapshot) -> list[Damage]:
    """Every damaged range of one partition."""
    found: list[Damage] = []
    pos, end = log.log_start_offset, log.log_end_offset
    bases = [s.base_offset for s in log._segments]
    while pos < end:
        try:
            data = log.read(pos, _READ_BYTES)
            frames = list(walk_frames(data, pos))
            for i, (at, header) in enumerate(frames):
                try:
                    validate_batch(data, at)
                except CorruptRecordError as exc:  # the next batch's base bounds the range
                    if i + 1 < len(frames):
                        exc.last_offset = frames[i + 1][1].base_offset - 1
                    raise
                pos = max(pos, header.next_offset)
            continue
        except CorruptRecordError as exc:
            first = pos if exc.first_offset is None else max(exc.first_offset, pos)
            last = exc.last_offset if exc.last_offset is not None and exc.last_offset >= first \
                else None
            found.append(Damage(log.topic, log.partition, first, last, exc.message))
            pos = last + 1 if last is not None else min([b for b in bases if b > first] or [end])
    return found


def verify_data_dir(path: str | Path) -> list[Damage]:
    """Every damaged range in the data directory at ``path``."""
    with DirectorySnapshot.open(path) as snap:
        return [d for log in snap.all_logs() for d in verify_partition(log)]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m logstream.storage.verify DATA_DIR", file=sys.stderr)
        return 2
    try:
        damages = verify_data_dir(argv[0])
    except LogstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for d in damages:
        print(d)
    return 1 if damages else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
