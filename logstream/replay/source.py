"""What the replay engine needs from a place that holds records.

Two implementations live in :mod:`logstream.replay.sources` (a broker, through the client; a
data directory, through storage opened read-only) and one in :mod:`logstream.replay.memory`
(lists in memory, for tests and embedding). A source is used by one thread at a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from logstream.types import Record, TopicPartition

__all__ = ["GroupSource", "RecordSource", "supports_groups"]


class RecordSource(Protocol):
    """Offsets, assignment and polling over the partitions of some topics."""

    def partitions_for(self, topic: str) -> list[int]:
        """Partition numbers of ``topic``; raises UnknownTopicOrPartitionError."""
        ...

    def beginning_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]: ...

    def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]: ...

    def offsets_for_times(
        self, query: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, int | None]:
        """First offset whose timestamp is >= the given ms. When there is none yet: None or
        the end offset (a broker answers with the end); callers treat both as the end."""
        ...

    def assign(self, positions: Mapping[TopicPartition, int]) -> None:
        """Read these partitions from these offsets (replacing any earlier assignment)."""
        ...

    def poll(self, timeout_s: float) -> list[Record]:
        """Records from the assigned partitions, in offset order per partition; [] on timeout."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class GroupSource(Protocol):
    """A source that can resume from and commit to a consumer group. ``group`` is set before
    the first read; the source uses it as a standalone client (no membership)."""

    group: str | None

    def committed(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int | None]:
        """The group's committed offsets (None where nothing is committed)."""
        ...

    def commit(self, positions: Mapping[TopicPartition, int]) -> None: ...


def supports_groups(source: object) -> bool:
    return isinstance(source, GroupSource)
