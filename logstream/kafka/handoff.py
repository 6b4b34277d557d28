"""A Produce hands its batch straight to the Fetch parked at that batch's offset.

The latency path: a consumer caught up at a partition's log end has a Fetch parked (a
long-poll) at exactly the offset the next append gets. Without this, the append wakes the
Fetch's wait (``parked_fetch.py``), which runs on a later pass of the loop, re-reads the
partition from storage and builds its answer (``sent_batches.py`` already spares it the
conversion back to Kafka's format). Here the Produce's handler, right after its append and
on the same loop thread, writes that Fetch's answer itself from the Kafka bytes the
producer sent (as ``SentBatches`` keeps them: base offset patched, leader epoch the
conversion's), then cancels the parked Fetch's wait (its timer and notifier
registration); its connection takes its next request on the next pass.

The answer is built by the same function as the normal path's (``LogApis.fetch_answer``)
from the same values, so it is what the normal Fetch would have sent had it read the log
at that moment. Handed over only when nothing could make the two differ:

- the Fetch (checked when it parks, :meth:`Handoff.park`): one topic with one partition,
  no fetch session, no quota active on the listener (the normal path charges the answer's
  bytes and may set a throttle time), the topic's read access granted (the normal path
  checks it once, before it waits, as this does);
- the batch (checked by the Produce, :meth:`Handoff.appended`): the one whole batch of its
  partition in the request, kept by ``SentBatches`` (uncompressed, create time, offset
  deltas 0..n-1, no null header value, not a duplicate, no log-append time: its Kafka bytes
  are byte for byte what converting the stored batch gives), at least the Fetch's
  ``min_bytes`` long as stored, and at the time of the answer the partition's log end just
  past it (no other append came in between from another thread, so a read at the Fetch's
  offset would return exactly this batch, whatever the Fetch's byte limits: storage
  always returns at least one whole batch).

Isolation level: the listener has no transactions, so read_committed answers the same
bytes (last stable offset = high watermark) and is handed over too (librdkafka's default).

Concurrency: all of it runs on the listener's loop thread (parked Fetches are registrations there,
Produce runs inline there), so the registry needs no lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from logstream.kafka.connection import KafkaConnection
    from logstream.kafka.wire import Request


@dataclass(slots=True, eq=False)
class ParkedFetch:
    """One Fetch request in hand on ``conn``, eligible for a hand-over."""

    conn: KafkaConnection
    req: Request
    topic: str
    partition: int
    offset: int
    min_bytes: int


def parkable(req: Request) -> tuple[str, int, int, int] | None:
    """(topic, partition, fetch offset, min bytes) when the Fetch ``req`` may be handed a
    batch; None when it must take the normal path (several partitions, a session)."""
    body = req.body
    if int(getattr(body, "session_id", 0)) != 0 or len(body.topics) != 1:
        return None
    topic = body.topics[0]
    if len(topic.partitions) != 1:
        return None
    part = topic.partitions[0]
    return topic.topic, int(part.partition), int(part.fetch_offset), int(body.min_bytes)


class Handoff:
    def __init__(self) -> None:
        self._parked: dict[tuple[str, int], list[ParkedFetch]] = {}
        self.handed = 0  # Fetch answers written by a Produce's handler (tests, docs)

    def park(self, fetch: ParkedFetch) -> None:
        self._parked.setdefault((fetch.topic, fetch.partition), []).append(fetch)

    def unpark(self, fetch: ParkedFetch) -> None:
        key = (fetch.topic, fetch.partition)
        waiting = self._parked.get(key)
        if waiting is None:
            return
        try:
            waiting.remove(fetch)
        except ValueError:
            return
        if not waiting:
            del self._parked[key]

    def waiting(self, topic: str, partition: int) -> bool:
        return (topic, partition) in self._parked

    def appended(
        self,
        topic: str,
        partition: int,
        base_offset: int,
        record_count: int,
        stored_length: int,
        kafka: bytes,
        plog: Any,
        answer: Any,
    ) -> int:
        """A Produce appended one kept batch (``kafka``: its Kafka bytes as a Fetch sends
        them) at ``base_offset``: answer each Fetch parked there at once. ``answer(req,
        high_watermark, log_start_offset, records)`` is the normal path's answer frame.
        Returns how many were answered."""
        waiting = self._parked.get((topic, partition))
        if not waiting:
            return 0
        high_watermark = plog.log_end_offset
        if high_watermark != base_offset + record_count:
            return 0  # another append came in between: the normal read returns more
        log_start = plog.log_start_offset
        handed = 0
        for fetch in list(waiting):
            if fetch.offset != base_offset or stored_length < fetch.min_bytes:
                continue
            if fetch.conn.answer_early(answer(fetch.req, high_watermark, log_start, kafka)):
                handed += 1
            self.unpark(fetch)
        self.handed += handed
        return handed
