"""Storage engine: partitioned, memory-mapped, append-only segment logs ("embedded mode").

Purpose: keep each partition's record batches on local disk, assign their offsets, serve
reads by offset and by time, and survive crashes (see docs/storage.md for the on-disk
format, the recovery rules and the durability levels). Knows the codec, errors, clock and
``logstream.types`` only; never imports grpc, protocol, broker or client.

Public API:

* :class:`LogManager` - a writable data directory: topics, their partitions and configs,
  flush and retention passes, a clean shutdown.
* :class:`PartitionLog` - one writable partition: ``append``, ``read``,
  ``offset_for_timestamp`` / ``record_for_timestamp``, ``flush``, retention; returns an
  :class:`AppendResult` per append and a :class:`RecoveryReport` of its open.
* :class:`DirectorySnapshot` / :class:`PartitionSnapshot` - a read-only view of a data
  directory that changes nothing (forensics, next to a live broker), with ``refresh``.
* :class:`TopicConfig`, :func:`validate_topic_name` - per-topic settings and name rules.

Inside (one concept per module): ``segment.py`` (a segment's states), ``active_file.py``
(the write map of the active segment), ``segment_reader.py`` (reads), ``index.py``,
``recovery.py`` (pure scans), ``loader.py`` (opening a partition), ``segment_set.py``,
``partition_reader.py`` (reads shared by the log and the snapshot), ``files.py`` and
``io.py`` (file names, the metadata-write ritual, the file-operations seam).
"""

from logstream.storage.config import TopicConfig, validate_topic_name
from logstream.storage.log import AppendResult, PartitionLog, RecoveryReport
from logstream.storage.manager import LogManager, Topic
from logstream.storage.snapshot import DirectorySnapshot, PartitionSnapshot

__all__ = [
    "AppendResult",
    "DirectorySnapshot",
    "LogManager",
    "PartitionLog",
    "PartitionSnapshot",
    "RecoveryReport",
    "Topic",
    "TopicConfig",
    "validate_topic_name",
]
