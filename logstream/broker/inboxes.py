"""Inboxes: reply addresses held in memory, pushed to the requester's open stream.

An inbox is a topic name in the ``_inbox.`` namespace (logstream/protocol/request_reply.py)
with no log behind it. A Requester opens its inbox with a Subscribe on (inbox, 0); from then
until that stream ends, every batch produced to the inbox is queued here and pushed down the
stream. Nothing touches the disk, nothing outlives the stream:

* a produce to an inbox that nobody has open is acknowledged and discarded (counted in
  ``discarded``): a late reply to a requester that is gone costs nothing on the broker;
* an open inbox queues at most ``max_bytes``; beyond that a batch is discarded (counted) so a
  requester that stops reading cannot grow the broker;
* when the stream ends (requester closed, crashed, network gone) the inbox and whatever is
  queued in it go away; a broker restart forgets every inbox and the requesters re-open them;
* one stream per inbox: a Subscribe to an inbox that is already open is refused
  (INVALID_REQUEST), so a reader of the request topic, who sees inbox names in the headers,
  cannot take over someone's replies; a requester whose stream broke opens a new inbox.

Stream messages: first an empty ``FetchResponse`` (the inbox is open: requests sent after it
can be answered), then one message per wake-up with the queued batches back to back in
``records`` of partition 0. Batches are checked as on a produce (one batch, CRC, sizes);
their offsets are whatever the producer sent (0): a reply has no position in a log.

Concurrency: :meth:`Inboxes.deliver` may run on the event loop or in a pool thread (a
produce request that also names a blocking partition); queues are guarded by one lock, and
wake-ups go through the broker's :class:`AppendNotifier` under the key (inbox, 0), so the
stream coroutine waits exactly like a subscription on a partition.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from logstream.broker.notify import AppendNotifier
from logstream.codec import check_batch
from logstream.errors import InvalidRequestError
from logstream.protocol.request_reply import check_inbox_name

MAX_INBOX_BYTES = 8 * 1024 * 1024
"""Bytes one open inbox may hold unsent before new batches to it are discarded."""


@dataclass(eq=False)
class _Inbox:
    name: str
    batches: deque[bytes] = field(default_factory=deque)
    size: int = 0


class Inboxes:
    def __init__(self, notifier: AppendNotifier, *, max_bytes: int = MAX_INBOX_BYTES) -> None:
        self._notifier = notifier
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._open: dict[str, _Inbox] = {}
        self.delivered = 0
        self.discarded = 0

    def __len__(self) -> int:
        return len(self._open)

    def queued_bytes(self) -> int:
        with self._lock:
            return sum(box.size for box in self._open.values())

    def deliver(self, topic: str, partition: int, batches: Sequence[bytes]) -> int:
        """A produce to an inbox: queue ``batches`` for its stream, or discard them (no
        stream, or the inbox is full). Returns how many were queued; raises a
        ``LogstreamError`` (nothing queued) for a bad name, partition or batch."""
        check_inbox_name(topic)
        if partition != 0:
            raise InvalidRequestError(f"an inbox has one partition (0), not {partition}")
        for batch in batches:
            check_batch(batch)
        queued = 0
        with self._lock:
            box = self._open.get(topic)
            for batch in batches:
                if box is None or box.size + len(batch) > self._max_bytes:
                    self.discarded += 1
                else:
                    box.batches.append(batch)
                    box.size += len(batch)
                    self.delivered += 1
                    queued += 1
        if queued:
            self._notifier.notify((topic, 0))
        return queued

    def _take(self, box: _Inbox) -> bytes:
        with self._lock:
            data = b"".join(box.batches)
            box.batches.clear()
            box.size = 0
            return data

    async def stream(
        self, topic: str, *, heartbeat_s: float = 0.0, idle_wait_s: float = 30.0
    ) -> AsyncIterator[bytes]:
        """Open inbox ``topic`` and yield b"" (open), then queued batches as they arrive
        (and b"" every ``heartbeat_s`` without any), until the caller stops or the notifier
        closes."""
        check_inbox_name(topic)
        box = _Inbox(topic)
        with self._lock:
            if topic in self._open:
                raise InvalidRequestError(f"inbox {topic} is already open on another stream")
            self._open[topic] = box
        keys = [(topic, 0)]
        wait_s = heartbeat_s or idle_wait_s
        try:
            yield b""
            while not self._notifier.closed:
                seen = self._notifier.mark(keys)
                data = self._take(box)
                if data:
                    yield data
                    continue
                if not await self._notifier.wait(keys, seen, wait_s) and heartbeat_s:
                    yield b""
        finally:
            with self._lock:
                if self._open.get(topic) is box:
                    del self._open[topic]
