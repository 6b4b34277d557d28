"""Per-partition record accumulation and the per-batch completion object.

The per-record budget of ``Producer.send`` is well under a microsecond, so nothing here is
allocated per record except list slots and one small tuple (the :class:`RecordFuture`):

- :class:`ProducerBatch` collects one partition's records as *columns* (python lists of
  values, keys, timestamps, header blobs). The sender encodes them with one
  :func:`logstream.codec.encode_batch` call when the batch is drained.
- :class:`BatchResult` is the completion shared by every record of a batch: one
  ``threading.Event`` (created lazily, only if somebody waits) and one callback list.
- :class:`RecordFuture` is ``(BatchResult, index)`` as a tuple subclass built with the C-level
  ``tuple.__new__`` (no Python ``__init__`` frame, no lock). It offers the
  ``concurrent.futures.Future`` reading API: ``result``, ``exception``, ``done``,
  ``add_done_callback`` (alias ``add_callback``).

Thread safety: a batch is appended to only under the producer's lock; once sealed it is
immutable and owned by the sender. ``BatchResult`` completes once, from the sender side;
readers may wait from any thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from logstream import errors
from logstream.types import RecordMetadata

RECORD_OVERHEAD = 16
"""Bytes each record adds to the encoded batch besides its key/value/headers (4 int32)."""

MAX_LIMIT = 2**62


class BatchResult:
    """Completion of one batch: base offset (or an error) for all of its records."""

    __slots__ = (
        "_callbacks",
        "_event",
        "_lock",
        "base_offset",
        "error",
        "is_done",
        "log_append_time_ms",
        "partition",
        "timestamps",
        "topic",
        "ts0",
    )

    def __init__(
        self, topic: str, partition: int, ts0: int, timestamps: list[int] | None = None
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.ts0 = ts0
        self.timestamps = timestamps  # None: every record carries ts0
        self.base_offset = -1
        self.log_append_time_ms = -1
        self.error: BaseException | None = None
        self.is_done = False
        self._event: threading.Event | None = None
        self._callbacks: list[tuple[int, Callable[[RecordFuture], Any]]] | None = None
        self._lock = threading.Lock()

    # -- completion (sender side) -------------------------------------------------------------

    def complete(
        self, base_offset: int, log_append_time_ms: int = -1, error: BaseException | None = None
    ) -> None:
        with self._lock:
            if self.is_done:
                return
            self.base_offset = base_offset
            self.log_append_time_ms = log_append_time_ms
            self.error = error
            self.is_done = True
            event = self._event
            callbacks = self._callbacks
            self._callbacks = None
        if event is not None:
            event.set()
        if callbacks:
            for index, fn in callbacks:
                try:
                    fn(_new_future(RecordFuture, (self, index)))
                except Exception:  # a user callback must not kill the sender
                    import logging

                    logging.getLogger("logstream.client").exception("produce callback failed")

    # -- waiting (user side) ------------------------------------------------------------------

    def wait(self, timeout: float | None) -> bool:
        if self.is_done:
            return True
        with self._lock:
            if self.is_done:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)

    def add_callback(self, index: int, fn: Callable[[RecordFuture], Any]) -> None:
        with self._lock:
            if not self.is_done:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append((index, fn))
                return
        fn(_new_future(RecordFuture, (self, index)))

    def metadata(self, index: int) -> RecordMetadata:
        ts = self.log_append_time_ms
        if ts < 0:
            stamps = self.timestamps
            ts = self.ts0 if stamps is None else stamps[index]
        offset = self.base_offset + index if self.base_offset >= 0 else -1
        return RecordMetadata(self.topic, self.partition, offset, ts)


class RecordFuture(tuple):  # type: ignore[type-arg]
    """The result of one ``send()``: where the record landed, or why it did not.

    A ``(BatchResult, index)`` pair; cheap to create and safe to share between threads.
    """

    __slots__ = ()

    @property
    def _batch(self) -> BatchResult:
        return self[0]  # type: ignore[no-any-return]

    def done(self) -> bool:
        return self[0].is_done  # type: ignore[no-any-return]

    def result(self, timeout: float | None = None) -> RecordMetadata:
        """Block until the record is acknowledged; raise its error if it failed."""
        batch: BatchResult = self[0]
        if not batch.is_done and not batch.wait(timeout):
            raise errors.RequestTimedOutError(
                f"no acknowledgement within {timeout} s for a record to "
                f"{batch.topic}-{batch.partition}"
            )
        if batch.error is not None:
            raise batch.error
        return batch.metadata(self[1])

    def exception(self, timeout: float | None = None) -> BaseException | None:
        batch: BatchResult = self[0]
        if not batch.is_done and not batch.wait(timeout):
            raise errors.RequestTimedOutError(f"no acknowledgement within {timeout} s")
        return batch.error

    def add_done_callback(self, fn: Callable[[RecordFuture], Any]) -> None:
        """Call ``fn(self)`` when done (immediately if already done). Callbacks run on the
        producer's I/O thread: keep them short."""
        self[0].add_callback(self[1], fn)

    add_callback = add_done_callback

    def __repr__(self) -> str:
        batch: BatchResult = self[0]
        state = "pending"
        if batch.is_done:
            state = f"error={batch.error!r}" if batch.error else f"offset={batch.metadata(self[1])}"
        return f"RecordFuture({batch.topic}-{batch.partition}[{self[1]}] {state})"


_new_future = tuple.__new__
"""``_new_future(RecordFuture, (batch_result, index))``: C-level construction, no frame."""


def failed_future(topic: str, partition: int, error: BaseException) -> RecordFuture:
    result = BatchResult(topic, partition if partition is not None else -1, -1)
    result.complete(-1, -1, error)
    return _new_future(RecordFuture, (result, 0))  # type: ignore[no-any-return]


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
