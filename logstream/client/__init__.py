"""The Python client: :class:`Producer`, :class:`Consumer` and :class:`Admin`.

Knows the wire protocol (``logstream.protocol``) and the codec, nothing of the broker's
internals. All gRPC failures are translated to the ``logstream.errors`` tree in
``transport.py``. Consumer groups: ``Consumer(group=...)`` plus :class:`GroupAdmin` for
listing, describing, resetting and deleting groups.
"""

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
