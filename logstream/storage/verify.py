"""Verify a data directory offline: every batch of every partition, read-only.

``logstream verify DATA_DIR`` (the CLI, ``logstream/cli/verify.py``) and ``python -m
logstream.storage.verify DATA_DIR`` print one line per damaged offset range (``topic
partition first..last: why``) and exit 1 when there is any, 0 otherwise, 2 on a usage or
I/O error. The scan opens a :class:`~.snapshot.DirectorySnapshot` (no byte written, no
lock: it may run next to a live broker) and reads each partition from its log start to its
end through the same reads a broker serves (the framing rule against the index), checking
every batch's CRC and framing (``codec.walk_frames``, ``codec.validate_batch``). A damaged
range is skipped to its end (or the next segment) and the walk goes on, so one run lists
every range: what an operator needs to move a consumer group past it (``logstream group
reset --to-offset <last + 1>``). Topic metadata the snapshot could not read is reported
too (``topic -: metadata ...``): its partitions were not checked. A torn tail (non-zero
bytes after the last good batch of a last segment and no good batch after them: what a
crash or a live writer leaves) is a note, not damage.

Concurrency: one thread; a ``progress`` callback is called from it after every read.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from logstream.codec import validate_batch, walk_frames
from logstream.errors import CorruptRecordError, LogstreamError
from logstream.storage.snapshot import DirectorySnapshot, PartitionSnapshot

_READ_BYTES = 1 << 20

Progress = Callable[[int], None]
"""Called with the number of bytes just checked (a partition's bytes add up to its size)."""


@dataclass(frozen=True, slots=True)
class Damage:
    """An offset range that cannot be read (``last`` None: up to the next segment).
    ``partition`` is None for a topic whose metadata could not be read at all."""

    topic: str
    partition: int | None
    first: int | None
    last: int | None
    why: str

    def __str__(self) -> str:
        if self.partition is None or self.first is None:
            return f"{self.topic} -: {self.why}"
        span = f"{self.first}..{'?' if self.last is None else self.last}"
        return f"{self.topic} {self.partition} {span}: {self.why}"

    def as_dict(self) -> dict[str, object]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "first_offset": self.first,
            "last_offset": self.last,
            "why": self.why,
        }


@dataclass(frozen=True, slots=True)
class PartitionResult:
    """What the scan of one partition found."""

    topic: str
    partition: int
    log_start_offset: int
    log_end_offset: int
    size_bytes: int
    damage: list[Damage]
    unread_tail_bytes: int = 0  # non-zero bytes past the last good batch of a torn tail

    def tail_note(self) -> str | None:
        """A line about a torn tail (not damage: what a crashed or live writer leaves)."""
        if not self.unread_tail_bytes:
            return None
        return (
            f"{self.topic} {self.partition} tail: {self.unread_tail_bytes} bytes past "
            f"offset {self.log_end_offset - 1} not read (a torn write; a broker's "
            "recovery cuts them)"
        )


@dataclass
class VerifyReport:
    """Every partition scanned, every damaged range, every unreadable metadata file."""

    partitions: list[PartitionResult] = field(default_factory=list)
    unreadable_topics: list[Damage] = field(default_factory=list)

    @property
    def damage(self) -> list[Damage]:
        return self.unreadable_topics + [d for p in self.partitions for d in p.damage]

    @property
    def size_bytes(self) -> int:
        return sum(p.size_bytes for p in self.partitions)

    @property
    def offsets(self) -> int:
        return sum(p.log_end_offset - p.log_start_offset for p in self.partitions)


def verify_partition(log: PartitionSnapshot, progress: Progress | None = None) -> list[Damage]:
    """Every damaged range of one partition; ``progress`` gets the bytes read as it goes."""
    found: list[Damage] = []
    pos, end = log.log_start_offset, log.log_end_offset
    bases = [s.base_offset for s in log.segments()]
    while pos < end:
        try:
            data = log.read(pos, _READ_BYTES)
            if progress is not None:
                progress(len(data))
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
            last = (
                exc.last_offset
                if exc.last_offset is not None and exc.last_offset >= first
                else None
            )
            found.append(Damage(log.topic, log.partition, first, last, exc.message))
            pos = last + 1 if last is not None else min([b for b in bases if b > first] or [end])
    return found


def verify_snapshot(
    snap: DirectorySnapshot,
    *,
    topics: Iterable[str] | None = None,
    progress: Progress | None = None,
    on_partition: Callable[[PartitionResult], None] | None = None,
) -> VerifyReport:
    """Scan every partition of ``snap`` (or of ``topics`` only: UnknownTopicOrPartitionError
    for a name it does not hold). ``on_partition`` is called after each partition."""
    report = VerifyReport()
    wanted = None if topics is None else list(topics)
    for path, why in snap.unreadable_topics:
        if wanted is None or path.stem in wanted:
            report.unreadable_topics.append(Damage(path.stem, None, None, None, why))
    logs = (
        snap.all_logs()
        if wanted is None
        else [p for name in wanted for p in snap.topic(name).partitions]
    )
    for log in logs:
        size = log.size_bytes
        done = 0

        def counted(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(n)

        damage = verify_partition(log, counted)
        if progress is not None and done < size:
            progress(size - done)  # skipped damage and bytes below the log start
        result = PartitionResult(
            log.topic,
            log.partition,
            log.log_start_offset,
            log.log_end_offset,
            size,
            damage,
            log.recovery_report.bytes_truncated,
        )
        report.partitions.append(result)
        if on_partition is not None:
            on_partition(result)
    return report


def verify_data_dir(path: str | Path) -> list[Damage]:
    """Every damaged range in the data directory at ``path``."""
    with DirectorySnapshot.open(path) as snap:
        return verify_snapshot(snap).damage


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
