"""The broker core: composes storage (``LogManager``) with the pieces a server needs.

::

    Broker
    ├── manager: LogManager             topics, partitions, flush_due(), enforce_retention()
    ├── notifier: AppendNotifier        wakes long-polling fetches and subscriptions
    ├── inboxes: Inboxes                request/reply inboxes, memory only (inboxes.py)
    ├── group_commit: GroupCommitRegistry   acks=flushed: one flush per burst of producers
    ├── producer_ids: ProducerIdManager     persisted id counter for idempotent producers
    ├── coordinator: object | None      the consumer-group coordinator, plugged in later
    ├── queues: object | None           the queue groups (broker/queues.py), set by the server
    ├── admits: FetchCache              the queue admissions' read cache, fed by produces
    └── two daemon threads              flusher (flush_due) and retention (enforce_retention)

The handlers (produce.py, fetch.py, admin.py) hold a reference to the Broker and do the
work; the gRPC servicers are a thin pb <-> handler layer over them.

Lifecycle: ``Broker.open(config)`` opens the data directory (storage recovers it);
``start()`` starts the background threads; every handler runs inside ``operation()``, which
refuses new work once ``close()`` began and lets ``close()`` wait for in-flight work before
``LogManager.close()`` writes the clean-shutdown marker. Thread-safe.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator

from logstream.broker.config import BrokerConfig
from logstream.broker.group_commit import GroupCommitRegistry
from logstream.broker.http import NullMetrics, event, metrics_for
from logstream.broker.inboxes import Inboxes
from logstream.broker.notify import AppendNotifier
from logstream.broker.producer_ids import ProducerIdManager
from logstream.broker.queue_reads import FetchCache
from logstream.clock import SYSTEM_CLOCK, Clock
from logstream.errors import (
    BrokerNotAvailableError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from logstream.storage import LogManager, PartitionLog, TopicConfig

log = logging.getLogger("logstream.broker")


class Broker:
    def __init__(
        self,
        config: BrokerConfig,
        manager: LogManager,
        *,
        clock: Clock = SYSTEM_CLOCK,
        coordinator: object | None = None,
        metrics: NullMetrics | None = None,
    ) -> None:
        self.config = config
        self.manager = manager
        self.clock = clock
        self.coordinator = coordinator
        self.queues: object | None = None  # the QueueManager, set by the server
        self.notifier = AppendNotifier()
        self.inboxes = Inboxes(self.notifier)
        """Request/reply inboxes: in memory, pushed to the requester's stream."""
        self.admits = FetchCache()
        """The queue groups' admission reads (queue_reads.py); a produce offers it what it
        appended, so a request on its way to a waiting responder is not read back."""
        self.metrics = metrics if metrics is not None else metrics_for(config)
        """Traffic counters and flush timing for /metrics (counts nothing when it is off)."""
        self.group_commit = GroupCommitRegistry(self.metrics.timed_flush)
        self.producer_ids = ProducerIdManager(
            config.data_dir,
            clock=clock,
            expiration_ms=config.producer_name_expiration_ms,
            max_names=config.producer_names_max,
        )
        self.waiter_slots = threading.BoundedSemaphore(config.max_waiters)
        """Waiting long-polls and open subscriptions (coroutines: memory, not threads)."""
        self._lock = threading.Condition(threading.Lock())
        self._in_flight = 0
        self._closing = False
        self._closed = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._create_lock = threading.Lock()

    @classmethod
    def open(
        cls,
        config: BrokerConfig,
        *,
        clock: Clock = SYSTEM_CLOCK,
        metrics: NullMetrics | None = None,
    ) -> Broker:
        default = TopicConfig.from_dict(dict(config.topic_defaults))
        started = time.monotonic()
        manager = LogManager.open(
            config.data_dir,
            default_config=default,
            clock=clock,
            dir_mode=config.data_dir_mode,
            file_mode=config.file_mode,
        )
        reports = list(getattr(manager, "recovery_reports", {}).values())
        recovered = [r for r in reports if not r.clean_shutdown]
        for r in recovered:
            if r.bytes_truncated or r.indexes_rebuilt:
                log.warning(
                    "recovered %s-%d: truncated %d bytes, indexes rebuilt: %s, offsets [%d, %d)",
                    r.topic,
                    r.partition,
                    r.bytes_truncated,
                    r.indexes_rebuilt,
                    r.log_start_offset,
                    r.log_end_offset,
                    extra=event(
                        "partition_recovered",
                        topic=r.topic,
                        partition=r.partition,
                        bytes_truncated=r.bytes_truncated,
                        indexes_rebuilt=r.indexes_rebuilt,
                        batches_scanned=r.batches_scanned,
                        log_start_offset=r.log_start_offset,
                        log_end_offset=r.log_end_offset,
                    ),
                )
        seconds = time.monotonic() - started
        log.info(
            "opened data dir %s: %d topics, %d partitions, %s, in %.3fs",
            config.data_dir,
            len(manager.topics()),
            len(reports),
            f"recovered {len(recovered)} partitions after an unclean shutdown"
            if recovered
            else "clean",
            seconds,
            extra=event(
                "data_dir_opened",
                data_dir=str(config.data_dir),
                topics=len(manager.topics()),
                partitions=len(reports),
                clean=not recovered,
                partitions_recovered=len(recovered),
                bytes_truncated=sum(r.bytes_truncated for r in recovered),
                duration_s=round(seconds, 3),
            ),
        )
        try:
            coordinator = _open_coordinator(config, manager, clock)
        except BaseException:
            manager.close()
            raise
        return cls(config, manager, clock=clock, coordinator=coordinator, metrics=metrics)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the flusher and retention threads."""
        self._spawn(
            "logstream-flusher",
            functools.partial(self.metrics.flush_due, self.manager),
            self.config.flush_check_interval_ms,
        )
        self._spawn(
            "logstream-retention", self._enforce_retention, self.config.retention_check_interval_ms
        )
        if self.coordinator is not None:  # consumer groups: session timeouts, offset expiry
            self._spawn(
                "logstream-groups",
                self.coordinator.expire,  # type: ignore[attr-defined]
                self.config.group_expiry_check_interval_ms,
            )

    def _enforce_retention(self) -> None:
        for tp, segments in self.manager.enforce_retention().items():
            log.info(
                "retention deleted %d segments of %s",
                segments,
                tp,
                extra=event(
                    "segments_deleted", topic=tp.topic, partition=tp.partition, segments=segments
                ),
            )

    def _spawn(self, name: str, job: Callable[[], object], interval_ms: int) -> None:
        def loop() -> None:
            while not self._stop.wait(interval_ms / 1000.0):
                try:
                    job()
                except Exception:
                    log.exception("%s: %s failed; will retry", name, getattr(job, "__name__", job))

        thread = threading.Thread(target=loop, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    @contextlib.contextmanager
    def operation(self) -> Iterator[None]:
        """Bracket one unit of handler work; refuses new work once closing."""
        with self._lock:
            if self._closing:
                raise BrokerNotAvailableError("broker is shutting down")
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1
                if self._in_flight == 0 and self._closing:  # close() waits for it
                    self._lock.notify_all()

    @property
    def closing(self) -> bool:
        return self._closing

    def close(self, timeout_s: float = 10.0) -> None:
        """Refuse new work, wait for in-flight work, stop threads, close storage (clean marker)."""
        with self._lock:
            if self._closed:
                return
            self._closing = True
        self.notifier.close()
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.warning("closing with %d operations still in flight", self._in_flight)
                    break
                self._lock.wait(remaining)
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self.producer_ids.close()
        self.manager.close()
        self._closed = True
        log.info("storage closed cleanly (clean-shutdown marker written)")

    # -- lookups -----------------------------------------------------------------------------

    def get_log(self, topic: str, partition: int, *, create: bool = False) -> PartitionLog:
        """The partition's log; with ``create`` and ``auto_create_topics``, create the topic."""
        try:
            return self.manager.get_log(topic, partition)
        except UnknownTopicOrPartitionError:
            if not (create and self.config.auto_create_topics) or topic in self.manager.topics():
                raise
        with self._create_lock:
            try:
                self.manager.create_topic(topic, partitions=self.config.default_partitions)
                log.info(
                    "topic %s auto-created with %d partitions",
                    topic,
                    self.config.default_partitions,
                    extra=event(
                        "topic_created",
                        topic=topic,
                        partitions=self.config.default_partitions,
                        auto=True,
                    ),
                )
            except TopicAlreadyExistsError:
                pass
        return self.manager.get_log(topic, partition)


def _open_coordinator(config: BrokerConfig, manager: LogManager, clock: Clock) -> object:
    """The consumer-group coordinator; replays ``__consumer_offsets`` (created if missing)."""
    from logstream.coordinator import CoordinatorConfig, GroupCoordinator, GroupSettings

    started = time.monotonic()
    settings = GroupSettings(
        min_session_timeout_ms=config.group_min_session_timeout_ms,
        max_session_timeout_ms=config.group_max_session_timeout_ms,
        default_session_timeout_ms=min(
            max(10_000, config.group_min_session_timeout_ms), config.group_max_session_timeout_ms
        ),
        heartbeat_interval_ms=config.group_heartbeat_interval_ms,
        max_size=config.group_max_size,
    )
    coordinator = GroupCoordinator(
        manager,
        clock,
        CoordinatorConfig(
            groups=settings,
            offsets_retention_ms=config.offsets_retention_ms,
            offsets_compact_min_records=config.offsets_compact_min_records,
        ),
    )
    log.info(
        "group coordinator: %d committed-offset records replayed in %.3fs",
        coordinator.offsets.records_replayed,
        time.monotonic() - started,
    )
    return coordinator
