"""The ``QueueConsumer``'s prefetch: how much a fetch asks for, and the records fetched
beyond what the poll wanted (docs/decisions/0032 and 0036).

- **Depth** (:meth:`Prefetch.fetch_size`, :meth:`Prefetch.fetched`): while fetches come
  back full, each asks for twice as many polls' worth as the one before, or at once for
  the member's share of the backlog when a full answer says how many records wait and
  how many members share them (decision 0042), up to :data:`PREFETCH_MAX_POLLS`; a short
  answer starts again at one poll's worth, an answer reporting a quota throttle or one
  of more than half :data:`PREFETCH_MAX_BYTES` does not grow it, and a jump to the share
  is only made when an answer of that size would stay under half of it. A fetch never
  asks for more than
  the application consumed, at the rate seen since the previous fetch (all of whose
  records were handed out before the next fetch is made), in
  :data:`PREFETCH_LEASE_SHARE` of the lease.
- **Buffer**: the records beyond the poll's share, with when their fetch began, the lease
  they were acquired under and the transport's connection-drop count at that time, so
  the consumer can tell when their leases need renewing (:meth:`Prefetch.needs_renewal`).
  Buffered records are kept as row ranges of the answer's
  :class:`~logstream.client.queue_records.PartitionRecords`; a poll makes message objects
  for the rows it hands out only, so at most a poll's worth of messages exists at a time
  and they are freed before the garbage collector looks at them (a buffer of thousands of
  objects was collected, and promoted, over and over).

Not thread-safe: used by the one polling thread.
"""

from __future__ import annotations

import time
from itertools import repeat
from typing import Any

from logstream.client.queue_message import EXTEND, QueueMessage
from logstream.client.queue_records import PartitionRecords
from logstream.protocol import queue_pb2

PREFETCH_MAX_POLLS = 64
"""A fetch asks for at most this many polls' worth of records (6,400 at ``max_records``
100): in the queue benchmark, with messages made per poll (decision 0038), alternating
runs gave the broker 1.4-1.6 us of CPU per acknowledged record at 16, 1.2-1.6 at 32 and
1.1-1.3 at 64, the workers 1.4-1.8 at 32 and 1.3-1.4 at 64."""
PREFETCH_MAX_BYTES = 8 * 1024 * 1024
"""The depth does not grow after an answer of more than half this many bytes (of record
batches), so a prefetching answer stays under it: large records are prefetched a few at a
time, not 64 polls' worth."""
PREFETCH_LEASE_SHARE = 0.25
"""A fetch asks for at most what the application consumed, at its observed rate, in this
share of the lease: the buffer is normally handed out long before a renewal is due."""


class Prefetch:
    """Prefetch depth and buffer of one ``QueueConsumer``; see the module docstring."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._returned: list[QueueMessage] = []  # handed out, not used: first in line
        self._spans: list[tuple[PartitionRecords, int]] = []  # rows [start:] of each
        self._count = 0  # records buffered
        self.fetched_at = 0.0  # monotonic; when the buffered records' fetch began
        self.lease_s = 0.0  # the lease they were acquired under
        self.drops = 0  # the transport's connection drops before that fetch
        self._depth = 1  # polls' worth the next fetch asks for (> 1: prefetch)
        self._last = (0.0, 0)  # when the last fetch began, how many records it got

    def fetch_size(self, want: int, now: float, lease_s: float) -> int:
        """Records the next fetch (beginning ``now``) asks for when the poll wants
        ``want``, records being leased for ``lease_s``."""
        if self._depth <= 1:
            return want
        ask = want * self._depth
        since, count = self._last
        elapsed = now - since
        if elapsed > 0 and lease_s > 0:
            ask = min(ask, max(want, int(count / elapsed * lease_s * PREFETCH_LEASE_SHARE)))
        return ask

    def fetched(
        self,
        got: list[PartitionRecords],
        want: int,
        asked: int,
        *,
        at: float,
        drops: int,
        lease_s: float,
        throttled: bool,
        backlog: int = 0,
        members: int = 0,
    ) -> list[QueueMessage]:
        """A fetch that began ``at`` returned ``got`` (asked for ``asked``; the buffer was
        empty; ``backlog`` records wait for ``members`` members, 0: not said): adjust the
        depth, buffer what is beyond ``want`` and return the rest."""
        count = sum(map(len, got))
        answer_bytes = sum(r.nbytes for r in got)
        if not (self.enabled and count >= asked):
            self._depth = 1
        elif not throttled:  # (over its quota, a larger answer gains nothing)
            depth = self._depth
            if 2 * answer_bytes <= PREFETCH_MAX_BYTES:  # twice a large one is too much
                depth = 2 * depth
            if backlog > 0 and count:
                share = -(-backlog // max(members, 1))
                polls = -(-share // want)
                if polls > depth and answer_bytes * polls * want <= count * PREFETCH_MAX_BYTES / 2:
                    depth = polls
            self._depth = min(depth, PREFETCH_MAX_POLLS)
        self._last = (at, count)
        self._spans = [(r, 0) for r in got if len(r)]
        self._count = count
        self.fetched_at, self.drops, self.lease_s = at, drops, lease_s
        return self.take(want)

    def __len__(self) -> int:
        """Records buffered."""
        return self._count

    @property
    def buffer(self) -> list[QueueMessage]:
        """The buffered records as messages, in order (made here; for renewals)."""
        if self._spans:
            returned, self._returned = self._returned, []
            self._count -= len(returned)
            self._returned = returned + self.take(self._count)
            self._count = len(self._returned)
        return self._returned

    def needs_renewal(self, drops: int) -> bool:
        """Whether the buffer's leases must be renewed before a record is handed out: half
        the lease ran out since the fetch, or the connection dropped (``drops`` differs:
        a restarted broker voided every lease)."""
        lease_s = self.lease_s
        stale = lease_s > 0 and time.monotonic() - self.fetched_at > lease_s / 2
        return stale or drops != self.drops

    def renewed(self, kept: list[QueueMessage], at: float, drops: int, lease_s: float) -> None:
        """The buffer's leases were renewed at ``at``; ``kept`` are the records still held."""
        self.clear()
        self._returned, self._count = kept, len(kept)
        self.fetched_at, self.drops, self.lease_s = at, drops, lease_s

    def clear(self) -> None:
        """Forget the buffered records (the broker hands them out again)."""
        self._returned, self._spans, self._count = [], [], 0

    def take(self, want: int) -> list[QueueMessage]:
        """Up to ``want`` buffered records, made into messages now."""
        out, self._returned = self._returned[:want], self._returned[want:]
        spans = self._spans
        while spans and len(out) < want:
            records, start = spans[0]
            stop = min(len(records), start + want - len(out))
            out += map(
                QueueMessage, repeat(records, stop - start), range(start, stop),
                records.offsets[start:stop],
            )  # fmt: skip
            if stop < len(records):
                spans[0] = (records, stop)
            else:
                del spans[0]
        self._count -= len(out)
        return out

    def put_back(self, msgs: list[QueueMessage]) -> None:
        """Records handed out but not used (iteration stopped): first in line again, and
        renewed before they are handed out (their fetch is not known any more)."""
        self._returned = msgs + self._returned
        self._count += len(msgs)
        self.drops = -1


def extend_settlements(msgs: list[QueueMessage], lease_ms: int) -> list[queue_pb2.Settlement]:
    """Extends of ``msgs`` (a lease of ``lease_ms``; 0: the group's), one per partition."""
    by_tp: dict[tuple[str, int], list[QueueMessage]] = {}
    for m in msgs:
        by_tp.setdefault((m.topic, m.partition), []).append(m)
    return [
        queue_pb2.Settlement(
            topic=t, partition=p, kind=EXTEND, offsets=[m.offset for m in ms], lease_ms=lease_ms
        )
        for (t, p), ms in by_tp.items()
    ]


def still_held(msgs: list[QueueMessage], results: Any) -> list[QueueMessage]:
    """``msgs`` less those the broker refused to renew (``SettleResult`` items)."""
    lost = {(r.topic, r.partition, off) for r in results for off in r.offsets}
    if not lost:
        return msgs
    return [m for m in msgs if (m.topic, m.partition, m.offset) not in lost]
