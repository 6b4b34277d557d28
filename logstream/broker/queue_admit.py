"""Records in: reading what was appended to a queue group's partitions into its windows.

Before a member acquires, each partition's window takes the records appended since
(:func:`admit_new`), up to the room the window has, after skipping what retention deleted
below it. Reads go through the admissions' :class:`~.queue_reads.FetchCache` (a 512 KiB
producer batch is read once, not once per admit). Per batch, from the log's bytes:

- the batch header gives the timestamp (one per batch; the first record's);
- a key-ordered group decodes the keys (a 64-bit BLAKE2 hash per key);
- the schedule headers (``logstream-deliver-at`` / ``logstream-expires-at``,
  :mod:`logstream.codec.schedule`) are looked for only in batches whose header says some
  record has headers at all, and parsed only where the batch's header bytes contain the
  reserved prefix. A batch of records without headers costs no per-record Python work;
- the topic's ``message_ttl_ms`` (when set) gives records without an expiry header one:
  their timestamp plus the TTL, as whole arrays.

Unreadable schedule values are ignored (the record is delivered now and does not expire)
and counted per group (``invalid_schedule``, under the name ``INVALID_SCHEDULE``).

Not thread-safe: called under the group's lock.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

import numpy as np

from logstream.broker.queue_reads import FetchCache
from logstream.broker.queue_state import Managed
from logstream.broker.queue_topology import skip_deleted
from logstream.codec import batch_schedule, iter_headers
from logstream.errors import (
    InvalidScheduleError,
    OffsetOutOfRangeError,
    UnknownTopicOrPartitionError,
)
from logstream.storage import LogManager, PartitionLog

log = logging.getLogger("logstream.broker.queues")

ADMIT_BUDGET = 65_536
"""Records one fetch admits per partition at most (bounds the time a group lock is held)."""


def key_hashes(keys: Sequence[bytes | None]) -> tuple[np.ndarray, np.ndarray]:
    """(u64 hash per key, keyed flag) for key-ordered groups."""
    hashes = np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(k, digest_size=8).digest(), "little") if k else 0
            for k in keys
        ),
        np.uint64,
        len(keys),
    )
    keyed = np.fromiter((k is not None for k in keys), np.uint8, len(keys))
    return hashes, keyed


class _Columns:
    """Per-record arrays of one admit, gathered batch by batch; the schedule arrays are
    made only once some batch has a schedule (the common case never allocates them)."""

    def __init__(self, keyed: bool) -> None:
        self.keyed = keyed
        self.stamps: list[np.ndarray] = []
        self.hashes: list[np.ndarray] = []
        self.flags: list[np.ndarray] = []
        self.deliver: list[np.ndarray] | None = None
        self.expires: list[np.ndarray] | None = None
        self.count = 0
        self.invalid = 0

    def add_schedule(self, at: np.ndarray | None, exp: np.ndarray | None, n: int) -> None:
        if at is None and self.deliver is None:
            self.count += n
            return
        if self.deliver is None or self.expires is None:
            self.deliver = [np.zeros(self.count, np.int64)]
            self.expires = [np.zeros(self.count, np.int64)]
        self.deliver.append(np.zeros(n, np.int64) if at is None else at)
        self.expires.append(np.zeros(n, np.int64) if exp is None else exp)
        self.count += n


def admit_new(manager: LogManager, m: Managed, cache: FetchCache) -> None:
    """Take the records appended since the last call into every window of ``m``, reading
    through ``cache`` (the admissions' :class:`~.queue_reads.FetchCache`).

    What retention deleted below a window is skipped first (:func:`.queue_topology.skip_deleted`).
    A window full of delayed records parks them as it slides (:mod:`..window`), which makes
    room again: admission repeats while it does, up to :data:`ADMIT_BUDGET` records per
    partition per call, so records behind a run of delayed ones are reached at once."""
    # One window's worth per state-log append, not a whole budget: each admission after
    # the first flushes what came before; the last one goes with the caller's flush.
    admitted = False
    for topic, partition in m.group.partitions():
        try:
            plog = manager.get_log(topic, partition)
            ttl_ms = manager.topic(topic).config.message_ttl_ms
        except UnknownTopicOrPartitionError:
            continue
        skip_deleted(m.group, plog, topic, partition)
        budget = ADMIT_BUDGET
        while budget > 0:
            n = _admit_once(m, topic, partition, plog, cache, ttl_ms, budget, admitted)
            if n <= 0:
                break
            admitted = True
            budget -= n


def _admit_once(
    m: Managed,
    topic: str,
    partition: int,
    plog: PartitionLog,
    cache: FetchCache,
    ttl_ms: int,
    budget: int,
    flush_first: bool,
) -> int:
    """Admit what the window has room for (at most ``budget``), after flushing what is
    pending when ``flush_first``; returns how many."""
    g = m.group
    end, room = g.room(topic, partition)
    log_end = int(plog.log_end_offset)
    if room <= 0 or end >= log_end:
        return 0
    take = min(room, log_end - end, budget)
    cols = _Columns(g.settings.key_ordered)
    pos = end
    while pos < end + take:
        try:
            chunk = cache.chunk(plog, pos)
        except OffsetOutOfRangeError:
            break  # retention ran meanwhile: the next admit skips the gap
        if chunk is None:
            break
        data = chunk.data
        before = pos
        for at, h in iter_headers(data):
            if h.base_offset > pos:
                break  # retention ran meanwhile: the next admit skips the gap
            lo = pos
            hi = min(h.next_offset, end + take)
            if hi <= lo:
                continue
            first, stop = lo - h.base_offset, hi - h.base_offset
            if cols.keyed:
                batch = chunk.decode(at)
                hk, kf = key_hashes(batch.key_list()[first:stop])
                cols.hashes.append(hk)
                cols.flags.append(kf)
                cols.stamps.append(np.asarray(batch.timestamps[first:stop], np.int64))
            else:
                cols.stamps.append(np.full(hi - lo, h.first_timestamp, np.int64))
            sched = batch_schedule(data, at, first, stop) if h.headers_length else None
            if sched is None:
                cols.add_schedule(None, None, hi - lo)
            else:
                cols.invalid += sched.invalid
                cols.add_schedule(sched.deliver_at_ms, sched.expires_at_ms, hi - lo)
            pos = hi
        if pos == before:
            break
    n = pos - end
    if n <= 0:
        return 0
    if flush_first:
        g.flush()
    _admit(m, topic, partition, n, cols, ttl_ms)
    return n


def _admit(m: Managed, topic: str, partition: int, n: int, cols: _Columns, ttl_ms: int) -> None:
    stamps = np.concatenate(cols.stamps)
    deliver = expires = None
    if cols.deliver is not None and cols.expires is not None:
        deliver = np.concatenate(cols.deliver)
        expires = np.concatenate(cols.expires)
    if ttl_ms > 0:
        default = stamps + ttl_ms
        expires = default if expires is None else np.where(expires > 0, expires, default)
    if cols.invalid:
        m.invalid_schedule += cols.invalid
        log.warning(
            "queue group %s: %d unreadable schedule header value(s) in %s/%d ignored (%s)",
            m.group.name,
            cols.invalid,
            topic,
            partition,
            InvalidScheduleError.name,
        )
    m.group.admit(
        topic,
        partition,
        n,
        ts_ms=stamps,
        keys=np.concatenate(cols.hashes) if cols.keyed else None,
        keyed=np.concatenate(cols.flags) if cols.keyed else None,
        deliver_at_ms=deliver,
        expires_at_ms=expires,
    )
