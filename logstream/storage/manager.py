"""LogManager: a data directory of topics and their partitions ("embedded mode").

Data directory layout::

    <data-dir>/
      .lock                      flock'ed while a LogManager has the directory open
      .clean-shutdown            present only between a clean close() and the next open
      meta/<topic>.json          {"version": 1, "name": ..., "partitions": N,
                                  "config": {<overrides of the default TopicConfig>}}
      <topic>-<partition>/       one PartitionLog each (see log.py, segment.py, index.py)

Topic metadata is written with files.atomic_write (tmp, fsync, rename, fsync dir), so a crash
leaves the old or the new version. Creating a topic writes its metadata first and then the
partition directories (empty: segments are created on first append); deleting removes the
metadata first, then renames each partition directory to ``*.deleted`` and removes it; a
``*.deleted`` directory found at open is finished off.

Crash story: ``open`` reads and removes ``.clean-shutdown``. If it was there, no partition is
scanned (parked last segments take their end from the marker, checked against one batch
header); otherwise every partition recovers its last segment (log.py). The open's syncs are
one ``syncfs`` at its end. ``close`` parks every active segment (no trim, decision 0011),
makes everything durable with one ``syncfs`` and writes the marker (with the parked
segments' ends) only if all partitions reached disk.

Thread safety: topic-level operations (create, delete, alter, add partitions) take the
manager's lock; appends and reads go straight to a PartitionLog, which has its own lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logstream.clock import SYSTEM_CLOCK, Clock
from logstream.errors import (
    InvalidConfigError,
    InvalidPartitionsError,
    KafkaStorageError,
    LogstreamError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from logstream.storage import clean_shutdown, files, orphans
from logstream.storage.config import (
    MAX_PARTITIONS,
    TopicConfig,
    check_topic_overrides,
    normalize_key,
    parse_config_updates,
    validate_topic_name,
)
from logstream.storage.dir_lock import DirectoryLock
from logstream.storage.log import PartitionLog, RecoveryReport
from logstream.storage.segment import ParkedTail
from logstream.storage.topic_meta import (
    CREATING,
    DELETING,
    READY,
    TopicMeta,
    format_meta,
    read_meta,
)
from logstream.types import TopicPartition

log = logging.getLogger("logstream.storage")


@dataclass
class Topic:
    """A topic: its name, effective config and partitions (index = partition number)."""

    name: str
    config: TopicConfig
    partitions: list[PartitionLog] = field(default_factory=list)
    overrides: dict[str, int | str] = field(default_factory=dict)


class LogManager:
    """Opens a data directory and owns every PartitionLog in it. See the module docstring."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        default_config: TopicConfig | None = None,
        clock: Clock = SYSTEM_CLOCK,
        prefault_pages: bool = True,
        dir_mode: int = files.DEFAULT_DIR_MODE,
        file_mode: int = files.DEFAULT_FILE_MODE,
    ) -> None:
        self.data_dir = Path(data_dir)
        self._prefault_pages = prefault_pages
        self.default_config = default_config if default_config is not None else TopicConfig()
        self._clock = clock
        self._lock = threading.RLock()
        self._topics: dict[str, Topic] = {}
        self._closed = False
        self.recovery_reports: dict[TopicPartition, RecoveryReport] = {}
        # The parked last segments' tails from the clean-shutdown marker, by directory name.
        self._parked_tails: dict[str, ParkedTail] = {}
        files.raise_fd_limit()  # 2 fds per active partition; a soft limit of 1,024 is tight
        try:
            files.set_modes(dir_mode, file_mode)
        except ValueError as exc:
            raise InvalidConfigError(str(exc)) from exc
        with files.storage_errors(f"opening data directory {self.data_dir}"):
            files.secure_dir(self.data_dir, dir_mode)
            files.make_dir(self.data_dir / files.META_DIR)
        self._dir_lock = DirectoryLock(self.data_dir, file_mode)
        try:
            # Recovery's truncations and index files, the marker's removal: one syncfs at
            # the end instead of ~5 fsyncs per recovered partition (crash recovery of 5,000
            # partitions took 17 s). Nothing is acknowledged before open returns.
            with files.deferred_sync(self.data_dir) as problems:
                self._load()
            if problems:
                raise KafkaStorageError(f"opening {self.data_dir}: {problems[0]}")
        except BaseException:
            self._dir_lock.release()
            raise

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        default_config: TopicConfig | None = None,
        clock: Clock = SYSTEM_CLOCK,
        prefault_pages: bool = True,
        dir_mode: int = files.DEFAULT_DIR_MODE,
        file_mode: int = files.DEFAULT_FILE_MODE,
    ) -> LogManager:
        """Open (creating if needed) the data directory at ``path``. ``prefault_pages``:
        populate the active segments' pages ahead of the append cursor in a background
        thread (storage/prefault.py); False leaves the page faults on the append path.
        For a read-only view that changes nothing (forensics, next to a live broker), open
        a :class:`~logstream.storage.snapshot.DirectorySnapshot` instead.

        ``dir_mode`` / ``file_mode``: permission bits of the data directory (applied to it
        at every open) and of every directory and file created in it (files.set_modes)."""
        return cls(
            path,
            default_config=default_config,
            clock=clock,
            prefault_pages=prefault_pages,
            dir_mode=dir_mode,
            file_mode=file_mode,
        )

    def __enter__(self) -> LogManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- loading -----------------------------------------------------------------------------

    def _load(self) -> None:
        tails = clean_shutdown.take_marker(self.data_dir)
        clean = tails is not None
        self._parked_tails = tails or {}
        for entry in os.scandir(self.data_dir):
            if entry.is_dir() and entry.name.endswith(files.DELETED_SUFFIX):
                shutil.rmtree(entry.path, ignore_errors=True)
        meta_dir = self.data_dir / files.META_DIR
        for entry in sorted(os.scandir(meta_dir), key=lambda e: e.name):
            if entry.name.endswith(files.TMP_SUFFIX):
                files.remove_quietly(entry.path)
                continue
            if not entry.name.endswith(".json"):
                continue
            meta = read_meta(Path(entry.path))  # a damaged file refuses, naming it
            if meta.state != READY:
                orphans.finish_interrupted(self.data_dir, meta)
                continue
            try:
                overrides = parse_config_updates(meta.config)
                config = TopicConfig.from_dict(overrides, base=self.default_config)
            except LogstreamError as exc:
                raise KafkaStorageError(
                    f"topic metadata {entry.path} holds a config that cannot work: {exc}"
                ) from exc
            topic = Topic(meta.name, config, overrides=overrides)
            for p in range(meta.partitions):
                topic.partitions.append(self._open_partition(topic, p, clean))
            self._topics[meta.name] = topic
        counts = {name: len(t.partitions) for name, t in self._topics.items()}
        for name, numbers in orphans.find_partition_dirs(self.data_dir, counts).items():
            if orphans.adopt(self.data_dir, name, numbers):
                self._adopt_orphan(name, max(numbers) + 1, clean)

    def _adopt_orphan(self, name: str, partitions: int, clean: bool) -> None:
        """Partition directories holding data but no metadata file: the topic is opened
        again with the default config (its overrides are lost) and its file rewritten."""
        log.error(
            "topic metadata %s is missing but %d partition directories of %r hold data: "
            "the topic is restored with the default config (re-apply its overrides)",
            self._meta_path(name),
            partitions,
            name,
        )
        topic = Topic(name, self.default_config)
        for p in range(partitions):
            topic.partitions.append(self._open_partition(topic, p, clean))
        self._write_meta(topic)
        self._topics[name] = topic

    def _open_partition(self, topic: Topic, partition: int, clean: bool) -> PartitionLog:
        dirname = files.partition_dir_name(topic.name, partition)
        plog = PartitionLog(
            self.data_dir / dirname,
            topic=topic.name,
            partition=partition,
            config=topic.config,
            clock=self._clock,
            clean_shutdown=clean,
            prefault_pages=self._prefault_pages,
            parked_tail=self._parked_tails.get(dirname) if clean else None,
        )
        self.recovery_reports[TopicPartition(topic.name, partition)] = plog.recovery_report
        return plog

    def _write_meta(self, topic: Topic, state: str = READY, partitions: int | None = None) -> None:
        count = len(topic.partitions) if partitions is None else partitions
        meta = TopicMeta(topic.name, count, dict(topic.overrides), state)
        files.atomic_write(self._meta_path(topic.name), format_meta(meta))

    def _meta_path(self, name: str) -> Path:
        return self.data_dir / files.META_DIR / f"{name}.json"

    # -- admin -------------------------------------------------------------------------------

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        config: TopicConfig | Mapping[str, Any] | None = None,
    ) -> Topic:
        """Create a topic. ``config`` is a TopicConfig or a mapping of overrides (strings
        accepted). Raises InvalidTopicError, TopicAlreadyExistsError, InvalidPartitionsError,
        InvalidConfigError."""
        validate_topic_name(name)
        if (
            isinstance(partitions, bool)
            or not isinstance(partitions, int)
            or not (1 <= partitions <= MAX_PARTITIONS)
        ):
            raise InvalidPartitionsError(
                f"partitions must be in [1, {MAX_PARTITIONS}], not {partitions!r}"
            )
        if isinstance(config, TopicConfig):
            default = self.default_config.to_dict()
            overrides = {k: v for k, v in config.to_dict().items() if default[k] != v}
        else:
            overrides = parse_config_updates(config or {})
        effective = TopicConfig.from_dict(overrides, base=self.default_config)
        check_topic_overrides(overrides, effective)
        with self._lock:
            self._check_open()
            if name in self._topics:
                raise TopicAlreadyExistsError(f"topic {name!r} already exists")
            topic = Topic(name, effective, overrides=overrides)
            for p in range(partitions):
                stale = self.data_dir / files.partition_dir_name(name, p)
                if stale.exists():  # left behind by an interrupted delete
                    shutil.rmtree(stale)
            try:
                # The intent first: a crash before the last write is rolled back at open.
                self._write_meta(topic, CREATING, partitions)
                for p in range(partitions):
                    topic.partitions.append(self._open_partition(topic, p, clean=True))
                self._write_meta(topic)
            except BaseException:
                self._discard_partitions(name, topic.partitions, range(partitions))
                files.remove_quietly(self._meta_path(name))
                raise
            self._topics[name] = topic
            return topic

    def _discard_partitions(self, name: str, plogs: list[PartitionLog], numbers: range) -> None:
        """Undo the partitions ``numbers`` of a create (or grow) that failed half-way: close
        the opened ones and remove every directory, so a failure leaves nothing on disk."""
        for plog in plogs:
            with contextlib.suppress(Exception):
                plog.discard()
        for p in numbers:
            self.recovery_reports.pop(TopicPartition(name, p), None)
            shutil.rmtree(self.data_dir / files.partition_dir_name(name, p), ignore_errors=True)

    def delete_topic(self, name: str) -> None:
        """Delete a topic and all its data. Raises UnknownTopicOrPartitionError."""
        with self._lock:
            self._check_open()
            topic = self._get_topic(name)
            # The intent first: a crash before the metadata is gone is finished at open.
            self._write_meta(topic, DELETING)
            del self._topics[name]
            for plog in topic.partitions:
                plog.discard()  # in-flight callers now get UnknownTopicOrPartition
                self.recovery_reports.pop(TopicPartition(name, plog.partition), None)
                doomed = plog.dir.with_name(plog.dir.name + files.DELETED_SUFFIX)
                with contextlib.suppress(FileNotFoundError):
                    os.replace(plog.dir, doomed)
                shutil.rmtree(doomed, ignore_errors=True)
            files.remove_quietly(self._meta_path(name))
            files.fsync_dir(self.data_dir / files.META_DIR)

    def topics(self) -> list[str]:
        with self._lock:
            return sorted(self._topics)

    def topic(self, name: str) -> Topic:
        with self._lock:
            return self._get_topic(name)

    def _get_topic(self, name: str) -> Topic:
        topic = self._topics.get(name)
        if topic is None:
            raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
        return topic

    def get_log(self, topic: str, partition: int) -> PartitionLog:
        """The PartitionLog of ``topic``/``partition``; UnknownTopicOrPartitionError if none."""
        t = self._topics.get(topic)
        if t is None:
            raise UnknownTopicOrPartitionError(f"unknown topic {topic!r}")
        if not isinstance(partition, int) or not 0 <= partition < len(t.partitions):
            raise UnknownTopicOrPartitionError(
                f"topic {topic!r} has no partition {partition} ({len(t.partitions)} partitions)"
            )
        return t.partitions[partition]

    def alter_topic_config(self, name: str, updates: Mapping[str, str | int | None]) -> TopicConfig:
        """Change config overrides; a None value resets a key to the default. Validates
        everything before changing anything (InvalidConfigError)."""
        with self._lock:
            self._check_open()
            topic = self._get_topic(name)
            overrides = dict(topic.overrides)
            resets = [k for k, v in updates.items() if v is None]
            sets = {k: v for k, v in updates.items() if v is not None}
            for key in resets:
                overrides.pop(normalize_key(key), None)
            overrides.update(parse_config_updates(sets))
            try:
                config = TopicConfig.from_dict(overrides, base=self.default_config)
            except (TypeError, ValueError) as exc:
                raise InvalidConfigError(str(exc)) from exc
            check_topic_overrides(overrides, config)
            topic.overrides = overrides
            topic.config = config
            self._write_meta(topic)
            for plog in topic.partitions:
                plog.config = config
            return config

    def add_partitions(self, name: str, total: int) -> Topic:
        """Grow a topic to ``total`` partitions (InvalidPartitionsError unless it grows)."""
        with self._lock:
            self._check_open()
            topic = self._get_topic(name)
            current = len(topic.partitions)
            if isinstance(total, bool) or not isinstance(total, int) or total <= current:
                raise InvalidPartitionsError(
                    f"topic {name!r} has {current} partitions; the new total must be larger, "
                    f"not {total!r}"
                )
            if total > MAX_PARTITIONS:
                raise InvalidPartitionsError(f"at most {MAX_PARTITIONS} partitions")
            added: list[PartitionLog] = []
            try:
                for p in range(current, total):
                    stale = self.data_dir / files.partition_dir_name(name, p)
                    if stale.exists():
                        shutil.rmtree(stale)
                    added.append(self._open_partition(topic, p, clean=True))
                topic.partitions.extend(added)
                self._write_meta(topic)
            except BaseException:
                del topic.partitions[current:]
                self._discard_partitions(name, added, range(current, total))
                raise
            return topic

    # -- background work ---------------------------------------------------------------------

    def all_logs(self) -> list[PartitionLog]:
        with self._lock:
            return [p for t in self._topics.values() for p in t.partitions]

    def flush_due(self) -> int:
        """Flush every ``interval`` partition whose flush interval has passed; returns how
        many were flushed. A failing partition is logged and skipped (it is marked failed
        and refuses appends); the others are still flushed."""
        flushed = 0
        for plog in self.all_logs():
            try:
                if plog.flush_if_due():
                    flushed += 1
            except LogstreamError as exc:
                log.error("flush of %s-%d failed: %s", plog.topic, plog.partition, exc)
        return flushed

    def flush(self) -> None:
        """Flush every partition now."""
        for plog in self.all_logs():
            plog.flush()

    def enforce_retention(self) -> dict[TopicPartition, int]:
        """Apply retention to every partition; returns segments deleted per partition."""
        now = self._clock.now_ms()
        out: dict[TopicPartition, int] = {}
        for plog in self.all_logs():
            n = plog.enforce_retention(now)
            if n:
                out[TopicPartition(plog.topic, plog.partition)] = n
        return out

    # -- closing -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        """Raise unless the manager is open."""
        if self._closed:
            raise KafkaStorageError(f"LogManager for {self.data_dir} is closed")

    def close(self) -> None:
        """Close every partition; mark a clean shutdown only if all of them reached disk."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            ok = True
            plogs = [p for t in self._topics.values() for p in t.partitions]
            # One syncfs for all the seals and snapshots, not ~7 fsyncs per partition;
            # the marker below is written only once it returned without an error.
            # Active segments are parked, not trimmed (decision 0011): their logical ends go into
            # the marker, so the next open needs no scan and the close frees no blocks.
            tails: dict[str, ParkedTail] = {}
            with files.deferred_sync(self.data_dir) as problems:
                for plog in plogs:
                    ok = plog.park() and ok
                    tail = plog.parked_tail()
                    if tail is not None:
                        tails[plog.dir.name] = tail
            if problems:
                log.error("closing: %s", problems[0])
                ok = False
            if ok:
                try:
                    clean_shutdown.write_marker(self.data_dir, tails)
                except KafkaStorageError as exc:  # e.g. a full disk: next open recovers
                    log.error("cannot write the clean-shutdown marker: %s", exc)
            else:
                log.error("not all partitions closed cleanly; the next open will recover")
            self._dir_lock.release()

    def abandon(self) -> None:
        """Let go of every file as a killed process would (recovery tests use it): nothing
        is sealed, synced or marked clean, and the directory lock is released."""
        plogs = self.all_logs()
        with self._lock:
            self._closed = True
            for plog in plogs:
                plog.abandon()
            self._dir_lock.release()
