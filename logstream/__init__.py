"""logstream: a Kafka-style append-only log streaming platform.

The public API is curated here; everything else is an implementation detail.
``Producer``, ``Consumer`` and ``Admin`` are imported lazily so that embedded users of
``logstream.storage`` do not pay for the gRPC client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from logstream.errors import LogstreamError
from logstream.lazy import lazy_attributes
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

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals(), __all__)
