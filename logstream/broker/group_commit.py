"""Group commit for ``acks=flushed``: one flush covers every batch appended meanwhile.

A producer that asked for ``acks=flushed`` appends its batch, then calls
:meth:`GroupCommit.sync`. If no flush of the partition is running, it becomes the *leader*:
it runs the flush (msync/fsync of everything appended so far) outside the lock. Producers
that arrive while a flush runs cannot be sure it covers them (it may have started before
their append), so they wait for the *next* flush, which the first of them to wake leads.
With N concurrent producers that is about 2 flushes instead of N.

Correctness rests on a counter of flushes *started*: a flush that starts after my append
returned covers my append. On entry, ``target = started + 1`` (the next flush to start);
I return once ``completed >= target``.

A failed flush is fatal for the partition (storage refuses further appends): the error is
kept and every waiter, now and later, gets ``KafkaStorageError``; nothing is acknowledged.

Thread-safe; one instance per partition (see :class:`GroupCommitRegistry`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from logstream.errors import KafkaStorageError, LogstreamError, RequestTimedOutError

log = logging.getLogger(__name__)


class GroupCommit:
    def __init__(self, flush: Callable[[], object], name: str = "") -> None:
        self._flush = flush
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._started = 0
        self._completed = 0
        self._flushing = False
        self._error: LogstreamError | None = None
        self.flush_count = 0
        """Flushes actually run (for tests and metrics)."""
        self.waiting = 0
        """Callers parked until a running flush ends (for tests: an observable condition)."""

    def sync(self, timeout_s: float) -> None:
        """Return once a flush that started after this call began has completed.

        Raises KafkaStorageError if a flush failed (now or before), RequestTimedOutError if
        ``timeout_s`` passes first (the data may still become durable later).
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            target = self._started + 1
            while True:
                if self._error is not None:
                    raise KafkaStorageError(f"{self._name}: flush failed earlier: {self._error}")
                if self._completed >= target:
                    return
                if not self._flushing:
                    self._flushing = True
                    self._started += 1
                    mine = self._started
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RequestTimedOutError(f"{self._name}: flush not done in {timeout_s:.1f}s")
                self.waiting += 1
                try:
                    self._cond.wait(remaining)
                finally:
                    self.waiting -= 1
        error: LogstreamError | None = None
        try:
            self._flush()
        except LogstreamError as exc:
            error = exc if isinstance(exc, KafkaStorageError) else KafkaStorageError(str(exc))
        except Exception as exc:  # an OSError escaping storage is still a disk failure
            log.exception("flush of %s failed", self._name)
            error = KafkaStorageError(f"{type(exc).__name__}: {exc}")
        with self._cond:
            self._flushing = False
            self.flush_count += 1
            if error is not None:
                self._error = error
                log.error(
                    "partition %s: flush failed, refusing acks=flushed: %s", self._name, error
                )
            else:
                self._completed = max(self._completed, mine)
            self._cond.notify_all()
        if error is not None:
            raise error


class GroupCommitRegistry:
    """One :class:`GroupCommit` per partition, created on first use."""

    def __init__(
        self, wrap_flush: Callable[[Callable[[], object]], Callable[[], object]] | None = None
    ) -> None:
        self._wrap_flush = wrap_flush or (lambda flush: flush)  # metrics time each flush
        self._lock = threading.Lock()
        self._by_key: dict[tuple[str, int], tuple[object, GroupCommit]] = {}

    def get(self, topic: str, partition: int, log_obj: object) -> GroupCommit:
        key = (topic, partition)
        with self._lock:
            entry = self._by_key.get(key)
            # A deleted and re-created topic has a new log object: start afresh.
            if entry is None or entry[0] is not log_obj:
                flush = self._wrap_flush(log_obj.flush)  # type: ignore[attr-defined]
                gc = GroupCommit(flush, f"{topic}-{partition}")
                self._by_key[key] = (log_obj, gc)
                return gc
            return entry[1]

    def forget_topic(self, topic: str) -> None:
        with self._lock:
            for key in [k for k in self._by_key if k[0] == topic]:
                del self._by_key[key]
