"""Record accumulation: open batches per partition, sealed batches ready to send, and the
bounded buffer.

Data flow::

    Producer.send() --(lock, list.append)--> ProducerBatch (open, one per partition)
        sealed when batch_bytes is reached or linger_ms has passed since its first record
        (seal_due), or by flush(); a sealed batch waits in ``ready[tp]`` for the Sender

The per-record budget of ``Producer.send`` is well under a microsecond, so a batch holds its
records as *columns* (python lists of values, keys, timestamps, header blobs), encoded with
one :func:`logstream.codec.encode_batch` call when the Sender takes it.

Concurrency: one :class:`RecordAccumulator` lock guards every batch, queue and counter here;
the Sender shares it (``wake`` is the Sender's condition, ``space`` the one ``send()`` waits
on when the buffer is full). Methods named ``*_locked`` or documented "Lock held" must be
called with ``lock`` held. A batch is appended to only under the lock; once sealed it is
immutable and owned by the Sender.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from logstream import errors
from logstream.client.producer.futures import BatchResult, RecordFuture, Segment, new_future
from logstream.codec import RECORD_COLUMN_BYTES
from logstream.types import TopicPartition

RECORD_OVERHEAD = RECORD_COLUMN_BYTES
"""Bytes each record adds to its batch besides its key, value and headers."""

MAX_TIMESTAMP_DELTA = 2**31 - 1
"""The codec stores timestamps as int32 deltas from the batch's first one."""

MAX_LIMIT = 2**62


class TopicBatches:
    """One topic's open batch per partition and its sticky partition for keyless records."""

    __slots__ = ("name", "num_partitions", "open", "sticky")

    def __init__(self, name: str, num_partitions: int) -> None:
        self.name = name
        self.num_partitions = num_partitions
        self.open: list[ProducerBatch | None] = [None] * num_partitions
        self.sticky = zlib.crc32(name.encode()) % num_partitions

    def open_ts_conflict(self, timestamps: list[int]) -> bool:
        """True if an open batch's first timestamp is too far from these timestamps."""
        lo, hi = min(timestamps), max(timestamps)
        for b in self.open:
            if b is not None and b.values:
                t0 = b.first_timestamp()
                if hi - t0 > MAX_TIMESTAMP_DELTA or t0 - lo > MAX_TIMESTAMP_DELTA:
                    return True
        return False

    def grow(self, count: int) -> None:
        """Lock held. Take partitions added to the topic since it was first seen."""
        if count > self.num_partitions:
            self.open.extend([None] * (count - self.num_partitions))
            self.num_partitions = count


class ProducerBatch:
    """One partition's records being accumulated (open) or waiting to be sent (sealed).

    Columns: ``values`` always; ``keys`` only once a record brings a key (None until then,
    so a keyless ``send`` appends to one list, not two); ``timestamps`` and ``headers`` only
    once a record brings an explicit timestamp or headers (``rich``). Until then every record
    of the batch carries ``ts0``, the time the batch was opened: at most ``linger_ms`` plus
    the fill time before the record's own ``send`` (a per-record clock read would cost
    more than a tenth of the per-record budget).

    ``fast_limit`` is what ``Producer.send``'s fast path compares ``size + record`` with:
    ``batch_bytes`` for a plain batch, -1 once rich (every record then takes the slow path,
    which fills the optional columns).
    """

    __slots__ = (
        "attempts",
        "base_sequence",
        "created",
        "deadline",
        "encoded",
        "fast_limit",
        "headers",
        "keys",
        "partition",
        "result",
        "retry_at",
        "rich",
        "size",
        "timestamps",
        "topic",
        "ts0",
        "values",
    )

    def __init__(
        self, topic: str, partition: int, now: float, now_ms: int, limit: int = MAX_LIMIT
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.values: list[Any] = []
        self.keys: list[bytes | None] | None = None
        self.ts0 = now_ms
        self.timestamps: list[int] | None = None
        self.headers: list[bytes] | None = None
        self.rich = False
        self.fast_limit = limit
        self.size = 0
        self.created = now
        self.deadline = 0.0  # monotonic time after which delivery fails (set by the producer)
        self.result = BatchResult(topic, partition, now_ms)
        self.encoded: bytes | None = None
        self.base_sequence = -1
        self.attempts = 0
        self.retry_at = 0.0

    def __len__(self) -> int:
        return len(self.values)

    def first_timestamp(self) -> int:
        return self.ts0 if self.timestamps is None else self.timestamps[0]

    def add_keys(self, index: int, keys: list[bytes | None]) -> None:
        """Append the keys of records ``index...`` (``index`` = the first of them)."""
        if self.keys is None:
            if all(k is None for k in keys):
                return
            self.keys = [None] * index
        self.keys.extend(keys)

    def add_columns(
        self,
        start: int,
        values: Sequence[bytes | None],
        keys: Sequence[bytes | None] | None,
        i: int,
        j: int,
        timestamps: list[int] | None,
    ) -> None:
        """Append ``values`` (records ``i:j`` of a bulk send) with their keys and timestamps
        (None: the batch's own time); ``start`` is the index of the first one here."""
        count = j - i
        self.values.extend(values)
        if keys is None:
            if self.keys is not None:
                self.keys.extend([None] * count)
        else:
            self.add_keys(start, list(keys[i:j]))
        if self.headers is not None:
            self.headers.extend([b""] * count)
        if timestamps is not None:
            if self.timestamps is None:
                self.add_timestamp(start, timestamps[i])
                stamps = self.timestamps
                assert stamps is not None  # add_timestamp created the column
                stamps.extend(timestamps[i + 1 : j])
            else:
                self.timestamps.extend(timestamps[i:j])
        elif self.timestamps is not None:
            self.timestamps.extend([self.ts0] * count)

    def add_timestamp(self, index: int, ts: int) -> None:
        """Record an explicit timestamp for record ``index`` (the last one appended)."""
        if self.timestamps is None:
            self.timestamps = [self.ts0] * index
            self.result.timestamps = self.timestamps
            self.make_rich()
        self.timestamps.append(ts)

    def add_headers(self, index: int, blob: bytes) -> None:
        if self.headers is None:
            self.headers = [b""] * index
            self.make_rich()
        self.headers.append(blob)

    def make_rich(self) -> None:
        self.rich = True
        self.fast_limit = -1

    def release_columns(self) -> None:
        """Drop the record data once encoded (the timestamps stay for the metadata)."""
        self.values = []
        self.keys = None
        self.headers = None


class RecordAccumulator:
    """Open and sealed batches of every partition plus the buffer limit (``buffer_bytes``).

    Caller: ``Producer`` appends (``send`` inlines the fast path over ``topics``, ``buffered``
    and ``limit``; the slow paths are methods here). ``Sender`` seals due batches, takes ready
    ones, puts failed ones back (``requeue``) and releases finished ones (``release``).
    """

    def __init__(
        self,
        *,
        batch_bytes: int,
        max_record_bytes: int,
        linger_s: float,
        buffer_bytes: int,
        max_block_s: float,
        delivery_timeout_s: float,
    ) -> None:
        self.batch_bytes = batch_bytes
        self.max_record_bytes = max_record_bytes
        self.linger = linger_s
        self.buffer_bytes = buffer_bytes
        self.limit = buffer_bytes  # -1 once closing: every send takes the slow path
        self.max_block = max_block_s
        self.delivery_timeout = delivery_timeout_s
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)  # the Sender waits here
        self.space = threading.Condition(self.lock)  # send() waits here for buffer room
        self.space_waiters = 0
        self.topics: dict[str, TopicBatches] = {}
        self.buffered = 0
        self.ready: dict[TopicPartition, deque[ProducerBatch]] = {}
        self.pending: set[ProducerBatch] = set()
        self.flush_all = 0
        self.closing = False
        self.answer_due: Callable[[], bool] = lambda: False  # set by the Sender

    # -- appending (Producer) -------------------------------------------------------------------

    def add_topic(self, name: str, num_partitions: int) -> TopicBatches:
        with self.lock:
            t = self.topics.get(name)
            if t is None:
                t = self.topics[name] = TopicBatches(name, num_partitions)
            return t

    def wait_for_space(self, size: int) -> None:
        """Lock held, buffer full: wait up to ``max_block`` for ``size`` bytes of room."""
        if self.closing:
            raise errors.ClientClosedError("producer is closed")
        deadline = time.monotonic() + self.max_block
        self.space_waiters += 1
        try:
            while self.buffered + size > self.buffer_bytes and self.buffered > 0:
                # Make sure everything buffered is on its way: nothing else frees space.
                if self.flush_all == 0:
                    self.flush_all = 1
                    self.wake.notify()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise errors.BufferExhaustedError(
                        f"producer buffer full ({self.buffered} of {self.buffer_bytes} bytes) "
                        f"for max_block_ms={self.max_block * 1000:.0f}"
                    )
                self.space.wait(remaining)
                if self.closing:
                    raise errors.ClientClosedError("producer is closed")
        finally:
            self.space_waiters -= 1
            if self.space_waiters == 0:
                self.flush_all = 0

    def batch_for(
        self, t: TopicBatches, partition: int, b: ProducerBatch | None, size: int, ts: int | None
    ) -> ProducerBatch | None:
        """Lock held. The open batch that can take a record of ``size`` bytes with timestamp
        ``ts`` (None = the batch's own time), opening a new one if needed; None if the record
        is too large for any batch."""
        if size > self.max_record_bytes:
            return None
        if b is not None and b.values:
            if b.size + size > self.batch_bytes:
                return self.new_batch(t, partition, b)
            if ts is not None or b.timestamps is not None:
                # every timestamp must stay within an int32 delta of the batch's first one
                # (also when the batch so far holds only plain records, all at ts0)
                delta = (b.ts0 if ts is None else ts) - b.first_timestamp()
                if not -MAX_TIMESTAMP_DELTA <= delta <= MAX_TIMESTAMP_DELTA:
                    return self.new_batch(t, partition, b)
            return b
        if b is None or b.size + size > self.batch_bytes:
            return self.new_batch(t, partition, b)
        return b

    def new_batch(
        self, t: TopicBatches, partition: int, full: ProducerBatch | None
    ) -> ProducerBatch:
        """Lock held. Seal the full batch (if any) and open a new one."""
        if full is not None:
            self.seal(t, partition, full)
        now = time.monotonic()
        b = ProducerBatch(t.name, partition, now, time.time_ns() // 1_000_000, self.batch_bytes)
        b.deadline = now + self.delivery_timeout
        t.open[partition] = b
        self.pending.add(b)
        if self.linger > 0 or not self.answer_due():
            # At linger_ms=0 with a request unanswered, its answer wakes the sender, which
            # then seals this batch: waking it now (once per record at low rates) only
            # costs a thread switch on the latency path. With a linger, the sender times
            # it (a sealed batch may still pipeline once enough is ready).
            self.wake.notify()
        return b

    def append(
        self,
        b: ProducerBatch,
        value: bytes | None,
        key: bytes | None,
        timestamp_ms: int | None,
        hblob: bytes | None,
        size: int,
    ) -> RecordFuture:
        """Lock held. Append one record to ``b``, filling the optional columns (the slow
        path: rich batches, explicit timestamps, headers)."""
        index = len(b.values)
        b.values.append(value)
        if key is not None or b.keys is not None:
            b.add_keys(index, [key])
        if timestamp_ms is not None:
            b.add_timestamp(index, timestamp_ms)
        elif b.timestamps is not None:
            b.timestamps.append(b.ts0)
        if hblob is not None:
            b.add_headers(index, hblob)
        elif b.headers is not None:
            b.headers.append(b"")
        b.size += size
        self.buffered += size
        return new_future(RecordFuture, (b.result, index))  # type: ignore[no-any-return]

    def append_many(
        self,
        t: TopicBatches,
        partition: int | None,
        values: Sequence[bytes | None],
        keys: Sequence[bytes | None] | None,
        timestamps: list[int] | None,
        sizes: list[int],
        positions: list[int] | None,
        segments: list[Segment],
    ) -> None:
        """Append records in chunks that fit the open batch of ``partition`` (None: the
        sticky partition, which moves on as batches fill). ``timestamps`` None: each batch's
        own time. One segment per chunk goes to ``segments``."""
        n = len(values)
        i = 0
        limit = self.batch_bytes
        with self.lock:
            while i < n:
                p = t.sticky if partition is None else partition
                b = t.open[p]
                room = limit - (b.size if b is not None else 0)
                # how many of the next records fit in the open batch
                j = i
                acc = 0
                while j < n and acc + sizes[j] <= room:
                    acc += sizes[j]
                    j += 1
                if j == i:
                    if b is not None and b.values:
                        self.seal(t, p, b)
                    b = self.new_batch(t, p, None)
                    j = i + 1
                    acc = sizes[i]
                elif b is None:
                    b = self.new_batch(t, p, None)
                if self.buffered + acc > self.limit and self.buffered > 0:
                    # Waiting releases the lock: the sender may seal ``b`` meanwhile, so
                    # choose the batch again afterwards.
                    self.wait_for_space(acc)
                    continue
                start = len(b.values)
                b.add_columns(start, values[i:j], keys, i, j, timestamps)
                b.size += acc
                self.buffered += acc
                segments.append(
                    (b.result, start, j - i, None if positions is None else positions[i:j])
                )
                if b.size >= limit:
                    self.seal(t, p, b)
                i = j

    # -- sealing --------------------------------------------------------------------------------

    def seal(self, t: TopicBatches, partition: int, b: ProducerBatch) -> None:
        """Lock held. Move an open batch to its partition's ready queue."""
        t.open[partition] = None
        if not b.values:
            self.pending.discard(b)
            return
        tp = TopicPartition(t.name, partition)
        dq = self.ready.get(tp)
        if dq is None:
            dq = self.ready[tp] = deque()
        dq.append(b)
        if partition == t.sticky and t.num_partitions > 1:
            t.sticky = (t.sticky + 1) % t.num_partitions
        self.wake.notify()

    def seal_all(self) -> list[BatchResult]:
        """Seal every open batch; the results of everything not yet finished (``flush``)."""
        with self.lock:
            for t in self.topics.values():
                for p, b in enumerate(t.open):
                    if b is not None:
                        self.seal(t, p, b)
            waiting = [b.result for b in self.pending]
            self.wake.notify()
        return waiting

    def seal_due(self, now: float) -> float | None:
        """Lock held. Seal the batches whose linger has passed (all of them while a
        ``send`` waits for room); the time the next one is due, if any."""
        wake_at: float | None = None
        linger = self.linger
        flush_all = self.flush_all
        for t in self.topics.values():
            for p, b in enumerate(t.open):
                if b is None:
                    continue
                due = b.created + linger
                if flush_all or due <= now:
                    self.seal(t, p, b)
                elif wake_at is None or due < wake_at:
                    wake_at = due
        return wake_at

    def ready_at_least(self, size: int) -> bool:
        """Lock held. Do the sealed batches waiting to be sent add up to ``size`` bytes?"""
        total = 0
        for dq in self.ready.values():
            for b in dq:
                total += b.size
                if total >= size:
                    return True
        return False

    # -- the Sender's side ---------------------------------------------------------------------

    def requeue(self, tp: TopicPartition, b: ProducerBatch) -> None:
        """Lock held. Put a batch that will be retried back at the head of its queue,
        retried batches in sequence (then creation) order."""
        dq = self.ready.get(tp)
        if dq is None:
            dq = self.ready[tp] = deque()
        items = [x for x in dq if x.attempts > 0] + [b]
        rest = [x for x in dq if x.attempts == 0]
        items.sort(key=lambda x: (x.base_sequence, x.created))
        dq.clear()
        dq.extend(items)
        dq.extend(rest)

    def take_topic(self, name: str) -> list[ProducerBatch]:
        """Lock held. Remove every batch of topic ``name`` not handed to the sender yet (open,
        or waiting in a ready queue) so that the caller can fail them all at once; batches
        in flight stay where they are."""
        taken: list[ProducerBatch] = []
        t = self.topics.get(name)
        if t is not None:
            for p, b in enumerate(t.open):
                if b is not None:
                    t.open[p] = None
                    taken.append(b)
        for tp, dq in self.ready.items():
            if tp.topic == name and dq:
                taken.extend(dq)
                dq.clear()
        return taken

    def release(self, b: ProducerBatch) -> None:
        """A batch is finished (acknowledged or failed): give its bytes back to the buffer."""
        with self.lock:
            self.pending.discard(b)
            self.buffered -= b.size
            b.size = 0
            b.release_columns()
            b.encoded = None
            if self.space_waiters:
                self.space.notify_all()

    def close(self) -> list[ProducerBatch]:
        """Refuse further appends, wake every waiter; the batches never sent."""
        with self.lock:
            self.closing = True
            self.limit = -1
            leftovers = list(self.pending)
            self.pending.clear()
            for dq in self.ready.values():
                dq.clear()
            self.wake.notify_all()
            self.space.notify_all()
        return leftovers

    def abandon(self) -> list[ProducerBatch]:
        """Every unfinished batch, removed (the sender thread died)."""
        with self.lock:
            doomed = list(self.pending)
            self.pending.clear()
        return doomed
