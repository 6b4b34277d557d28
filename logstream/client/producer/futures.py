"""What ``send()`` and ``send_batch()`` return: completions shared per batch.

The per-record budget of ``Producer.send`` is well under a microsecond, so nothing here is
allocated per record except one small tuple (the :class:`RecordFuture`):

- :class:`BatchResult` is the completion shared by every record of a batch: one
  ``threading.Event`` (created lazily, only if somebody waits) and one callback list.
- :class:`RecordFuture` is ``(BatchResult, index)`` as a tuple subclass built with the C-level
  ``tuple.__new__`` (no Python ``__init__`` frame, no lock). It offers the
  ``concurrent.futures.Future`` reading API: ``result``, ``exception``, ``done``,
  ``add_done_callback`` (alias ``add_callback``).
- :class:`BulkFuture` is the one completion of a ``send_batch`` call: segments of batches.

Thread safety: ``BatchResult`` completes once, from the sender side; readers may wait from
any thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from logstream import errors
from logstream.types import RecordMetadata

log = logging.getLogger("logstream.client")


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
                    fn(new_future(RecordFuture, (self, index)))
                except Exception:  # a user callback must not kill the sender
                    log.exception("produce callback failed")

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
        fn(new_future(RecordFuture, (self, index)))

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


new_future = tuple.__new__
"""``new_future(RecordFuture, (batch_result, index))``: C-level construction, no frame."""


def failed_future(topic: str, partition: int, error: BaseException) -> RecordFuture:
    result = BatchResult(topic, partition if partition is not None else -1, -1)
    result.complete(-1, -1, error)
    return new_future(RecordFuture, (result, 0))  # type: ignore[no-any-return]


Segment = tuple[BatchResult, int, int, "list[int] | None"]
"""(batch, index of the first record in the batch, record count, input positions or None)."""


class BulkFuture:
    """The result of ``send_batch``: one completion for many records (no per-record object)."""

    __slots__ = ("_segments", "count")

    def __init__(self, segments: list[Segment], count: int):
        self._segments = segments
        self.count = count

    def done(self) -> bool:
        return all(seg[0].is_done for seg in self._segments)

    def _wait(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        for seg in self._segments:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not seg[0].wait(remaining):
                raise errors.RequestTimedOutError(f"send_batch not acknowledged in {timeout} s")

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._wait(timeout)
        for seg in self._segments:
            if seg[0].error is not None:
                return seg[0].error
        return None

    def result(self, timeout: float | None = None) -> list[RecordMetadata]:
        """Metadata for every record, in input order; raises the first failure."""
        exc = self.exception(timeout)
        if exc is not None:
            raise exc
        out: list[RecordMetadata | None] = [None] * self.count
        pos = 0
        for batch, start, n, positions in self._segments:
            metas = [batch.metadata(start + i) for i in range(n)]
            if positions is None:
                out[pos : pos + n] = metas
                pos += n
            else:
                for p, m in zip(positions, metas, strict=True):
                    out[p] = m
        return out  # type: ignore[return-value]
