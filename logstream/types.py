"""Small value types shared by every layer: partitions, records and their metadata."""

from __future__ import annotations

from typing import Final, NamedTuple

EARLIEST: Final = -2
"""ListOffsets sentinel timestamp: the partition's log start offset."""
LATEST: Final = -1
"""ListOffsets sentinel timestamp: the partition's log end offset (the next offset)."""

Headers = tuple[tuple[str, bytes], ...]
"""Record headers: an ordered tuple of (name, value) pairs; names may repeat."""


class TopicPartition(NamedTuple):
    """A partition of a topic; hashable, usable as a dict key."""

    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}-{self.partition}"


class Record(NamedTuple):
    """One record as a consumer sees it. ``offset`` is its position in the partition."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()


class RecordMetadata(NamedTuple):
    """Where a produced record landed."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


class GroupMetadata(NamedTuple):
    """A consumer's place in its group as last agreed with the broker: ``member_id`` is
    empty and ``member_epoch`` -1 while it is not a member (before joining, or fenced and
    about to rejoin)."""

    group_id: str
    member_id: str
    member_epoch: int


class OffsetAndMetadata(NamedTuple):
    """A committed position: the offset of the next record to read, plus free text."""

    offset: int
    metadata: str = ""
