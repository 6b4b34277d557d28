"""Record sources for the replay engine (:class:`logstream.replay.source.RecordSource`):

- :class:`BrokerSource`: a :class:`logstream.client.Consumer` (manual assignment) plus an
  :class:`~logstream.client.Admin` for partition counts. After :meth:`BrokerSource.join` the
  consumer is a member of a group instead (subscribed, no auto-commit: the reader commits
  what it processed; see :mod:`logstream.replay.member`).
- :class:`DataDirSource`: segment files read in-process through ``logstream.storage``, for
  forensics. It opens the directory read-only
  (``storage.DirectorySnapshot``): no recovery, no lock, no file touched, so it is
  safe on a crashed directory (a torn tail is reported and skipped, not cut) and can run
  next to a live broker (a snapshot as of its open, refreshed when a following read
  reaches the end).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from logstream.errors import KafkaStorageError, UnknownTopicOrPartitionError
from logstream.types import Record, TopicPartition

if TYPE_CHECKING:
    from logstream.client import Admin, Consumer
    from logstream.storage import PartitionSnapshot


class BrokerSource:
    def __init__(
        self,
        broker: str,
        *,
        admin: Admin,
        security: Mapping[str, Any] | None = None,
    ) -> None:
        self.admin = admin
        self.broker = broker
        self.security = dict(security or {})
        self._parts: dict[str, list[int]] = {}
        self._consumer: Consumer | None = None

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            from logstream.client import Consumer

            self._consumer = Consumer(self.broker, auto_offset_reset="earliest", **self.security)
        return self._consumer

    def join(
        self,
        group: str,
        topics: Sequence[str],
        *,
        reset: str,
        on_assign: Callable[[set[TopicPartition]], None],
        on_revoke: Callable[[set[TopicPartition]], None],
    ) -> None:
        from logstream.client import Consumer

        if self._consumer is not None:
            raise RuntimeError("join() comes before any other read")
        self._consumer = Consumer(
            self.broker,
            group=group,
            auto_offset_reset=reset,
            enable_auto_commit=False,
            client_id="logstream-cli",
            on_assign=on_assign,
            on_revoke=on_revoke,
            **self.security,
        )
        self._consumer.subscribe(topics)

    def assignment(self) -> set[TopicPartition]:
        return self.consumer.assignment()

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.consumer.seek(tp, offset)

    def pause(self, tps: Sequence[TopicPartition]) -> None:
        self.consumer.pause(tps)

    def position(self, tp: TopicPartition) -> int:
        return self.consumer.position(tp)

    def committed(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int | None]:
        """The group's committed offsets (None where nothing is committed)."""
        got = self.consumer.committed(list(tps))
        return {tp: (om.offset if om is not None else None) for tp, om in got.items()}

    def commit(self, positions: Mapping[TopicPartition, int]) -> None:
        self.consumer.commit(dict(positions))

    def refresh_partitions(self) -> None:
        """Forget the partition counts: the next ``partitions_for`` asks the broker."""
        self._parts.clear()

    def partitions_for(self, topic: str) -> list[int]:
        if topic not in self._parts:
            desc = self.admin.describe_topic(topic)
            self._parts[topic] = [p.partition for p in desc.partitions]
        return self._parts[topic]

    def beginning_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return dict(self.admin.list_offsets({tp: "earliest" for tp in tps})) if tps else {}

    def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return dict(self.admin.list_offsets({tp: "latest" for tp in tps})) if tps else {}

    def offsets_for_times(
        self, query: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, int | None]:
        if not query:
            return {}
        found = self.admin.list_offsets(dict(query))
        return {tp: found.get(tp) for tp in query}

    def assign(self, positions: Mapping[TopicPartition, int]) -> None:
        self.consumer.assign(list(positions))
        for tp, offset in positions.items():
            self.consumer.seek(tp, offset)

    def poll(self, timeout_s: float) -> list[Record]:
        return list(self.consumer.poll(timeout=timeout_s, max_records=5000))

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.consumer.highwater(tp)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()


class DataDirSource:
    """Reads a data directory in-process. ``poll`` reads one chunk per partition; at the end
    of every partition it sleeps ``timeout_s`` (so a following read works, by polling the
    files)."""

    READ_BYTES = 1 << 20

    def __init__(self, data_dir: Path) -> None:
        from logstream.storage import DirectorySnapshot

        path = Path(data_dir)
        if not (path / "meta").is_dir():
            raise KafkaStorageError(f"{path} is not a logstream data directory (no meta/)")
        self.manager = DirectorySnapshot.open(path)
        self.positions: dict[TopicPartition, int] = {}

    def partitions_for(self, topic: str) -> list[int]:
        if topic not in self.manager.topics():
            raise UnknownTopicOrPartitionError(
                f"unknown topic {topic!r} in {self.manager.data_dir}"
            )
        return list(range(len(self.manager.topic(topic).partitions)))

    def _log(self, tp: TopicPartition) -> PartitionSnapshot:
        return self.manager.get_log(tp.topic, tp.partition)

    def beginning_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._log(tp).log_start_offset for tp in tps}

    def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._log(tp).log_end_offset for tp in tps}

    def offsets_for_times(
        self, query: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, int | None]:
        return {tp: self._first_at_or_after(self._log(tp), ms) for tp, ms in query.items()}

    def _first_at_or_after(self, log: PartitionSnapshot, ms: int) -> int | None:
        """The first offset stamped at or after ``ms``: the index answers with a batch, and
        the record is in it or in a later batch."""
        from logstream.codec import iter_batches

        pos = log.offset_for_timestamp(ms)
        while pos is not None and pos < log.log_end_offset:
            data = log.read(pos, self.READ_BYTES)
            if not data:
                return None
            for batch in iter_batches(data):
                offsets = batch.offsets.tolist()
                stamps = batch.timestamps.tolist()
                for off, stamp in zip(offsets, stamps, strict=True):
                    if off >= pos and stamp >= ms:
                        return int(off)
                pos = batch.header.next_offset
        return None

    def assign(self, positions: Mapping[TopicPartition, int]) -> None:
        self.positions = dict(positions)

    def poll(self, timeout_s: float) -> list[Record]:
        import time

        from logstream.codec import iter_batches

        out: list[Record] = []
        for tp, pos in self.positions.items():
            log = self._log(tp)
            if pos >= log.log_end_offset:
                continue
            data = log.read(max(pos, log.log_start_offset), self.READ_BYTES)
            for batch in iter_batches(data):
                for rec in batch.records(tp.topic, tp.partition):
                    if rec.offset >= pos:
                        out.append(rec)
            if out and out[-1].partition == tp.partition and out[-1].topic == tp.topic:
                self.positions[tp] = out[-1].offset + 1
        if not out and timeout_s > 0:
            time.sleep(min(timeout_s, 0.2))
            self.manager.refresh()  # a live broker may have appended (read-only snapshot)
        return out

    def close(self) -> None:
        self.manager.close()
