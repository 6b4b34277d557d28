"""The Python client: :class:`Producer`, :class:`Consumer` and :class:`Admin`.

Knows the wire protocol (``logstream.protocol``) and the codec, nothing of the broker's
internals. All gRPC failures are translated to the ``logstream.errors`` tree in
``transport.py``. Consumer groups: ``Consumer(group=...)`` plus :class:`GroupAdmin` for
listing, describing, resetting and deleting groups.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from logstream.lazy import lazy_attributes

if TYPE_CHECKING:
    from logstream.client.acls import AclBinding
    from logstream.client.admin import Admin, PartitionInfo, TopicDescription, TopicInfo
    from logstream.client.chunks import ColumnChunk, RecordColumns
    from logstream.client.consumer import Consumer
    from logstream.client.group_admin import GroupAdmin, GroupDescription, GroupListing
    from logstream.client.producer import BulkFuture, Producer, RecordFuture
    from logstream.client.queue_consumer import QueueConsumer
    from logstream.client.queue_message import QueueMessage, Reject, SettleError
    from logstream.client.requester import Requester
    from logstream.client.transport import Transport

# Imported on first use: `logstream topic list` needs Admin, not the codec and numpy that the
# producer and consumer bring (docs/decisions/0044).
_LAZY = {
    "AclBinding": "logstream.client.acls",
    "Admin": "logstream.client.admin",
    "PartitionInfo": "logstream.client.admin",
    "TopicDescription": "logstream.client.admin",
    "TopicInfo": "logstream.client.admin",
    "ColumnChunk": "logstream.client.chunks",
    "RecordColumns": "logstream.client.chunks",
    "Consumer": "logstream.client.consumer",
    "GroupAdmin": "logstream.client.group_admin",
    "GroupDescription": "logstream.client.group_admin",
    "GroupListing": "logstream.client.group_admin",
    "BulkFuture": "logstream.client.producer",
    "Producer": "logstream.client.producer",
    "RecordFuture": "logstream.client.producer",
    "QueueConsumer": "logstream.client.queue_consumer",
    "QueueMessage": "logstream.client.queue_message",
    "Reject": "logstream.client.queue_message",
    "SettleError": "logstream.client.queue_message",
    "Requester": "logstream.client.requester",
    "Transport": "logstream.client.transport",
}


__all__ = [
    "AclBinding",
    "Admin",
    "BulkFuture",
    "ColumnChunk",
    "Consumer",
    "GroupAdmin",
    "GroupDescription",
    "GroupListing",
    "PartitionInfo",
    "Producer",
    "QueueConsumer",
    "QueueMessage",
    "RecordColumns",
    "RecordFuture",
    "Reject",
    "Requester",
    "SettleError",
    "TopicDescription",
    "TopicInfo",
    "Transport",
]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals(), __all__)
