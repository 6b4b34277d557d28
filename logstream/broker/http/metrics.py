"""What the broker's hot paths count, and the instruments behind ``/metrics``.

Two implementations of one small interface sit on ``Broker.metrics``:

- :class:`BrokerMetrics` (the HTTP listener is on): per-partition traffic accumulators,
  per-RPC counters and latency histograms, flush latency, open streams.
- :class:`NullMetrics` (``http_listen`` empty): the same methods, counting nothing, so the
  hot paths call one method whatever the configuration.

Cost contract: the produce path calls :meth:`~BrokerMetrics.produced` once per partition
of a request, the fetch path :meth:`~BrokerMetrics.fetched` once per partition read, with
figures the path already has (record counts from batch headers, never per record). Traffic
counters are plain integers under one lock, turned into Prometheus counters only at scrape
time (``collector.py``); the per-RPC instruments are ``prometheus_client`` children bound
once per method when the server is built.

Concurrency: every method is safe from the event loop and from pool threads.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

from logstream.codec import RECORD_COUNT_POS, batch_positions
from logstream.errors import LogstreamError

log = logging.getLogger("logstream.broker")

disable_created_metrics()  # the *_created series double the output and no dashboard reads them

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
FLUSH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)

IN_RECORDS, IN_BYTES, OUT_RECORDS, OUT_BYTES = range(4)


class _Log(Protocol):
    topic: str
    partition: int

    @property
    def segment_count(self) -> int: ...


_I32 = struct.Struct("<i")


def batch_record_count(data: bytes | memoryview) -> int:
    """Records in the whole batches of ``data`` (the storage's bytes: trusted), read from
    each batch header's count field."""
    unpack = _I32.unpack_from
    return sum(unpack(data, pos + RECORD_COUNT_POS)[0] for pos in batch_positions(data))


QueueSource = Callable[[], Iterable[Any]]
"""Returns queue-group descriptions: objects with ``group`` and ``total`` (a depth with
``available``, ``acquired``, ``delayed``, ``dead_lettered``, ``redelivered``, ``expired``,
``lost_to_retention``, ``oldest_unfinished_age_ms``, ``next_due_ms``), as
``logstream.coordinator.queues.describe`` builds."""


class NullMetrics:
    """Counts nothing; keeps the segment-roll event, which logging wants either way."""

    enabled = False

    def produced(self, plog: _Log, records: int, nbytes: int, segments_before: int) -> None:
        if plog.segment_count > segments_before > 0:  # not the first segment: no roll
            _log_roll(plog, segments_before)

    def fetched(self, topic: str, partition: int, data: bytes) -> None:
        pass

    def flush_due(self, manager: Any) -> int:
        return int(manager.flush_due())

    def timed_flush(self, flush: Callable[[], object]) -> Callable[[], object]:
        return flush

    def register_queue_source(self, source: QueueSource) -> None:
        pass


def _log_roll(plog: _Log, segments_before: int) -> None:
    log.info(
        "segment rolled: %s-%d now has %d segments",
        plog.topic,
        plog.partition,
        plog.segment_count,
        extra={
            "event": "segment_rolled",
            "fields": {
                "topic": plog.topic,
                "partition": plog.partition,
                "segments": plog.segment_count,
            },
        },
    )


class BrokerMetrics(NullMetrics):
    """Counters of one broker (own registry: several brokers may share a process in tests)."""

    enabled = True

    def __init__(self, partition_series_limit: int, slow_request_s: float) -> None:
        self.partition_series_limit = partition_series_limit
        self.slow_request_s = slow_request_s
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        self._traffic: dict[tuple[str, int], list[int]] = {}
        self.queue_sources: list[QueueSource] = []
        r = self.registry
        self.requests = Counter(
            "logstream_rpc_requests", "RPC calls received, by method.", ["method"], registry=r
        )
        self.errors = Counter(
            "logstream_rpc_errors",
            "RPC calls answered with an error status, by method and logstream error code.",
            ["method", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "logstream_rpc_duration_seconds",
            "Time from a unary call's decoded request to its answer, by method.",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.open_streams = Gauge(
            "logstream_rpc_open_streams",
            "Streaming calls open now (Subscribe, ProduceStream), by method.",
            ["method"],
            registry=r,
        )
        self.flush_seconds = Histogram(
            "logstream_flush_duration_seconds",
            "Time of one partition flush (msync/fsync), by the background flusher or a group "
            "commit for acks=flushed.",
            buckets=FLUSH_BUCKETS,
            registry=r,
        )
        self.flush_failures = Counter(
            "logstream_flush_failures", "Partition flushes that failed (the partition is "
            "failed from then on).", registry=r,
        )  # fmt: skip

    # -- hot paths -----------------------------------------------------------------------

    def produced(self, plog: _Log, records: int, nbytes: int, segments_before: int) -> None:
        key = (plog.topic, plog.partition)
        with self._lock:
            counts = self._traffic.get(key)
            if counts is None:
                counts = self._traffic[key] = [0, 0, 0, 0]
            counts[IN_RECORDS] += records
            counts[IN_BYTES] += nbytes
        if plog.segment_count > segments_before > 0:  # not the first segment: no roll
            _log_roll(plog, segments_before)

    def fetched(self, topic: str, partition: int, data: bytes) -> None:
        if not data:
            return
        records = batch_record_count(data)
        key = (topic, partition)
        with self._lock:
            counts = self._traffic.get(key)
            if counts is None:
                counts = self._traffic[key] = [0, 0, 0, 0]
            counts[OUT_RECORDS] += records
            counts[OUT_BYTES] += len(data)

    def traffic(self) -> dict[tuple[str, int], tuple[int, ...]]:
        """A copy of the per-partition counters: (records in, bytes in, records out, bytes out)."""
        with self._lock:
            return {k: tuple(v) for k, v in self._traffic.items()}

    def forget(self, live: set[tuple[str, int]]) -> None:
        """Drop the counters of partitions that no longer exist (a deleted topic)."""
        with self._lock:
            for key in [k for k in self._traffic if k not in live]:
                del self._traffic[key]

    # -- flushes -------------------------------------------------------------------------

    def flush_due(self, manager: Any) -> int:
        """``LogManager.flush_due`` with each partition's flush timed (the flusher thread)."""
        flushed = 0
        for plog in manager.all_logs():
            started = time.perf_counter()
            try:
                if plog.flush_if_due():
                    flushed += 1
                    self.flush_seconds.observe(time.perf_counter() - started)
            except LogstreamError as exc:
                self.flush_failures.inc()
                log.error(
                    "flush of %s-%d failed: %s",
                    plog.topic,
                    plog.partition,
                    exc,
                    extra={
                        "event": "flush_failed",
                        "fields": {"topic": plog.topic, "partition": plog.partition},
                    },
                )
        return flushed

    def timed_flush(self, flush: Callable[[], object]) -> Callable[[], object]:
        def timed() -> object:
            started = time.perf_counter()
            try:
                result = flush()
            except BaseException:
                self.flush_failures.inc()
                raise
            self.flush_seconds.observe(time.perf_counter() - started)
            return result

        return timed

    # -- queue groups --------------------------------------------------------------------

    def register_queue_source(self, source: QueueSource) -> None:
        """The queue engine's hook: ``source()`` is called at each scrape."""
        self.queue_sources.append(source)


def metrics_for(config: Any) -> NullMetrics:
    """:class:`BrokerMetrics` when the HTTP listener is configured, else :class:`NullMetrics`."""
    if not config.http_listen:
        return NullMetrics()
    return BrokerMetrics(config.metrics_partition_series_limit, config.slow_request_ms / 1000)
