"""How a queue group follows its topics' logs as they change under it.

- **Partitions added** (:func:`add_new_partitions`): every partition of the group's topics
  that the group does not read yet joins it at its log start, whatever the group's
  ``start`` setting: it was created after the group, so all of it is new to the group.
- **Records deleted by retention before the group finished them** (:func:`skip_deleted`,
  before each admit): the waiting ones are finished as lost and a window that lags jumps
  to the log start (``QueueGroup.skip_to``), so a group never stalls below the log start.
- **Acquired records deleted before the fetch read them** (:func:`finish_gone`, after the
  read): exactly those are finished as lost at once, instead of after their lease.

Each change is a state record of the group (flushed here, or by the caller's operation).
Thread-safety: :func:`add_new_partitions` and :func:`finish_gone` take the group's lock;
:func:`skip_deleted` runs under it (inside the admit).
"""

from __future__ import annotations

import logging

import numpy as np

from logstream.broker.queue_state import Managed
from logstream.codec import iter_headers
from logstream.coordinator.queues import QueueGroup
from logstream.errors import UnknownTopicOrPartitionError
from logstream.storage import LogManager, PartitionLog

log = logging.getLogger("logstream.broker.queues")


def add_new_partitions(manager: LogManager, m: Managed) -> list[str]:
    """Add the partitions of ``m``'s topics it does not read yet; returns them."""
    added = []
    with m.lock:
        known = set(m.group.partitions())
        for topic in m.topics:
            try:
                count = len(manager.topic(topic).partitions)
            except UnknownTopicOrPartitionError:
                continue
            for p in range(count):
                if (topic, p) not in known:
                    start = int(manager.get_log(topic, p).log_start_offset)
                    m.group.add_partition(topic, p, start)
                    added.append(f"{topic}/{p}")
        if added:
            m.group.flush()
    if added:
        log.info("queue group %s now also reads %s", m.group.name, ", ".join(added))
    return added


def skip_deleted(g: QueueGroup, plog: PartitionLog, topic: str, partition: int) -> None:
    """Before an admit: skip what retention deleted below the window (group lock held)."""
    log_start = int(plog.log_start_offset)
    if log_start <= g.window(topic, partition).start_offset:
        return
    lost = g.skip_to(topic, partition, log_start)
    if lost:
        log.warning(
            "queue group %s: %d records of %s/%d deleted by retention before they were "
            "finished (lost_to_retention)",
            g.name, lost, topic, partition,
        )  # fmt: skip


def finish_gone(
    m: Managed, plog: PartitionLog, topic: str, partition: int, offsets: np.ndarray, data: bytes
) -> None:
    """After a fetch read ``data`` for the acquired ``offsets``: those retention deleted
    meanwhile (not in ``data``) are finished as lost."""
    log_start = int(plog.log_start_offset)
    if not len(offsets) or int(offsets[0]) >= log_start:
        return  # the usual case: nothing acquired is below the log start
    have = np.zeros(len(offsets), bool)
    for _, h in iter_headers(data):
        have |= (offsets >= h.base_offset) & (offsets < h.next_offset)
    if not have.all():
        with m.lock:
            m.group.skip_to(topic, partition, log_start, offsets[~have])
            m.group.flush()
