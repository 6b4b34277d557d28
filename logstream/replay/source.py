"""What the replay engine needs from a place that holds records.

Two implementations live in :mod:`logstream.replay.sources` (a broker, through the client; a
data directory, through storage opened read-only) and one in :mod:`logstream.replay.memory`
(lists in memory, for tests and embedding). A source is used by one thread at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
    """A source that can read as a member of a consumer group: the group assigns the
    partitions (:mod:`logstream.replay.member`). After :meth:`join`, ``poll`` returns records
    of the assigned partitions, and assignment changes happen inside ``poll`` (the callbacks
    run there)."""

    def join(
        self,
        group: str,
        topics: Sequence[str],
        *,
        reset: str,
        on_assign: Callable[[set[TopicPartition]], None],
        on_revoke: Callable[[set[TopicPartition]], None],
    ) -> None:
        """Become a member of ``group`` for ``topics``; partitions it never committed start
        per ``reset`` (``earliest`` or ``latest``)."""
        ...

    def assignment(self) -> set[TopicPartition]: ...

    def seek(self, tp: TopicPartition, offset: int) -> None: ...

    def pause(self, tps: Sequence[TopicPartition]) -> None:
        """Stop fetching these assigned partitions (their positions are kept)."""
        ...

    def position(self, tp: TopicPartition) -> int:
        """The next offset ``poll`` returns for an assigned partition."""
        ...

    def committed(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int | None]:
        """The group's committed offsets (None where nothing is committed)."""
        ...

    def commit(self, positions: Mapping[TopicPartition, int]) -> None: ...

    def poll(self, timeout_s: float) -> list[Record]: ...

    def partitions_for(self, topic: str) -> list[int]: ...

    def beginning_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]: ...

    def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]: ...

    def offsets_for_times(
        self, query: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, int | None]: ...

    def assign(self, positions: Mapping[TopicPartition, int]) -> None: ...

    def close(self) -> None: ...


def supports_groups(source: object) -> bool:
    return isinstance(source, GroupSource)
