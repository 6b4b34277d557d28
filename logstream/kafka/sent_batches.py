"""The Kafka bytes of each partition's latest small batch, to answer a caught-up Fetch.

A consumer that keeps up (the latency path) fetches exactly the batch the last Produce
appended, and converting that stored batch back to Kafka's format (``records.py``)
rebuilds what the producer sent. So after a Produce of one small batch whose Kafka bytes
say nothing the stored batch does not (``batch_in.read_tiny``: codec none, create time,
offset deltas 0..n-1, header timestamps those of the records) and that storage appended
as it was (not a duplicate, no log-append time stamped), the listener keeps the
producer's bytes with the base offset storage assigned and the partitionLeaderEpoch the
conversion writes (``records.LEADER_EPOCH``; the producer sent -1). Both fields lie
outside Kafka's CRC, so the bytes stay a valid batch.

A Fetch whose stored bytes for a partition are exactly one batch with the kept base
offset, length and logstream CRC (which covers every record field, the timestamps and
the producer fields) answers with the kept bytes: the same records the conversion would
give. Anything else misses and is converted as before.

Bounds: batches up to :data:`MAX_BYTES` are kept, for at most :data:`MAX_PARTITIONS`
partitions (the least recently produced to is dropped first): 16 MiB at most.

Thread-safe: :meth:`SentBatches.remember` runs on the listener's loop, :meth:`lookup` on
the loop or the pool; each is a few dict operations under the GIL.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from logstream.codec import BatchHeader, read_header
from logstream.kafka.records import LEADER_EPOCH

MAX_BYTES = 16 * 1024
MAX_PARTITIONS = 1024

_KAFKA_BASE = struct.Struct(">qii")  # baseOffset, batchLength, partitionLeaderEpoch


class _Kept(NamedTuple):
    base_offset: int
    batch_length: int  # of the stored logstream batch
    crc: int  # of the stored logstream batch
    kafka: bytes


class SentBatches:
    def __init__(self) -> None:
        self._kept: dict[tuple[str, int], _Kept] = {}
        self.hits = 0  # fetched batches answered with kept bytes (for tests)

    def remember(
        self,
        topic: str,
        partition: int,
        kafka_batch: bytes | memoryview,
        stored: BatchHeader,
        base_offset: int,
    ) -> bytes | None:
        """Keep ``kafka_batch`` (one whole batch, as the producer sent it) as the Kafka form
        of the batch stored with header ``stored`` at ``base_offset``; returns the kept
        bytes (what a Fetch of that batch sends), None when too large to keep."""
        key = (topic, partition)
        self._kept.pop(key, None)  # re-inserted last: the dict's order is recency
        if len(kafka_batch) > MAX_BYTES:
            return None
        raw = bytearray(kafka_batch)
        _, length, _ = _KAFKA_BASE.unpack_from(raw)
        _KAFKA_BASE.pack_into(raw, 0, base_offset, length, LEADER_EPOCH)
        kafka = bytes(raw)
        self._kept[key] = _Kept(base_offset, stored.batch_length, stored.crc, kafka)
        if len(self._kept) > MAX_PARTITIONS:
            del self._kept[next(iter(self._kept))]
        return kafka

    def lookup(self, topic: str, partition: int, stored: bytes | memoryview) -> bytes | None:
        """The kept Kafka bytes when ``stored`` (a fetch's bytes of that partition) is
        exactly the kept batch; else None."""
        kept = self._kept.get((topic, partition))
        if kept is None or len(stored) != kept.batch_length:
            return None
        header = read_header(stored)
        if header.base_offset != kept.base_offset or header.crc != kept.crc:
            return None
        self.hits += 1
        return kept.kafka
