"""logstream: a Kafka-style append-only log streaming platform.

The public API is curated here; everything else is an implementation detail.
``Producer``, ``Consumer`` and ``Admin`` are imported lazily so that embedded users of
``logstream.storage`` do not pay for the gRPC client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from logstream.errors import LogstreamError
from logstream.types import GroupMetadata, OffsetAndMetadata, Record, RecordMetadata, TopicPartition

__version__ = "0.1.0"

if TYPE_CHECKING:
    from logstream.client import (
        Admin,
        Consumer,
        GroupAdmin,
        Producer,
        QueueConsumer,
        QueueMessage,
        Reject,
        Requester,
    )

_LAZY = {
    "Producer": "logstream.client",
    "Consumer": "logstream.client",
    "Admin": "logstream.client",
    "GroupAdmin": "logstream.client",
    "QueueConsumer": "logstream.client",
    "QueueMessage": "logstream.client",
    "Reject": "logstream.client",
    "Requester": "logstream.client",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'logstream' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "Admin",
    "Consumer",
    "GroupAdmin",
    "GroupMetadata",
    "LogstreamError",
    "OffsetAndMetadata",
    "Producer",
    "QueueConsumer",
    "QueueMessage",
    "Record",
    "RecordMetadata",
    "Reject",
    "Requester",
    "TopicPartition",
    "__version__",
]
