"""The broker's queue groups: the engine (``logstream.coordinator.queues``) over real logs.

:class:`QueueManager` owns every group, each behind its own lock, and does the I/O the
engine leaves to its caller:

- **records in**: before a member acquires, each partition's window takes the records
  appended since (:mod:`.queue_admit`: timestamps, key hashes, schedule headers). Both
  the admission and the fetches read through a :class:`~.queue_reads.FetchCache` each
  (one at the windows' ends, one behind them; a fetch looks in both before it reads), so
  a 512 KiB producer batch is read once, not once per 100 records, and a record acquired
  as soon as it was appended is read once, by its admission;
- **outcomes**: acks, nacks, rejects, extensions (:mod:`.queue_settle`);
- **durability**: every operation ends with ``QueueGroup.flush()``, one append to
  ``__queue_state`` (:mod:`.queue_state`), before the caller answers: a fetch's records
  are sent, and an ack confirmed, only once its state record is in the log;
- **time** (:mod:`.queue_timer`): one timer thread (``logstream-queues``, every
  ``queue_tick_interval_ms``) ticks a group only when its earliest deadline (a lease, a
  nack delay, an expiry) has come, which is one comparison per partition otherwise; the
  window's ``tick`` works on whole arrays. Whatever a tick freed wakes the group's
  waiting fetches through the broker's :class:`~logstream.broker.notify.AppendNotifier`
  (key ``("queue", group)``), as appends to the group's partitions do;
- **topology** (:mod:`.queue_topology`): partitions added to a group's topics join it
  (CreatePartitions calls :meth:`QueueManager.topic_grew`; housekeeping checks every
  second as well); records retention deleted before the group finished them are skipped
  and counted (``lost_to_retention``);
- **members**: a member joins explicitly or with its first fetch; one not seen for
  ``max(2 x lease, 60 s)`` is removed (what it holds is released). Members are not
  persisted: after a restart every lease is void and members join again on their fetch;
- **kinds**: a consumer group's id is refused as a queue group and the other way round
  (``GROUP_KIND_MISMATCH``).

Thread-safety: public methods may be called from any thread (the event loop runs fetches
inline: they hold a group lock for one engine call and one append).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from logstream.broker.config import queue_settings
from logstream.broker.queue_admit import admit_new
from logstream.broker.queue_reads import FetchCache, batches_for
from logstream.broker.queue_redrive import (
    DeadLetterRecord,
    RedriveItem,
    recent_dead_letters,
    redrive,
    resolve_intents,
)
from logstream.broker.queue_settle import NACK, Settle, SettleOutcome, apply_settles
from logstream.broker.queue_state import DeadLetterTopic, Managed, QueueStateLog
from logstream.broker.queue_timer import QueueTimer
from logstream.broker.queue_topology import add_new_partitions, finish_gone
from logstream.codec import HEADER_SIZE, read_header
from logstream.coordinator.queues import (
    Delivery,
    QueueGroup,
    QueueGroupDescription,
    QueueSettings,
    describe,
    recover_group,
)
from logstream.coordinator.queues.columns import AVAILABLE
from logstream.coordinator.queues.settings import MAX_DURATION_MS
from logstream.coordinator.queues.statelog import T_SETTINGS, decode_settings
from logstream.coordinator.queues.views import backlog_estimate, column
from logstream.errors import (
    GroupIdNotFoundError,
    GroupKindMismatchError,
    InvalidConfigError,
    InvalidQueueDelayError,
    InvalidRequestError,
    InvalidTopicError,
    LogstreamError,
    NonEmptyGroupError,
    UnknownTopicOrPartitionError,
)
from logstream.storage.config import is_internal_topic, validate_topic_name

log = logging.getLogger("logstream.broker.queues")

SETTINGS_TYPE = bytes([T_SETTINGS])


def _check_dead_letter_topic(group: str, settings: QueueSettings) -> None:
    """Refuse a group whose dead letters could never be written: ``x y`` (or a name at the
    length limit) would dead-letter to ``x y.dlq``, not a valid topic name, and every
    reject and close of its members then failed with INVALID_TOPIC_EXCEPTION."""
    topic = settings.dead_letter_topic_for(group)
    try:
        validate_topic_name(topic)
    except InvalidTopicError as exc:
        where = "dead_letter_topic" if settings.dead_letter_topic else f"queue group {group!r}"
        raise InvalidConfigError(
            f"{where}: dead letters would go to {topic!r}, not a valid topic name ({exc}); "
            "rename the group or set dead_letter_topic"
        ) from None


class QueueManager:
    """Every queue group of one broker; see the module docstring."""

    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self.manager = broker.manager
        self.clock = broker.clock
        self.defaults = queue_settings(broker.config.queue_defaults)
        self.state = QueueStateLog.open(self.manager, self.clock)
        self.reads = FetchCache()  # behind the windows' ends: records being fetched
        self.admits: FetchCache = broker.admits  # at the windows' ends (produces feed it)
        # np.unique imports numpy.ma on its first call (~70 ms): here, not inside a request
        np.unique(np.zeros(2, np.int64))
        self._groups: dict[str, Managed] = {}
        self._lock = threading.Lock()
        self.timer = QueueTimer(
            self._all, clock=self.clock, wake=self._wake, add_partitions=self._add_new_partitions
        )
        self._recover()

    # ---- life cycle ----------------------------------------------------------------------

    def _recover(self) -> None:
        started = time.monotonic()
        replayed = self.state.replay()
        for name, records in replayed.records.items():
            settings = [decode_settings(r) for r in records if r[:1] == SETTINGS_TYPE]
            if not settings:
                continue
            outbox = self._outbox(settings[-1].dead_letter_topic_for(name))
            group = recover_group(
                name,
                records,
                clock=self.clock,
                state_log=self.state.writer(name),
                outbox=outbox,
            )
            if group is None:
                continue
            topics = list(dict.fromkeys(t for t, _ in group.partitions()))
            m = Managed(group, topics, outbox, redriven=self.state.redriven_set(name))
            self._groups[name] = m
            resolve_intents(self.manager, self.state, name, m, replayed.intents.get(name, []))
        log.info(
            "queue groups: %d recovered from %s in %.3fs",
            len(self._groups),
            "__queue_state",
            time.monotonic() - started,
        )

    def start(self) -> None:
        self.timer.start(self.broker.config.queue_tick_interval_ms / 1000.0)

    def close(self) -> None:
        self.timer.stop()
        for m in self._all():
            with m.lock:
                try:
                    m.group.flush()
                except Exception:
                    log.exception("queue group %s: final flush failed", m.group.name)

    def topic_grew(self, topic: str) -> None:
        """``topic`` has more partitions now: every group reading it takes them in."""
        for m in self._all():
            if topic in m.topics:
                self._add_new_partitions(m)

    def topic_deleted(self, topic: str) -> None:
        """``topic`` is gone: every group reading it starts its partitions over at 0, so a
        topic created again under the name is read from its first record (the old windows'
        offsets would otherwise hide the new records below them). The groups stay."""
        for m in self._all():
            if topic not in m.topics:
                continue
            with m.lock:
                for t, p in m.group.partitions():
                    if t == topic:
                        m.group.restart_partition(t, p, 0)
                m.group.flush()
            log.info("queue group %s: topic %s deleted; it starts over", m.group.name, topic)
            self._wake(m.group.name)

    def _add_new_partitions(self, m: Managed) -> None:
        if add_new_partitions(self.manager, m):
            self._wake(m.group.name)

    # ---- lookups -------------------------------------------------------------------------

    def _all(self) -> list[Managed]:
        with self._lock:
            return list(self._groups.values())

    def exists(self, name: str) -> bool:
        return name in self._groups

    def _get(self, name: str) -> Managed:
        m = self._groups.get(name)
        if m is None:
            if self._is_consumer_group(name):
                raise GroupKindMismatchError(f"{name!r} is a consumer group, not a queue group")
            raise GroupIdNotFoundError(f"no queue group {name!r}")
        return m

    def _is_consumer_group(self, name: str) -> bool:
        coordinator = self.broker.coordinator
        if coordinator is None:
            return False
        try:
            coordinator.describe_group(name)
        except LogstreamError:
            return False
        return True

    def partition_keys(self, name: str) -> list[object]:
        """What a fetch of ``name`` waits on: its partitions and the group's own wake-up."""
        m = self._get(name)
        return [*m.group.partitions(), ("queue", name)]

    def _wake(self, name: str) -> None:
        self.broker.notifier.notify(("queue", name))

    def _outbox(self, topic: str) -> DeadLetterTopic:
        return DeadLetterTopic(
            self.manager, topic, lambda t, p: self.broker.notifier.notify((t, p)), self.clock
        )

    # ---- admin ---------------------------------------------------------------------------

    def create(
        self,
        name: str,
        topics: Sequence[str],
        values: Mapping[str, Any],
        *,
        exists_ok: bool = False,
    ) -> QueueSettings:
        if not name or len(name) > 249 or is_internal_topic(name):
            raise InvalidRequestError(f"invalid queue group name {name!r}")
        if not topics:
            raise InvalidRequestError("a queue group reads at least one topic")
        settings = queue_settings(values, self.defaults)
        _check_dead_letter_topic(name, settings)
        with self._lock:
            if name in self._groups:
                if exists_ok:
                    return self._groups[name].group.settings
                raise InvalidRequestError(f"queue group {name!r} exists")
            if self._is_consumer_group(name):
                raise GroupKindMismatchError(
                    f"{name!r} is a consumer group; pick another name for the queue group"
                )
            starts = []
            for topic in topics:
                if is_internal_topic(topic):
                    raise InvalidRequestError(f"topic {topic!r} is internal")
                t = self.manager.topic(topic)
                for p in range(len(t.partitions)):
                    starts.append((topic, p, self._start_offset(topic, p, settings)))
            outbox = self._outbox(settings.dead_letter_topic_for(name))
            group = QueueGroup(
                name,
                settings,
                clock=self.clock,
                state_log=self.state.writer(name),
                outbox=outbox,
            )
            for topic, p, start in starts:
                group.add_partition(topic, p, start)
            group.flush()
            self._groups[name] = Managed(
                group, list(dict.fromkeys(topics)), outbox, redriven=self.state.redriven_set(name)
            )
        log.info("queue group %s created on %s", name, ", ".join(topics))
        return settings

    def _start_offset(self, topic: str, partition: int, s: QueueSettings) -> int:
        plog = self.manager.get_log(topic, partition)
        if s.start == "earliest":
            return int(plog.log_start_offset)
        if s.start == "latest":
            return int(plog.log_end_offset)
        found = plog.record_for_timestamp(int(s.start))
        return int(plog.log_end_offset if found is None else found[0])

    def alter(self, name: str, values: Mapping[str, Any]) -> QueueSettings:
        if "start" in values:
            raise InvalidRequestError("start applies at creation only")
        m = self._get(name)
        with m.lock:
            settings = queue_settings(values, m.group.settings)
            _check_dead_letter_topic(name, settings)
            m.group.configure(**{k: getattr(settings, k) for k in values})
            m.outbox.topic = m.group.dead_letter_topic
            m.group.flush()
        self._wake(name)
        return settings

    def delete(self, name: str, *, force: bool = False) -> None:
        m = self._get(name)
        with m.lock:
            if m.group.members() and not force:
                raise NonEmptyGroupError(
                    f"queue group {name!r} has {len(m.group.members())} members"
                )
            with self._lock:
                self._groups.pop(name, None)
        self.state.deleted(name)
        self._wake(name)

    def list_groups(self) -> list[tuple[QueueGroupDescription, list[str], int]]:
        out = []
        for m in self._all():
            with m.lock:
                d = describe(m.group, self._log_ends(m), self._first_unread_ms)
                out.append((d, m.topics, len(m.seen)))
        return out

    def describe(self, name: str) -> tuple[QueueGroupDescription, dict[str, str], int]:
        """The group's description, client ids by member, and how many unreadable
        schedule header values were ignored since start-up."""
        m = self._get(name)
        with m.lock:
            d = describe(m.group, self._log_ends(m), self._first_unread_ms)
            m.group.flush()
            return d, dict(m.client_ids), m.invalid_schedule

    def _log_ends(self, m: Managed) -> dict[tuple[str, int], int]:
        out = {}
        for t, p in m.group.partitions():
            try:
                out[(t, p)] = int(self.manager.get_log(t, p).log_end_offset)
            except UnknownTopicOrPartitionError:
                continue
        return out

    def _first_unread_ms(self, topic: str, partition: int, offset: int) -> int | None:
        """The timestamp of the batch holding ``offset``, the first record a group has not
        read (its records share the producer's stamp): one batch read, asked by describe
        only for a partition whose window holds nothing unfinished."""
        try:
            data = self.manager.get_log(topic, partition).read(offset, max_bytes=HEADER_SIZE)
        except LogstreamError:
            return None
        return read_header(data).first_timestamp if len(data) >= HEADER_SIZE else None

    # ---- members -------------------------------------------------------------------------

    def join(
        self, name: str, member: str, topics: Sequence[str], *, create: bool, client_id: str = ""
    ) -> Managed:
        if not member:
            raise InvalidRequestError("member_id must not be empty")
        if create and name not in self._groups:
            self.create(name, topics, {}, exists_ok=True)
        m = self._get(name)
        with m.lock:
            self._touch(m, member, client_id)
        return m

    def _touch(self, m: Managed, member: str, client_id: str = "") -> None:
        if member not in m.seen:
            m.group.join(member)
        m.seen[member] = time.monotonic()
        if client_id:
            m.client_ids[member] = client_id[:255]

    def leave(
        self, name: str, member: str, settles: Sequence[Settle]
    ) -> tuple[list[SettleOutcome], int]:
        m = self._get(name)
        with m.lock:
            self._touch(m, member)
            outcomes = apply_settles(m.group, member, settles)
            released = m.group.leave(member)
            m.seen.pop(member, None)
            m.client_ids.pop(member, None)
            m.group.flush()
        if released:
            self._wake(name)
        return outcomes, released

    def settle(self, name: str, member: str, settles: Sequence[Settle]) -> list[SettleOutcome]:
        m = self._get(name)
        with m.lock:
            self._touch(m, member)
            outcomes = apply_settles(m.group, member, settles)
            m.group.flush()
        if any(s.kind == NACK for s in settles):
            self._wake(name)
        return outcomes

    def acquire(
        self,
        name: str,
        member: str,
        settles: Sequence[Settle],
        max_records: int,
        lease_ms: int | None,
    ) -> tuple[list[SettleOutcome], list[Delivery], int]:
        """Apply ``settles``, take new records into the windows, acquire; flushed. Also
        returns the lease the records were acquired under (ms)."""
        if max_records < 0:
            raise InvalidRequestError(f"max_records must be >= 0, got {max_records}")
        if lease_ms is not None and not 0 < lease_ms <= MAX_DURATION_MS:
            raise InvalidQueueDelayError(
                f"lease_ms must be in 1..{MAX_DURATION_MS}, got {lease_ms}"
            )
        m = self._get(name)
        with m.lock:
            self._touch(m, member)
            outcomes = apply_settles(m.group, member, settles) if settles else []
            deliveries: list[Delivery] = []
            if max_records:
                admit_new(self.manager, m, self.admits)
                deliveries = m.group.acquire(member, max_records, lease_ms)
            m.group.flush()
            lease = lease_ms or m.group.settings.lease_ms
        if any(s.kind == NACK for s in settles):
            self._wake(name)
        return outcomes, deliveries, lease

    def backlog(self, name: str) -> tuple[int, int]:
        """About how many records of ``name`` wait to be handed out, and its members: a
        fetch that came back full says so, so the member can size its next fetch."""
        m = self._get(name)
        with m.lock:
            return backlog_estimate(m.group.each_window(), self._log_ends(m)), len(m.seen)

    # ---- reading records -----------------------------------------------------------------

    def read(self, topic: str, partition: int, offsets: np.ndarray, group: str = "") -> bytes:
        """The batches holding ``offsets`` (for a fetch of ``group``, or a peek). Records
        retention deleted since they were acquired are finished as lost at once."""
        try:
            plog = self.manager.get_log(topic, partition)
            data = batches_for(plog, offsets, self.reads, self.admits)
        except UnknownTopicOrPartitionError:
            return b""
        m = self._groups.get(group) if group else None
        if m is not None:
            finish_gone(m, plog, topic, partition, offsets, data)
        return data

    def peek(self, name: str, max_records: int) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
        """Offsets a fetch would hand out now (available) and how often each was delivered
        already, without acquiring them."""
        if max_records <= 0:
            raise InvalidRequestError(f"max_records must be > 0, got {max_records}")
        m = self._get(name)
        out = []
        left = max_records
        with m.lock:
            admit_new(self.manager, m, self.admits)
            m.group.tick()
            m.group.flush()
            for topic, partition, w in m.group.each_window():
                offsets, state = column(w, "state")
                _, deliveries = column(w, "deliveries")
                ready = np.flatnonzero(state == AVAILABLE)[:left]
                avail = offsets[ready]
                if len(avail):
                    out.append((topic, partition, avail, deliveries[ready]))
                    left -= len(avail)
                if left <= 0:
                    break
        return out

    # ---- dead letters and redrive --------------------------------------------------------

    def dead_letters(self, name: str, limit: int) -> tuple[list[DeadLetterRecord], int]:
        """See :func:`.queue_redrive.recent_dead_letters`."""
        return recent_dead_letters(self.manager, name, self._get(name), limit)

    def redrive(
        self,
        name: str,
        *,
        execute: bool,
        reasons: Sequence[str] = (),
        to_topic: str = "",
        max_records: int = 0,
    ) -> list[RedriveItem]:
        """See :func:`.queue_redrive.redrive`."""
        m = self._get(name)
        return redrive(
            self.manager,
            self.broker.notifier,
            self.state,
            name,
            m,
            execute=execute,
            reasons=reasons,
            to_topic=to_topic,
            max_records=max_records,
        )
