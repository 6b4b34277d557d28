"""Storage engine: partitioned, memory-mapped, append-only segment logs ("embedded mode").

Knows the codec, errors and clock only; never imports grpc, protocol, broker or client.
Start at :class:`LogManager` (a data directory), then :class:`PartitionLog` (one partition).
The on-disk format, recovery rules and durability levels are in docs/storage.md and in the
docstrings of ``segment.py``, ``index.py``, ``log.py`` and ``manager.py``.
"""

from logstream.storage.config import TopicConfig, validate_topic_name
from logstream.storage.log import AppendResult, PartitionLog, RecoveryReport
from logstream.storage.manager import LogManager, Topic

__all__ = [
    "AppendResult",
    "LogManager",
    "PartitionLog",
    "RecoveryReport",
    "Topic",
    "TopicConfig",
    "validate_topic_name",
]
