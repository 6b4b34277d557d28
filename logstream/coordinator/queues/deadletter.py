"""The dead-letter path: what a dead letter says, and the outbox that writes it.

Order of events (the crash story): the group first hands the letters to the outbox, which
copies each source record (key, value and headers unchanged) to the dead-letter topic with
the headers below and returns once they are durable; only then does the group mark the
records dead and log a DEAD record. A crash between the two leaves records that are in the
dead-letter topic but not marked dead; at recovery the group asks the outbox which of its
unfinished records already have a copy (:meth:`DeadLetterOutbox.written`, answered from the
source coordinates in the headers) and marks those dead without writing them again. A crash
before the write leaves the record unfinished: it is written once, later. So each record
is dead-lettered exactly once, and never both dead-lettered and delivered again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

HEADER_GROUP = "logstream.dlq.group"
HEADER_TOPIC = "logstream.dlq.source-topic"
HEADER_PARTITION = "logstream.dlq.source-partition"
HEADER_OFFSET = "logstream.dlq.source-offset"
HEADER_DELIVERIES = "logstream.dlq.delivery-count"
HEADER_REASON = "logstream.dlq.reason"
HEADER_REASON_TEXT = "logstream.dlq.reason-text"
HEADER_TIME = "logstream.dlq.time-ms"


@dataclass(frozen=True)
class DeadLetter:
    """One record to copy to ``dead_letter_topic``, with why and when."""

    group: str
    dead_letter_topic: str
    source_topic: str
    source_partition: int
    source_offset: int
    delivery_count: int
    reason: str  # "rejected", "max-deliveries" or "expired"
    reason_text: str
    time_ms: int

    def headers(self) -> list[tuple[str, bytes]]:
        """The headers added to the copied record (values UTF-8 text)."""
        values = (
            (HEADER_GROUP, self.group),
            (HEADER_TOPIC, self.source_topic),
            (HEADER_PARTITION, str(self.source_partition)),
            (HEADER_OFFSET, str(self.source_offset)),
            (HEADER_DELIVERIES, str(self.delivery_count)),
            (HEADER_REASON, self.reason),
            (HEADER_REASON_TEXT, self.reason_text),
            (HEADER_TIME, str(self.time_ms)),
        )
        return [(k, v.encode()) for k, v in values]


class DeadLetterOutbox(Protocol):
    """Writes dead letters; the broker implements it over the dead-letter topic."""

    def write(self, letters: Sequence[DeadLetter]) -> None:
        """Copy the source records with their dead-letter headers; return when durable.
        Raises on failure (then the group leaves the records pending and retries)."""
        ...

    def written(
        self,
        group: str,
        source_topic: str,
        source_partition: int,
        offsets: np.ndarray,
        since_ms: int = 0,
    ) -> np.ndarray:
        """For each source offset, True if this group already wrote it to its dead-letter
        topic after ``since_ms`` (only asked at recovery, for records the group has not
        marked dead; ``since_ms``: when the source topic was deleted, and its partition
        started over, so that letters at or before it are the deleted topic's)."""
        ...
