"""Read-only views of a data directory, for forensics (``logstream tail --data-dir``, tools).

:class:`DirectorySnapshot` opens a data directory without changing a byte of it: no
``meta/`` is created, no lock is taken (it can run next to a live broker, which holds the
lock), the clean-shutdown marker is read but neither removed nor written, and nothing is
recovered, cut, deleted or rebuilt on disk. Each partition is a :class:`PartitionSnapshot`,
which shares the segment set, the index lookups and the ``pread`` reads with the writable
:class:`~.log.PartitionLog` (:class:`~.partition_reader.PartitionReader`).

The last segment of every partition is scanned in memory (``recovery.scan_batches``: every
CRC, stop at the first bad batch or at the zero tail), whether or not the directory was
closed cleanly, so a crashed directory and a live broker's preallocated active segment both
read up to their last good batch; a bad batch that good batches follow is damage, refused
by name like a writable open's (:meth:`SnapshotSegment.scan`), not the end. Indexes that
are missing or damaged are rebuilt in memory. The view is as of the open;
:meth:`DirectorySnapshot.refresh` picks up what a live writer appended since.

Concurrency: each PartitionSnapshot has its own lock, like a PartitionLog; the directory's
topic table is fixed at the open.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from logstream.errors import (
    KafkaStorageError,
    LogstreamError,
    UnknownTopicOrPartitionError,
)
from logstream.storage import files
from logstream.storage.clean_shutdown import parse_marker
from logstream.storage.config import TopicConfig, parse_config_updates
from logstream.storage.index import read_last_offset_entry
from logstream.storage.loader import RecoveryReport, list_segments, live_bases
from logstream.storage.partition_reader import PartitionReader
from logstream.storage.recovery import (
    ScanResult,
    index_columns,
    last_nonzero,
    pread_all,
    resume_after_damage,
    scan_appended,
    scan_batches,
)
from logstream.storage.segment import ParkedTail
from logstream.storage.segment_reader import SegmentReader
from logstream.storage.segment_set import SegmentSet
from logstream.storage.topic_meta import CREATING, READY, read_meta
from logstream.types import TopicPartition

log = logging.getLogger("logstream.storage")


class SnapshotSegment(SegmentReader):
    """A segment read without writing: rebuilt indexes stay in memory."""

    def scan(self, parked: ParkedTail | None = None) -> tuple[int, int]:
        """Scan the whole file as the last segment: verify every batch and stop at the
        first bad one or at the zero tail. ``size`` becomes the end of the last good batch
        and the indexes are built in memory. Returns (non-zero bytes past that end, batches).

        When good batches lie past the bad one (:meth:`_resume_after`, crash recovery's
        rule: a batch that parses follows it), the bad batch is damage, not a torn tail:
        ``damage`` is set as a writable open sets it, so reads from its offset raise
        CorruptRecordError naming the range and the log end stays where the data ends."""
        if self._fd is None:
            self._fd = os.open(self.log_path, os.O_RDONLY)
        data = pread_all(self._fd, os.fstat(self._fd).st_size)
        result = scan_batches(data, self.base_offset)
        cut = result.end_position
        beyond = last_nonzero(data, cut) - cut
        self.size = cut
        self.next_offset = result.next_offset
        self._max_ts = None
        self._set_memory_indexes(*index_columns(self.base_offset, result.positions, result.headers))
        if not beyond:
            return 0, len(result.headers)
        resumed = self._resume_after(data, result, parked)
        if resumed is not None:
            self.damage = (cut, result.next_offset)
            self.size, self.next_offset = resumed
            log.error(
                "read-only: %s is damaged at position %d (%s); offsets %d..%d are refused "
                "with CORRUPT_MESSAGE",
                self.log_path,
                cut,
                result.failure or "bad batch",
                result.next_offset,
                self.next_offset - 1,
            )
            return 0, len(result.headers)
        log.warning(
            "read-only: %s has %d bytes past its last good batch at position %d (%s); "
            "not read, not cut",
            self.log_path,
            beyond,
            cut,
            result.failure or "torn tail",
        )
        return beyond, len(result.headers)

    def _resume_after(
        self, data: bytes, result: ScanResult, parked: ParkedTail | None
    ) -> tuple[int, int] | None:
        """(end position, next offset) of the good batches after the one where ``result``
        stopped, or None when none is found (a torn tail: the end of what was written).
        The rule is crash recovery's (:func:`~.recovery.resume_after_damage`); the
        clean-shutdown marker's ``parked`` tail and the sealed index's last entry are
        where it looks first."""
        cut = result.end_position
        hints: list[tuple[int, int | None]] = []
        if (
            parked is not None
            and parked.base_offset == self.base_offset
            and parked.last_batch_pos > cut
            and parked.next_offset > result.next_offset
        ):
            hints.append((parked.last_batch_pos, None))
        with contextlib.suppress(OSError, ValueError, IndexError):
            entry = read_last_offset_entry(self.index_path)
            if entry is not None and entry[1] > cut:
                hints.append((entry[1], self.base_offset + entry[0]))
        resumed = resume_after_damage(data, result, hints)
        return None if resumed is None else (resumed[0], resumed[1])

    def extend(self) -> int:
        """Scan the bytes a writer appended past ``size`` since the last scan (same checks
        as :meth:`scan`) and extend the in-memory indexes. Reads ~1 MiB at a time and stops
        at the zero tail, so a live broker's preallocated segment is not read whole. A torn
        or half-written batch just ends the scan; the next call retries from there. Returns
        the number of new batches."""
        if self._fd is None:
            self._fd = os.open(self.log_path, os.O_RDONLY)
        result = scan_appended(self._fd, self.size, self.next_offset)
        if not result.headers:
            return 0
        if self.damage is not None:  # reads past the damage are refused: no index needed
            self.size, self.next_offset = result.end_position, result.next_offset
            return len(result.headers)
        oi, ti = self.indexes()
        new_off, new_time = index_columns(self.base_offset, result.positions, result.headers)
        last_ts = ti.last_timestamp()
        if last_ts is not None:
            keep = new_time[0] > last_ts
            new_time = [c[keep] for c in new_time]
        off_cols = [np.concatenate([a, b]) for a, b in zip(oi.columns(), new_off, strict=True)]
        time_cols = [np.concatenate([a, b]) for a, b in zip(ti.columns(), new_time, strict=True)]
        self._set_memory_indexes(off_cols, time_cols)
        self.size = result.end_position
        self.next_offset = result.next_offset
        self._max_ts = None
        return len(result.headers)


class PartitionSnapshot(PartitionReader[SnapshotSegment]):
    """One partition of a :class:`DirectorySnapshot`: the reads of a PartitionLog, plus
    :meth:`refresh`. Producer state is not loaded (nothing is appended)."""

    def __init__(
        self,
        directory: Path,
        *,
        topic: str,
        partition: int,
        config: TopicConfig,
        clean_shutdown: bool,
        parked: ParkedTail | None = None,
    ) -> None:
        super().__init__(directory, topic=topic, partition=partition, config=config)
        t0 = time.perf_counter()
        with files.storage_errors(f"listing {directory}"):
            sizes = list_segments(directory, tidy=False) if directory.is_dir() else {}
        checkpoint = files.read_checkpoint(directory / files.LOG_START_FILE)
        _, bases = live_bases(sorted(sizes), checkpoint)  # skip, never delete, the rest
        self._segments = SegmentSet(
            [
                SnapshotSegment(
                    directory, b, sizes[b], bases[i + 1] if i + 1 < len(bases) else None
                )
                for i, b in enumerate(bases)
            ]
        )
        beyond, scanned = 0, 0
        last = self._segments.last
        if last is not None:
            with files.storage_errors(f"reading {last.log_path}"):
                beyond, scanned = last.scan(parked)
        self._set_bounds(checkpoint)
        self.recovery_report = RecoveryReport(
            topic=topic,
            partition=partition,
            clean_shutdown=clean_shutdown,
            segments=len(self._segments),
            batches_scanned=scanned,
            bytes_truncated=beyond,
            indexes_rebuilt=False,
            producers=0,
            log_start_offset=self._log_start,
            log_end_offset=self._next_offset,
            duration_ms=(time.perf_counter() - t0) * 1000,
            read_only=True,
        )

    def refresh(self) -> int:
        """Pick up what a live writer appended since the open (or the last refresh): new
        batches of the last segment, then segments rolled since. Returns the new log end
        offset. Meant for a forensics ``tail -f``, not a hot path."""
        with self._lock:
            self._check_readable()
            segments = self._segments
            with files.storage_errors(f"refreshing {self.dir}"):
                last = segments.last
                if last is not None:
                    last.extend()
                newer = []
                if self.dir.is_dir():
                    known = last.base_offset if last is not None else -1
                    for entry in os.scandir(self.dir):
                        base = files.parse_segment_stem(entry.name, files.LOG_SUFFIX)
                        if base is not None and base > known:
                            newer.append(base)
                for base in sorted(newer):
                    tip = segments.last
                    if base != (tip.next_offset if tip is not None else self._log_start):
                        break  # the previous segment's tail is not visible yet: next time
                    seg = SnapshotSegment(self.dir, base, 0)
                    seg.scan()
                    segments.append(seg)
            last = segments.last
            if last is not None:
                self._next_offset = self._flushed_offset = last.next_offset
                self._check_offsets()
            return self._next_offset

    def close(self) -> None:
        """Release every handle; later reads raise KafkaStorageError."""
        with self._lock:
            self._closed = True
            for seg in self._segments:
                seg.release()


@dataclass
class TopicSnapshot:
    """A topic as a snapshot sees it (index = partition number)."""

    name: str
    config: TopicConfig
    partitions: list[PartitionSnapshot] = field(default_factory=list)


class DirectorySnapshot:
    """A read-only view of a data directory; see the module docstring."""

    def __init__(
        self, data_dir: str | os.PathLike[str], *, default_config: TopicConfig | None = None
    ) -> None:
        self.data_dir = Path(data_dir)
        if not self.data_dir.is_dir():
            raise KafkaStorageError(f"data directory {self.data_dir} does not exist")
        self.default_config = default_config if default_config is not None else TopicConfig()
        self.recovery_reports: dict[TopicPartition, RecoveryReport] = {}
        self._topics: dict[str, TopicSnapshot] = {}
        # Metadata files that could not be read: their topics are not in the view.
        self.unreadable_topics: list[tuple[Path, str]] = []
        marker = self.data_dir / files.CLEAN_SHUTDOWN_FILE
        clean = marker.exists()
        self._parked: dict[str, ParkedTail] = {}
        if clean:  # where parked segments end: tells damage from a torn tail
            with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
                self._parked = parse_marker(marker.read_bytes())
        meta_dir = self.data_dir / files.META_DIR
        if meta_dir.is_dir():
            for entry in sorted(os.scandir(meta_dir), key=lambda e: e.name):
                if entry.name.endswith(".json"):
                    self._open_topic(Path(entry.path), clean)

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, default_config: TopicConfig | None = None
    ) -> DirectorySnapshot:
        """Open a read-only view of the data directory at ``path`` (KafkaStorageError when
        it does not exist)."""
        return cls(path, default_config=default_config)

    def _open_topic(self, meta: Path, clean: bool) -> None:
        try:
            doc = read_meta(meta)  # verifies the checksum of version-2 files
            name, count = doc.name, doc.partitions
            overrides = parse_config_updates(doc.config)
            config = TopicConfig.from_dict(overrides, base=self.default_config)
        except LogstreamError as exc:
            log.warning("read-only: skipping unreadable topic metadata %s: %s", meta, exc)
            self.unreadable_topics.append((meta, f"metadata {meta.name} unreadable: {exc}"))
            return
        if doc.state != READY:
            log.warning(
                "read-only: skipping topic %r: it was being %s",
                name,
                "created" if doc.state == CREATING else "deleted",
            )
            return
        topic = TopicSnapshot(name, config)
        for p in range(count):
            dir_name = files.partition_dir_name(name, p)
            part = PartitionSnapshot(
                self.data_dir / dir_name,
                topic=name,
                partition=p,
                config=config,
                clean_shutdown=clean,
                parked=self._parked.get(dir_name),
            )
            topic.partitions.append(part)
            self.recovery_reports[TopicPartition(name, p)] = part.recovery_report
        self._topics[name] = topic

    def __enter__(self) -> DirectorySnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def topics(self) -> list[str]:
        return sorted(self._topics)

    def topic(self, name: str) -> TopicSnapshot:
        topic = self._topics.get(name)
        if topic is None:
            raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
        return topic

    def get_log(self, topic: str, partition: int) -> PartitionSnapshot:
        """The snapshot of ``topic``/``partition``; UnknownTopicOrPartitionError if none."""
        t = self.topic(topic)
        if not isinstance(partition, int) or not 0 <= partition < len(t.partitions):
            raise UnknownTopicOrPartitionError(
                f"topic {topic!r} has no partition {partition} ({len(t.partitions)} partitions)"
            )
        return t.partitions[partition]

    def all_logs(self) -> list[PartitionSnapshot]:
        return [p for t in self._topics.values() for p in t.partitions]

    def refresh(self) -> None:
        """Let every partition pick up what a live broker appended since the open.
        Topics created since are not seen."""
        for part in self.all_logs():
            part.refresh()

    def close(self) -> None:
        for part in self.all_logs():
            part.close()
