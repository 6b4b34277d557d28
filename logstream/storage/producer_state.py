"""Idempotent-producer state of one partition (Kafka's ProducerStateManager).

For every producer id that wrote to the partition we keep its epoch and the metadata of its
last 5 batches: (base_sequence, last_sequence, base_offset, last_offset, timestamp). It decides
whether an incoming batch is new, a retried duplicate, out of order, or from a fenced epoch:

* ``producer_id < 0``: not idempotent, always new.
* epoch older than the stored one -> InvalidProducerEpochError (a newer producer fenced it).
* epoch newer -> the batch must start at sequence 0, else OutOfOrderSequenceError; the
  producer's batch history restarts.
* same epoch: a sequence range equal to one of the last 5 batches is a duplicate (the caller
  answers the original offsets and writes nothing); otherwise ``base_sequence`` must be
  ``last_sequence + 1`` (wrapping after 2**31-1 to 0), else OutOfOrderSequenceError.
* an unknown producer id may start at any sequence (its history may have been deleted by
  retention, or it may predate a lost snapshot).

Snapshot file ``producer-state.json`` (written with files.atomic_write at every roll and at
clean close)::

    {"version": 1, "offset": <log end offset the state covers>,
     "producers": {"<pid>": {"epoch": e, "batches": [[bseq, lseq, boff, loff, ts], ...],
                             "seen": <broker time of its last append, ms>}}}

Crash story: the state is derived from batch headers, which carry producer id, epoch and
base sequence. After a crash it is rebuilt from the newest snapshot whose offset is <= the
recovered log end, then by a header-only walk of the batches from that offset on. A snapshot
beyond the log end (the log lost its tail) is ignored and the whole log is walked.

Concurrency: not thread-safe; the owning PartitionLog holds its lock.
"""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path
from typing import NamedTuple

from logstream.codec import BatchHeader
from logstream.errors import (
    InvalidBatchError,
    InvalidProducerEpochError,
    OutOfOrderSequenceError,
)
from logstream.storage import files

BATCHES_KEPT = 5
_SEQ_MAX = 2**31 - 1
SNAPSHOT_VERSION = 1


class BatchMetadata(NamedTuple):
    base_sequence: int
    last_sequence: int
    base_offset: int
    last_offset: int
    timestamp: int


class ProducerEntry:
    __slots__ = ("batches", "epoch", "last_seen_ms")

    def __init__(self, epoch: int, last_seen_ms: int = 0) -> None:
        self.epoch = epoch
        self.batches: deque[BatchMetadata] = deque(maxlen=BATCHES_KEPT)
        # Broker time of the producer's last append (expiry). Not the batch timestamps: a
        # producer may write records stamped days ago (a backfill) and still be active.
        self.last_seen_ms = last_seen_ms


def _last_sequence(header: BatchHeader) -> int:
    return (header.base_sequence + header.record_count - 1) % (_SEQ_MAX + 1)


class ProducerStateManager:
    """Per-partition map producer id -> ProducerEntry."""

    def __init__(self) -> None:
        self.producers: dict[int, ProducerEntry] = {}

    def __len__(self) -> int:
        return len(self.producers)

    def check(self, header: BatchHeader) -> BatchMetadata | None:
        """Validate an incoming batch; return the original metadata if it is a duplicate.
        Raises InvalidProducerEpochError / OutOfOrderSequenceError / InvalidBatchError."""
        pid = header.producer_id
        if pid < 0:
            return None
        if header.base_sequence < 0 or header.producer_epoch < 0:
            raise InvalidBatchError(
                f"producer id {pid} needs a non-negative epoch and base sequence"
            )
        entry = self.producers.get(pid)
        if entry is None:
            return None
        epoch = header.producer_epoch
        if epoch < entry.epoch:
            raise InvalidProducerEpochError(
                f"producer {pid} epoch {epoch} is fenced by epoch {entry.epoch}"
            )
        if epoch > entry.epoch:
            if header.base_sequence != 0:
                raise OutOfOrderSequenceError(
                    f"producer {pid} new epoch {epoch} must start at sequence 0, "
                    f"not {header.base_sequence}"
                )
            return None
        last_seq = _last_sequence(header)
        for meta in entry.batches:
            if meta.base_sequence == header.base_sequence and meta.last_sequence == last_seq:
                return meta
        if entry.batches:
            expected = (entry.batches[-1].last_sequence + 1) % (_SEQ_MAX + 1)
            if header.base_sequence != expected:
                raise OutOfOrderSequenceError(
                    f"producer {pid} epoch {epoch}: expected sequence {expected}, "
                    f"got {header.base_sequence}"
                )
        return None

    def update(self, header: BatchHeader, base_offset: int, timestamp: int, now_ms: int) -> None:
        """Record a batch that was written at ``base_offset`` at broker time ``now_ms``
        (also used when replaying, with the time of the replay)."""
        pid = header.producer_id
        if pid < 0:
            return
        entry = self.producers.get(pid)
        if entry is None or header.producer_epoch > entry.epoch:
            entry = ProducerEntry(header.producer_epoch)
            self.producers[pid] = entry
        elif header.producer_epoch < entry.epoch:
            return
        entry.last_seen_ms = max(entry.last_seen_ms, now_ms)
        entry.batches.append(
            BatchMetadata(
                header.base_sequence,
                _last_sequence(header),
                base_offset,
                base_offset + header.record_count - 1,
                timestamp,
            )
        )

    def expire(self, now_ms: int, expiration_ms: int) -> int:
        """Forget producers whose last append (broker time) is ``expiration_ms`` or more
        before ``now_ms`` (Kafka's producer id expiration); returns how many. Without it
        every producer that ever wrote stays in memory and in each snapshot forever."""
        cutoff = now_ms - expiration_ms
        stale = [pid for pid, e in self.producers.items() if e.last_seen_ms <= cutoff]
        for pid in stale:
            del self.producers[pid]
        return len(stale)

    def replay(self, headers: list[BatchHeader], now_ms: int) -> None:
        """Rebuild from batch headers (after a crash). The append times are not in the log,
        so a rebuilt producer counts as seen at ``now_ms``: expiry can only come later."""
        for h in headers:
            if h.producer_id >= 0:
                self.update(h, h.base_offset, h.max_timestamp, now_ms)

    # -- snapshots ---------------------------------------------------------------------------

    def to_json(self, offset: int) -> bytes:
        producers = {
            str(pid): {
                "epoch": e.epoch,
                "batches": [list(b) for b in e.batches],
                "seen": e.last_seen_ms,
            }
            for pid, e in self.producers.items()
        }
        doc = {"version": SNAPSHOT_VERSION, "offset": offset, "producers": producers}
        return json.dumps(doc, separators=(",", ":")).encode()

    def write_snapshot(self, path: Path, offset: int) -> None:
        files.atomic_write(path, self.to_json(offset))

    @classmethod
    def load_snapshot(cls, path: Path, now_ms: int) -> tuple[ProducerStateManager, int] | None:
        """(state, offset it covers) or None if the file is absent or unreadable. A producer
        without a recorded last append (an older snapshot) counts as seen at ``now_ms``."""
        try:
            doc = json.loads(path.read_bytes())
            if doc.get("version") != SNAPSHOT_VERSION:
                return None
            state = cls()
            for pid, e in doc["producers"].items():
                entry = ProducerEntry(int(e["epoch"]), int(e.get("seen", now_ms)))
                for b in e["batches"]:
                    entry.batches.append(BatchMetadata(*(int(x) for x in b)))
                state.producers[int(pid)] = entry
            return state, int(doc["offset"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
