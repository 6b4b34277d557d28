"""Queue groups: the work-queue side of logstream (ack / nack / reject, leases, retries
with backoff, dead letters), in the coordinator layer: numpy and the standard library, no
grpc. Model and settings: docs/queues.md.

- :mod:`.window`: one partition's in-flight window (:class:`PartitionWindow`), with
  :mod:`.tables` (rows and parking), :mod:`.columns` (the numpy columns, states),
  :mod:`.views` (counts, holdings) and :mod:`.restore` (snapshot, replay primitives)
- :mod:`.settings`: :class:`QueueSettings` and the nack backoff
- :mod:`.results`: per-offset results (:class:`OpResult`) and offset ranges
- :mod:`.group`: :class:`QueueGroup`, members and partitions, group commit, dead letters
- :mod:`.statelog`: the state records' byte format and :class:`StateLogWriter`
- :mod:`.recovery`: :func:`replay` and :func:`recover_group`
- :mod:`.deadletter`: :class:`DeadLetter`, headers, :class:`DeadLetterOutbox`
- :mod:`.describe`: :func:`describe` (depth per partition and in total)
- :mod:`.memory`: in-memory state log and outbox (tests, embedding)
"""

from logstream.coordinator.queues.deadletter import DeadLetter, DeadLetterOutbox
from logstream.coordinator.queues.describe import QueueDepth, QueueGroupDescription, describe
from logstream.coordinator.queues.group import Delivery, QueueGroup
from logstream.coordinator.queues.memory import MemoryOutbox, MemoryStateLog
from logstream.coordinator.queues.recovery import recover_group, replay
from logstream.coordinator.queues.results import OpResult, to_ranges
from logstream.coordinator.queues.settings import Backoff, QueueSettings
from logstream.coordinator.queues.statelog import StateLogWriter
from logstream.coordinator.queues.window import PartitionWindow

__all__ = [
    "Backoff",
    "DeadLetter",
    "DeadLetterOutbox",
    "Delivery",
    "MemoryOutbox",
    "MemoryStateLog",
    "OpResult",
    "PartitionWindow",
    "QueueDepth",
    "QueueGroup",
    "QueueGroupDescription",
    "QueueSettings",
    "StateLogWriter",
    "describe",
    "recover_group",
    "replay",
    "to_ranges",
]
