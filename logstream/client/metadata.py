"""Topic metadata cache for the producer: partition counts by topic, and recent "no such
topic" answers.

Fetched with ``Admin.DescribeTopics`` on first use, refreshed when the broker answers
``UNKNOWN_TOPIC_OR_PARTITION`` (a topic deleted and re-created, partitions added).

A topic the broker says does not exist is remembered as such for ``unknown_ttl_s`` seconds
(:meth:`Metadata.unknown`), so that records sent to a mistyped topic fail at once instead of
each paying a round of metadata retries; after that the broker is asked again, so a topic
created meanwhile is found.

Thread-safe: both caches are plain dicts changed entry by entry (atomic under the GIL).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from logstream import errors
from logstream.client import transport as tr
from logstream.protocol import admin_pb2
from logstream.protocol.status import error_for_code

UNKNOWN_TOPIC_TTL_S = 2.0
"""How long a "no such topic" answer is trusted before the broker is asked again."""


class Metadata:
    def __init__(
        self,
        transport: tr.TransportLike,
        *,
        timeout: float,
        unknown_ttl_s: float = UNKNOWN_TOPIC_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self._timeout = timeout
        self._unknown_ttl_s = unknown_ttl_s
        self._clock = clock
        self.partitions: dict[str, int] = {}
        self._unknown: dict[str, tuple[float, str]] = {}  # topic -> (until, message)

    def unknown(self, topic: str) -> errors.UnknownTopicOrPartitionError | None:
        """A fresh error if the broker said recently that ``topic`` does not exist, else None."""
        entry = self._unknown.get(topic)
        if entry is None:
            return None
        until, message = entry
        if self._clock() >= until:
            self._unknown.pop(topic, None)
            return None
        return errors.UnknownTopicOrPartitionError(message)

    def fetch(self, topic: str) -> int:
        """Ask the broker for the partition count of ``topic`` (and cache the answer, also a
        "no such topic")."""
        try:
            count = self._describe(topic)
        except errors.UnknownTopicOrPartitionError as exc:
            self._unknown[topic] = (self._clock() + self._unknown_ttl_s, exc.message)
            self.partitions.pop(topic, None)
            raise
        self._unknown.pop(topic, None)
        self.partitions[topic] = count
        return count

    def _describe(self, topic: str) -> int:
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
            return count
        raise errors.UnknownTopicOrPartitionError(f"unknown topic {topic!r}")
