"""Opening a writable partition directory (Kafka's LogLoader): list, recover, replay.

:func:`load_partition` runs once per partition at open, before the partition serves
anything:

1. List the directory. Leftover ``*.tmp`` / ``*.deleted`` files and index files without a
   data file are removed (derived or half-written data).
2. Find the end of the last segment. After a clean shutdown it is either parked, and the
   marker's :class:`~.segment.ParkedTail` is checked against one batch header and adopted,
   or sealed, and its last index entry gives it. Otherwise (or when the marker's record
   does not match the file) the segment is recovered (``Segment.recover``: scan, verify
   CRCs past the last trusted index entry, truncate at the first bad batch).
3. Finish an interrupted retention: segments that lie wholly below the ``log-start-offset``
   checkpoint are deleted (the checkpoint is written before any segment is deleted). A
   checkpoint past the log end is ignored with an error (it cannot be right).
4. Rebuild the idempotent producers' state from its snapshot plus a header-only walk of the
   batches after it (the recovery scan's headers for the last segment).

Sealed segments are trusted (they were fsync'ed when sealed); their indexes are checked
when first read. Concurrency: called by the opening thread only, before the log is shared.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from logstream.clock import Clock
from logstream.codec import BatchHeader
from logstream.storage import files, prefault
from logstream.storage.producer_state import ProducerStateManager
from logstream.storage.segment import ParkedTail, Segment
from logstream.storage.segment_set import SegmentSet

log = logging.getLogger("logstream.storage")


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What opening a partition found and did."""

    topic: str
    partition: int
    clean_shutdown: bool
    segments: int
    batches_scanned: int
    bytes_truncated: int
    indexes_rebuilt: bool
    producers: int
    log_start_offset: int
    log_end_offset: int
    duration_ms: float
    read_only: bool = False  # then bytes_truncated were found past the end, not cut


@dataclass(frozen=True, slots=True)
class LoadedPartition:
    """The result of :func:`load_partition`: what the PartitionLog starts from."""

    segments: SegmentSet[Segment]
    checkpoint: int | None  # the log-start-offset checkpoint, if any
    producers: ProducerStateManager
    clean: bool  # False when the last segment was recovered
    batches_scanned: int
    bytes_truncated: int


def list_segments(directory: Path, *, tidy: bool) -> dict[int, int]:
    """``{base_offset: file size}`` of the data files in ``directory``. With ``tidy``,
    half-written files and index files without a data file are removed on the way."""
    sizes: dict[int, int] = {}
    stems: set[int] = set()
    for entry in os.scandir(directory):
        name = entry.name
        if tidy and name.endswith((files.TMP_SUFFIX, files.DELETED_SUFFIX)):
            files.remove_quietly(entry.path)
            continue
        base = files.parse_segment_stem(name, files.LOG_SUFFIX)
        if base is not None:
            sizes[base] = entry.stat().st_size
            continue
        for suffix in (files.INDEX_SUFFIX, files.TIMEINDEX_SUFFIX):
            b = files.parse_segment_stem(name, suffix)
            if b is not None:
                stems.add(b)
    if tidy:
        for orphan in stems - sizes.keys():  # an index without a log: derived data
            stem = files.segment_stem(orphan)
            files.remove_quietly(directory / (stem + files.INDEX_SUFFIX))
            files.remove_quietly(directory / (stem + files.TIMEINDEX_SUFFIX))
    return sizes


def live_bases(bases: list[int], checkpoint: int | None) -> tuple[list[int], list[int]]:
    """Split sorted base offsets into (below the checkpointed log start, the rest): the
    first list is what an interrupted retention had still to delete."""
    k = 0
    if checkpoint is not None:
        while len(bases) - k >= 2 and bases[k + 1] <= checkpoint:
            k += 1
    return bases[:k], bases[k:]


def load_partition(
    directory: Path,
    *,
    clock: Clock,
    prefaulter: prefault.Prefaulter | None,
    clean: bool,
    parked_tail: ParkedTail | None,
) -> LoadedPartition:
    """Open the segments of ``directory`` for writing; see the module docstring."""
    files.make_dir(directory)
    sizes = list_segments(directory, tidy=True)
    checkpoint = files.read_checkpoint(directory / files.LOG_START_FILE)
    bases = sorted(sizes)
    segments = SegmentSet(
        [
            Segment(
                directory,
                b,
                sizes[b],
                bases[i + 1] if i + 1 < len(bases) else None,
                prefaulter=prefaulter,
            )
            for i, b in enumerate(bases)
        ]
    )
    truncated, scanned = 0, 0
    recovered: list[BatchHeader] | None = None
    last = segments.last
    if last is not None:
        if clean and parked_tail is not None and parked_tail.base_offset == last.base_offset:
            if not last.adopt_parked_tail(parked_tail):
                log.warning(
                    "%s: the clean-shutdown record of its last segment does not "
                    "match the file; recovering it",
                    directory,
                )
                clean = False
        elif clean and not last.load_next_offset():
            # An empty or foreign marker over a crashed directory: its zero tail or torn
            # batch must be recovered, not served.
            log.warning(
                "%s: the clean-shutdown marker says its last segment is sealed, "
                "but its index does not match the file; recovering it",
                directory,
            )
            clean = False
        if not clean:
            truncated, scan = last.recover()
            recovered = scan.headers
            scanned = len(scan.headers)
    checkpoint = _finish_retention(directory, segments, checkpoint)
    start = _log_start(segments, checkpoint)
    producers = _load_producer_state(directory, segments, start, clock, clean, recovered)
    for seg in segments:  # an idle partition holds no fd (reads reopen lazily)
        seg.release_fd()
    return LoadedPartition(segments, checkpoint, producers, clean, scanned, truncated)


def _finish_retention(
    directory: Path, segments: SegmentSet[Segment], checkpoint: int | None
) -> int | None:
    """Delete the segments wholly below the log-start checkpoint (a retention that
    checkpointed the new start, then crashed), once the log end is known. A checkpoint
    past the log end cannot be right (it would delete every sealed segment): it is
    ignored, with an error naming the file, and nothing is deleted."""
    last = segments.last
    if checkpoint is None or last is None:
        return checkpoint
    if checkpoint > last.next_offset:
        log.error(
            "%s says the log starts at %d, past its end %d: ignoring it, no segment deleted",
            directory / files.LOG_START_FILE,
            checkpoint,
            last.next_offset,
        )
        return None
    doomed, _ = live_bases(segments.bases, checkpoint)
    for seg in segments.drop_prefix(len(doomed)):
        seg.delete()
    return checkpoint


def _log_start(segments: SegmentSet[Segment], checkpoint: int | None) -> int:
    last = segments.last
    if last is None:
        return checkpoint or 0
    return min(max(checkpoint or 0, segments[0].base_offset), last.next_offset)


def _load_producer_state(
    directory: Path,
    segments: SegmentSet[Segment],
    log_start: int,
    clock: Clock,
    clean: bool,
    recovered: list[BatchHeader] | None,
) -> ProducerStateManager:
    end = segments.last.next_offset if segments.last is not None else log_start
    snap = ProducerStateManager.load_snapshot(directory / files.PRODUCER_STATE_FILE, clock.now_ms())
    producers = ProducerStateManager()
    if snap is not None and snap[1] <= end:
        producers, start = snap
    elif snap is None and clean:
        return producers  # a clean close writes a snapshot whenever there is state to keep
    else:
        start = log_start
    if start >= end:
        return producers
    for i, seg in enumerate(segments):
        if seg.next_offset <= start:
            continue
        if i == len(segments) - 1 and recovered is not None:
            headers = recovered
        else:
            headers = seg.headers_from(start)
        producers.replay([h for h in headers if h.base_offset >= start], clock.now_ms())
    return producers


def timed_report(
    t0: float,
    *,
    topic: str,
    partition: int,
    loaded: LoadedPartition,
    producers: int,
    log_start: int,
    log_end: int,
) -> RecoveryReport:
    """The RecoveryReport of a writable open that started at ``t0`` (perf_counter)."""
    segments = loaded.segments
    report = RecoveryReport(
        topic=topic,
        partition=partition,
        clean_shutdown=loaded.clean,
        segments=len(segments),
        batches_scanned=loaded.batches_scanned,
        bytes_truncated=loaded.bytes_truncated,
        indexes_rebuilt=any(s.indexes_rebuilt for s in segments),
        producers=producers,
        log_start_offset=log_start,
        log_end_offset=log_end,
        duration_ms=(time.perf_counter() - t0) * 1000,
    )
    if not loaded.clean and segments:
        log.info(
            "recovered %s-%d: %d batches scanned, %d bytes truncated, offsets [%d, %d)",
            topic,
            partition,
            loaded.batches_scanned,
            loaded.bytes_truncated,
            log_start,
            log_end,
        )
    return report
