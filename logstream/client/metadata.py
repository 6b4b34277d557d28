"""Topic metadata cache for the producer: partition counts by topic.

Fetched with ``Admin.DescribeTopics`` on first use, refreshed when the broker answers
``UNKNOWN_TOPIC_OR_PARTITION`` (a topic deleted and re-created, partitions added).
Thread-safe: the cache is a plain dict replaced entry by entry (atomic under the GIL).
"""

from __future__ import annotations

from logstream import errors
from logstream.client import transport as tr
from logstream.protocol import admin_pb2
from logstream.protocol.status import error_for_code


class Metadata:
    def __init__(self, transport: tr.TransportLike, *, timeout: float) -> None:
        self._transport = transport
        self._timeout = timeout
        self.partitions: dict[str, int] = {}

    def fetch(self, topic: str) -> int:
        """Ask the broker for the partition count of ``topic`` (and cache it)."""
        resp = self._transport.describe_topics(
            admin_pb2.DescribeTopicsRequest(names=[topic]), timeout=self._timeout
        )
        for desc in resp.topics:
            if desc.name != topic:
                continue
            if desc.error_code:
                raise error_for_code(desc.error_code, desc.error_message or topic)
            count = len(desc.partitions)
            if count == 0:
                raise errors.UnknownTopicOrPartitionError(f"topic {topic!r} has no partitions")
            self.partitions[topic] = count
            return count
        raise errors.UnknownTopicOrPartitionError(f"unknown topic {topic!r}")
