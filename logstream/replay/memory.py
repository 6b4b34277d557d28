"""An in-memory :class:`~logstream.replay.source.RecordSource` for tests and embedding: lists
of records, no broker, no files. Single-threaded, like every source."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from logstream.errors import UnknownTopicOrPartitionError
from logstream.types import Record, TopicPartition

__all__ = ["MemorySource", "make_records"]


class MemorySource:
    """A RecordSource over lists of records; ``poll`` returns up to ``batch`` records per
    partition in round-robin, like a fetch over several partitions. ``appends`` are fed in one
    per poll, to simulate producers while following."""

    def __init__(
        self,
        data: Mapping[TopicPartition, Sequence[Record]],
        *,
        batch: int = 3,
        begin: Mapping[TopicPartition, int] | None = None,
    ) -> None:
        self.data = {tp: list(rs) for tp, rs in data.items()}
        self.begin = dict(begin or {})
        self.batch = batch
        self.positions: dict[TopicPartition, int] = {}
        self.appends: list[Record] = []
        self.polls = 0
        self.closed = False

    def partitions_for(self, topic: str) -> list[int]:
        parts = sorted(tp.partition for tp in self.data if tp.topic == topic)
        if not parts:
            raise UnknownTopicOrPartitionError(f"unknown topic {topic!r}")
        return parts

    def _records(self, tp: TopicPartition) -> list[Record]:
        return [r for r in self.data[tp] if r.offset >= self.begin.get(tp, 0)]

    def beginning_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.begin.get(tp, 0) for tp in tps}

    def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.data[tp]) for tp in tps}

    def offsets_for_times(
        self, query: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, int | None]:
        out: dict[TopicPartition, int | None] = {}
        for tp, ms in query.items():
            out[tp] = next((r.offset for r in self._records(tp) if r.timestamp_ms >= ms), None)
        return out

    def assign(self, positions: Mapping[TopicPartition, int]) -> None:
        self.positions = dict(positions)

    def poll(self, timeout_s: float) -> list[Record]:
        self.polls += 1
        if self.appends:
            r = self.appends.pop(0)
            self.data[TopicPartition(r.topic, r.partition)].append(r)
        out: list[Record] = []
        for tp, pos in self.positions.items():
            chunk = [r for r in self._records(tp) if r.offset >= pos][: self.batch]
            out.extend(chunk)
            if chunk:
                self.positions[tp] = chunk[-1].offset + 1
        return out

    def close(self) -> None:
        self.closed = True


def make_records(
    topic: str, partition: int, timestamps: Sequence[int], prefix: str = "v"
) -> list[Record]:
    """Records at offsets 0.. with these timestamps, keys ``k<offset>`` and values
    ``<prefix><partition>-<offset>``."""
    return [
        Record(topic, partition, i, ts, f"k{i}".encode(), f"{prefix}{partition}-{i}".encode(), ())
        for i, ts in enumerate(timestamps)
    ]
